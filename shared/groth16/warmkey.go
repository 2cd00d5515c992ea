package groth16

import (
	"context"
	"time"

	"github.com/consensys/gnark-crypto/ecc/bn254"
	"github.com/consensys/gnark-crypto/ecc/bn254/fp"
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
// tables still fit. Building costs CPU time in the order of 20 proofs' MSMs
// (about 10 s on 2 cores for the 100k-constraint register demo, whose
// tables take ~570 MB: ten times its zkey).
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
	g1 := []struct {
		name string
		pts  func() []bn254.G1Affine
		dst  **warmG1
	}{
		{"H", func() []bn254.G1Affine { return pk.hRev }, &ws.h},
		{"A", func() []bn254.G1Affine { return pk.a.pts }, &ws.a},
		{"C", func() []bn254.G1Affine { return pk.c.pts }, &ws.c},
		{"B1", func() []bn254.G1Affine { return pk.b1.pts }, &ws.b1},
	}
	for _, m := range g1 {
		pts := m.pts()
		c := warmWindow(len(pts))
		need := int64(len(pts)) * int64(numWindows(c)) * g1PointBytes
		if len(pts) == 0 || st.TableBytes+need > budget {
			continue
		}
		if err := ctx.Err(); err != nil {
			return WarmStats{}, err
		}
		*m.dst = newWarmG1(pts, c)
		st.TableBytes += need
		st.Tables = append(st.Tables, m.name)
	}
	if pts := pk.b2.pts; len(pts) > 0 {
		c := warmWindow(len(pts))
		need := int64(len(pts)) * int64(numWindows(c)) * g2PointBytes
		if st.TableBytes+need <= budget {
			if err := ctx.Err(); err != nil {
				return WarmStats{}, err
			}
			ws.b2 = newWarmG2(pts, c)
			st.TableBytes += need
			st.Tables = append(st.Tables, "B2")
		}
	}
	pk.warm.Store(ws)
	st.Duration = time.Since(start)
	return st, nil
}

// Sizes of affine points in memory.
const (
	g1PointBytes = 2 * fp.Bytes
	g2PointBytes = 4 * fp.Bytes
)

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
