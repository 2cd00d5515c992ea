package groth16

import (
	"context"
	"time"

	"github.com/consensys/gnark-crypto/ecc/bn254"
	"github.com/consensys/gnark-crypto/ecc/bn254/fr"
	"github.com/consensys/gnark-crypto/ecc/bn254/fr/fft"
)

// warmSet is what Warm adds to a key: window tables for some of its MSMs
// (nil: that MSM uses gnark-crypto's MultiExp) and an FFT domain with
// precomputed twiddles.
type warmSet struct {
	a, b1, c, h *warmG1
	b2          *warmG2
	domain      *fft.Domain
}

// WarmStats says what Warm built.
type WarmStats struct {
	// Tables names the MSMs that got window tables, in the order built:
	// "H", "A", "C", "B1" (G1) and "B2" (G2).
	Tables []string
	// TableBytes is the memory the tables and twiddles take.
	TableBytes int64
	// Duration is how long Warm took.
	Duration time.Duration
}

// twiddleBytes is the memory of a precomputed FFT domain of size n: four
// tables of field elements (twiddles and their inverses, in both orders).
func twiddleBytes(n int) int64 { return 4 * int64(n) * fr.Bytes }

// Warm prepares pk for many proofs, trading memory for time per proof:
// window tables for the MSMs (see warm.go) and FFT twiddles, within budget
// bytes. The MSMs are taken in the order H, A, C, B1, B2, each only if its
// tables still fit. Building costs CPU time in the order of 20 proofs
// (about 15 s on 2 cores for the 100k-constraint register demo, whose
// tables take 585 MiB: ten times its zkey).
//
// Warm may run while other goroutines prove with pk: proofs that start
// after it returns use what it built. ctx is checked between tables; on
// cancellation nothing is kept. budget <= 0 builds nothing.
func (pk *ProvingKey) Warm(ctx context.Context, budget int64) (WarmStats, error) {
	start := time.Now()
	var st WarmStats
	if budget <= 0 {
		return st, nil
	}
	if err := ctx.Err(); err != nil {
		return st, err
	}
	ws := &warmSet{}
	if tb := twiddleBytes(pk.domainSize); tb <= budget {
		ws.domain = fft.NewDomain(uint64(pk.domainSize))
		st.TableBytes += tb
	}
	// fits reserves need bytes for the named MSM's tables if they fit.
	fits := func(name string, n int, need int64) (bool, error) {
		if n == 0 || st.TableBytes+need > budget {
			return false, nil
		}
		if err := ctx.Err(); err != nil {
			return false, err
		}
		st.TableBytes += need
		st.Tables = append(st.Tables, name)
		return true, nil
	}
	for _, m := range []struct {
		name string
		pts  []bn254.G1Affine
		dst  **warmG1
	}{
		{"H", pk.hRev, &ws.h},
		{"A", pk.a.pts, &ws.a},
		{"C", pk.c.pts, &ws.c},
		{"B1", pk.b1.pts, &ws.b1},
	} {
		c := warmWindow(len(m.pts))
		ok, err := fits(m.name, len(m.pts), warmBytesG1(len(m.pts), c))
		if err != nil {
			return WarmStats{}, err
		}
		if ok {
			*m.dst = newWarmG1(m.pts, c)
		}
	}
	c := warmWindow(len(pk.b2.pts))
	ok, err := fits("B2", len(pk.b2.pts), warmBytesG2(len(pk.b2.pts), c))
	if err != nil {
		return WarmStats{}, err
	}
	if ok {
		ws.b2 = newWarmG2(pk.b2.pts, c)
	}
	pk.warm.Store(ws)
	st.Duration = time.Since(start)
	return st, nil
}

// warmWindow picks the window width for n bases: the fewest bucket
// additions for full-size scalars, n·numWindows(c), plus the reduction,
// about four additions' worth per bucket; the smaller c on a tie (less
// memory for the buckets).
func warmWindow(n int) uint {
	best, bestCost := uint(4), ^uint64(0)
	for c := uint(4); c <= 16; c++ {
		cost := uint64(n)*uint64(numWindows(c)) + 4<<(c-1)
		if cost < bestCost {
			best, bestCost = c, cost
		}
	}
	return best
}
