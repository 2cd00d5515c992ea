package groth16

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"time"
	"unsafe"

	"github.com/consensys/gnark-crypto/ecc/bn254"

	"github.com/openpassport/prover-fleet/shared/groth16/internal/mmap"
)

// Window tables for a key kept warm across many proofs.
//
// An MSM with c-bit windows does about n·255/c bucket additions plus one
// bucket reduction (about 3.5 additions' worth per bucket, 2^(c-1)
// buckets) per window. With the bases fixed, t-1 shifted copies of each
// base, 2^(c·wpp·k)·P for k = 1..t-1, let the t pieces of wpp windows of a
// scalar share one set of buckets: only wpp windows are reduced, so a wider
// window pays off and the additions drop with it. The copies cost
// (t-1)·n points of memory; Warm spends a byte budget where it saves the
// most work per byte (G2's B2 costs three times G1's per point and saves
// three times as much), and DropTables gives it back.

// warmSet is what Warm adds to a key: tables for some of its MSMs (nil:
// that MSM runs without) in one anonymous mapping.
type warmSet struct {
	a, b1, c, h *tableG1
	b2          *tableG2
	c1, c2      uint // widest window among the G1 and G2 tables

	mem     []byte // the tables' memory
	bytes   int64
	refs    int // proofs using the set; guarded by the key's mu
	retired bool
}

// retire marks w replaced: its memory goes when no proof uses it. pk.mu held.
func (w *warmSet) retire() {
	w.retired = true
	if w.refs == 0 {
		w.free()
	}
}

func (w *warmSet) free() {
	if w.mem != nil {
		_ = mmap.Unmap(w.mem)
		w.mem = nil
	}
}

// acquireWarm marks the key in use by a proof and returns its tables (nil
// without), marked in use too.
func (pk *ProvingKey) acquireWarm() (*warmSet, error) {
	pk.mu.Lock()
	defer pk.mu.Unlock()
	if pk.closed {
		return nil, ErrClosed
	}
	pk.refs++
	w := pk.warm.Load()
	if w != nil {
		w.refs++
	}
	return w, nil
}

func (pk *ProvingKey) releaseWarm(w *warmSet) {
	pk.mu.Lock()
	defer pk.mu.Unlock()
	if w != nil {
		w.refs--
		if w.retired && w.refs == 0 {
			w.free()
		}
	}
	pk.refs--
	if pk.closed && pk.refs == 0 {
		pk.free()
	}
}

// WarmStats says what Warm built.
type WarmStats struct {
	// Tables names the MSMs that got window tables, with the number of
	// copies of their bases: "H×8", "B2×4", ...
	Tables []string
	// TableBytes is the memory the tables take (Memory().Tables).
	TableBytes int64
	// Duration is how long Warm took.
	Duration time.Duration
}

// tablePlan is the copies chosen for one MSM.
type tablePlan struct {
	name   string
	n      int   // bases
	g2     bool  // B2
	t, wpp int   // copies, windows per piece
	c      uint  // window width
	cost   int64 // estimated work, in G1 bucket additions
	bytes  int64
}

// planCost estimates an MSM's work with t copies of n bases: the bucket
// additions for n full-size scalars plus the reductions; G2 points cost
// three times as much.
func planCost(n int, g2 bool, c uint, wpp int) int64 {
	cost := 2*int64(n)*int64(numWindows(c)) + 7*int64(wpp)<<(c-1)
	if g2 {
		cost *= 3
	}
	return cost / 2
}

// planTables chooses copies for each MSM within budget bytes: greedily the
// step that saves the most estimated work per byte, until none fits.
func (pk *ProvingKey) planTables(budget int64) []tablePlan {
	plans := []tablePlan{
		{name: "H", n: pk.domainSize},
		{name: "B2", n: pk.nVars, g2: true},
		{name: "A", n: pk.nVars},
		{name: "B1", n: pk.nVars},
		{name: "C", n: pk.nVars - pk.nPublic - 1},
	}
	// The options of one MSM: every (c, wpp), t = ceil(w/wpp) copies.
	options := func(p tablePlan) []tablePlan {
		var out []tablePlan
		for c := uint(4); c <= maxWindow; c++ {
			w := numWindows(c)
			for wpp := 1; wpp <= w; wpp++ {
				t := (w + wpp - 1) / wpp
				if (w+t-1)/t != wpp {
					continue // same t with fewer windows per piece is listed
				}
				o := p
				o.c, o.wpp, o.t = c, wpp, t
				o.cost = planCost(p.n, p.g2, c, wpp)
				pb := g1Bytes
				if p.g2 {
					pb = g2Bytes
				}
				o.bytes = int64(t-1) * int64(p.n) * pb
				out = append(out, o)
			}
		}
		return out
	}
	for i := range plans {
		plans[i].t, plans[i].wpp = 1, 0
		plans[i].c = chooseWindow(plans[i].n, 1)
		plans[i].cost = planCost(plans[i].n, plans[i].g2, plans[i].c, numWindows(plans[i].c))
	}
	var used int64
	for {
		bestI, bestRatio := -1, 0.0
		var best tablePlan
		for i, p := range plans {
			if p.n == 0 {
				continue
			}
			for _, o := range options(p) {
				extra := o.bytes - p.bytes
				if extra <= 0 || o.cost >= p.cost || used+extra > budget {
					continue
				}
				// Each table point costs its build (a hundred doublings
				// or so) and memory for the key's life: take only copies
				// that save an addition per proof per point. (The
				// reductions they save do not grow with the key, so large
				// keys get few tables: at 2^20, B2's, if any.)
				pb := g1Bytes
				if p.g2 {
					pb = g2Bytes
				}
				if p.cost-o.cost < extra/pb {
					continue
				}
				if r := float64(p.cost-o.cost) / float64(extra); r > bestRatio {
					bestI, bestRatio, best = i, r, o
				}
			}
		}
		if bestI < 0 {
			break
		}
		used += best.bytes - plans[bestI].bytes
		plans[bestI] = best
	}
	return slices.DeleteFunc(plans, func(p tablePlan) bool { return p.t < 2 })
}

// Warm prepares pk for many proofs, trading memory for time per proof:
// window tables for its MSMs, within budget bytes of anonymous memory
// (outside the Go heap; Memory().Tables reports it, DropTables returns
// it). Building costs CPU time in the order of a few proofs, on every CPU.
// Tables already built are replaced.
//
// Warm may run while other goroutines prove with pk: proofs that start
// after it returns use what it built. ctx is checked while building; on
// cancellation nothing is kept. budget <= 0 builds nothing.
func (pk *ProvingKey) Warm(ctx context.Context, budget int64) (WarmStats, error) {
	start := time.Now()
	var st WarmStats
	if err := ctx.Err(); err != nil {
		return st, err
	}
	if err := pk.acquire(); err != nil {
		return st, err
	}
	defer pk.release()
	plans := pk.planTables(budget)
	if len(plans) == 0 {
		return st, nil
	}
	ws := &warmSet{}
	size := 0
	for _, p := range plans {
		size += align(int(p.bytes))
	}
	mem, err := mmap.Alloc(size)
	if err != nil {
		return st, fmt.Errorf("groth16: window tables: %w", err)
	}
	ws.mem = mem
	off := 0
	tasks := runtime.GOMAXPROCS(0)
	for _, p := range plans {
		ptr := unsafe.Pointer(&mem[off])
		off += align(int(p.bytes))
		switch p.name {
		case "B2":
			tab := &tableG2{c: p.c, t: p.t, wpp: p.wpp, pts: unsafe.Slice((*bn254.G2Affine)(ptr), p.n*(p.t-1))}
			err = buildTableG2(ctx, tab, pk.b2, tasks)
			ws.b2, ws.c2 = tab, max(ws.c2, p.c)
		default:
			bases := map[string][]bn254.G1Affine{"H": pk.h, "A": pk.a, "B1": pk.b1, "C": pk.c}[p.name]
			tab := &tableG1{c: p.c, t: p.t, wpp: p.wpp, pts: unsafe.Slice((*bn254.G1Affine)(ptr), p.n*(p.t-1))}
			err = buildTableG1(ctx, tab, bases, tasks)
			ws.c1 = max(ws.c1, p.c)
			switch p.name {
			case "H":
				ws.h = tab
			case "A":
				ws.a = tab
			case "B1":
				ws.b1 = tab
			case "C":
				ws.c = tab
			}
		}
		if err != nil {
			ws.free()
			if errors.Is(err, mmap.ErrFault) {
				err = fmt.Errorf("%w: %w", ErrKeyChanged, err)
			}
			return WarmStats{}, err
		}
		st.Tables = append(st.Tables, fmt.Sprintf("%s×%d", p.name, p.t))
		ws.bytes += p.bytes
	}
	st.TableBytes = ws.bytes
	pk.mu.Lock()
	if pk.closed {
		pk.mu.Unlock()
		ws.free()
		return WarmStats{}, ErrClosed
	}
	if old := pk.warm.Swap(ws); old != nil {
		old.retire()
	}
	pk.mu.Unlock()
	st.Duration = time.Since(start)
	return st, nil
}

// DropTables releases what Warm built: proofs from now on run without
// tables, and the memory goes when the proofs using it end. It returns the
// bytes released (0 without tables).
func (pk *ProvingKey) DropTables() int64 {
	pk.mu.Lock()
	defer pk.mu.Unlock()
	w := pk.warm.Swap(nil)
	if w == nil {
		return 0
	}
	w.retire()
	return w.bytes
}

// TableBytes is the memory Warm would use with budget bytes: what a cache
// can ask before it decides how much to give (Warm never uses more than
// its budget).
func (pk *ProvingKey) TableBytes(budget int64) int64 {
	var total int64
	for _, p := range pk.planTables(budget) {
		total += p.bytes
	}
	return total
}
