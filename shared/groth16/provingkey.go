package groth16

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/consensys/gnark-crypto/ecc/bn254"
	"github.com/consensys/gnark-crypto/ecc/bn254/fr"

	"github.com/openpassport/prover-fleet/shared/groth16/internal/mmap"
	"github.com/openpassport/prover-fleet/shared/groth16/zkey"
)

// ProvingKey is a Groth16 proving key ready for Prove. A key loaded from a
// file (LoadProvingKey) uses the file's points and coefficients in place,
// from a read-only memory mapping; a key made in memory (NewProvingKey)
// holds them on the heap. Share one key between goroutines: Prove, Warm,
// DropTables, Memory and Close are safe for concurrent use.
type ProvingKey struct {
	nVars, nPublic, domainSize int

	alpha1, beta1, delta1 bn254.G1Affine
	beta2, delta2         bn254.G2Affine

	// The bases of the five MSMs, in the file's order: A, B1 and B2 have
	// one point per wire, C one per private wire, H one per domain point
	// (natural order). Points at infinity stay; the MSMs skip them.
	a, b1, c, h []bn254.G1Affine
	b2          []bn254.G2Affine

	// coefs are the A and B matrices as the file's records
	// (zkey.CoefRecordSize bytes each), sorted by constraint; blocks[k] is
	// the first record of constraint block k (coefBlocks blocks of equal
	// constraint ranges), so that workers evaluate disjoint ranges.
	coefs  []byte
	blocks []int

	cosetShift fr.Element // primitive 2n-th root of unity: the odd coset of the n domain

	vk *VerifyingKey

	// file is the mapping a loaded key uses; nil for a key made in memory.
	file      *keyFile
	heapBytes int64

	mu     sync.Mutex // guards refs, closed, warm's retirement
	refs   int        // Prove and Warm calls using the key's memory
	closed bool
	warm   atomic.Pointer[warmSet] // set by Warm, cleared by DropTables
	valid  atomic.Bool             // Validate found every point valid
}

// keyFile is a key's file mapping. It is released by ProvingKey.Close, or
// by the garbage collector once the key is unreachable.
type keyFile struct {
	path    string
	f       *os.File
	data    []byte
	size    int64
	modTime time.Time
	once    sync.Once
}

func (kf *keyFile) release() {
	kf.once.Do(func() {
		_ = mmap.Unmap(kf.data)
		_ = kf.f.Close()
	})
}

// changed reports whether the mapped file was modified since it was
// mapped (truncated, or rewritten in place).
func (kf *keyFile) changed() bool {
	st, err := kf.f.Stat()
	return err != nil || st.Size() != kf.size || !st.ModTime().Equal(kf.modTime)
}

// coefBlocks is how many constraint ranges the coefficient index has.
const coefBlocks = 256

// LoadProvingKey maps the snarkjs Groth16 .zkey at path read-only and
// prepares it for Prove. The points and coefficients stay in the file's
// pages (shared with the page cache and with every other process that maps
// the file; nothing of the bulk is copied), so loading costs a scan of the
// coefficients and a few milliseconds, and the key's heap is kilobytes plus
// a small index (see Memory). The header, IC and the coefficients' indices
// are checked here; the bulk points are not (a corrupted point makes proofs
// that fail Prove's own check, which then says whether the key or the
// witness is at fault; Validate checks them all).
//
// The file must not be modified in place while the key is open: replace it
// by renaming a new file over it. If it is truncated or rewritten anyway,
// Prove returns an error wrapping ErrKeyChanged, never a crash. Release the
// mapping with Close; a key that is dropped without Close is released by
// the garbage collector.
func LoadProvingKey(ctx context.Context, path string) (*ProvingKey, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	if st.Size() < 12 {
		f.Close()
		return nil, fmt.Errorf("%s: %w: file is %d bytes", path, zkey.ErrMalformed, st.Size())
	}
	data, err := mmap.Map(f, st.Size(), false)
	if err != nil {
		f.Close()
		return nil, err
	}
	kf := &keyFile{path: path, f: f, data: data, size: st.Size(), modTime: st.ModTime()}
	mmap.WillNeed(data)
	var pk *ProvingKey
	err = mmap.Guard(func() error {
		v, err := zkey.Parse(data)
		if err != nil {
			return err
		}
		pk, err = newKey(ctx, &v.Header, v.IC, v.A, v.B1, v.B2, v.C, v.H, v.Coefs, !v.InPlace)
		return err
	})
	if err != nil {
		kf.release()
		if errors.Is(err, mmap.ErrFault) {
			err = fmt.Errorf("%w: %w", ErrKeyChanged, err)
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	pk.file = kf
	runtime.AddCleanup(pk, func(kf *keyFile) { kf.release() }, kf)
	return pk, nil
}

// NewProvingKey prepares a key held in memory (from zkey.Read or
// DevSetup) for proving. It takes ownership of k's slices: k must not be
// changed afterwards.
func NewProvingKey(k *zkey.Key) (*ProvingKey, error) {
	return newKey(context.Background(), &k.Header, k.IC, k.A, k.B1, k.B2, k.C, k.H, zkey.EncodeCoefs(k.Coefs), true)
}

// newKey checks the sections' shape, indexes the coefficients and builds
// the verifying key. onHeap says the points and coefs belong to the key's
// heap (counted by Memory) rather than to a mapping.
func newKey(ctx context.Context, h *zkey.Header, ic, a, b1 []bn254.G1Affine, b2 []bn254.G2Affine, c, hs []bn254.G1Affine, coefs []byte, onHeap bool) (*ProvingKey, error) {
	n := int(h.DomainSize)
	if n < 2 || n > zkey.MaxDomainSize || n&(n-1) != 0 {
		return nil, fmt.Errorf("groth16: domain size %d is not a power of two in [2, 2^27]", n)
	}
	nv, np := int(h.NVars), int(h.NPublic)
	if nv < np+1 || len(ic) != np+1 || len(a) != nv || len(b1) != nv || len(b2) != nv ||
		len(c) != nv-np-1 || len(hs) != n || len(coefs)%zkey.CoefRecordSize != 0 {
		return nil, fmt.Errorf("groth16: proving key sections do not match its header")
	}
	pk := &ProvingKey{
		nVars: nv, nPublic: np, domainSize: n,
		alpha1: h.Alpha1, beta1: h.Beta1, delta1: h.Delta1,
		beta2: h.Beta2, delta2: h.Delta2,
		a: a, b1: b1, b2: b2, c: c, h: hs,
		coefs: coefs,
	}
	var err error
	if pk.blocks, pk.coefs, err = indexCoefs(ctx, coefs, h); err != nil {
		return nil, err
	}
	if pk.cosetShift, err = fr.Generator(uint64(2 * n)); err != nil {
		return nil, fmt.Errorf("groth16: domain 2*%d: %w", n, err)
	}
	if pk.vk, err = NewVerifyingKey(h.Alpha1, h.Beta2, h.Gamma2, h.Delta2, ic); err != nil {
		return nil, fmt.Errorf("groth16: proving key's verifying part: %w", err)
	}
	pk.heapBytes = int64(unsafe.Sizeof(*pk)) + int64(cap(pk.blocks))*int64(unsafe.Sizeof(int(0))) + pk.vk.heapBytes()
	if onHeap || !sameBytes(pk.coefs, coefs) {
		pk.heapBytes += int64(cap(pk.coefs))
	}
	if onHeap {
		g1 := int64(unsafe.Sizeof(bn254.G1Affine{}))
		pk.heapBytes += g1*int64(cap(a)+cap(b1)+cap(c)+cap(hs)) + int64(unsafe.Sizeof(bn254.G2Affine{}))*int64(cap(b2))
	}
	return pk, nil
}

func sameBytes(x, y []byte) bool {
	return len(x) == len(y) && (len(x) == 0 || &x[0] == &y[0])
}

// indexCoefs checks every coefficient record (matrix A or B, constraint in
// the domain, signal a wire, value below r) and returns the block index of
// the records sorted by constraint: coefs itself when it is sorted already
// (snarkjs writes them so), else a sorted copy.
func indexCoefs(ctx context.Context, coefs []byte, h *zkey.Header) ([]int, []byte, error) {
	const rs = zkey.CoefRecordSize
	count := len(coefs) / rs
	n := uint64(h.DomainSize)
	blocks := make([]int, coefBlocks+1)
	// One pass checks the records and, if they are sorted, finds the
	// blocks: blocks[k] is the first record whose constraint is at least
	// n·k/coefBlocks.
	index := func(check bool) (sorted bool, err error) {
		k, prev := 0, uint32(0)
		for i := range count {
			if check && i%(1<<16) == 0 {
				if err := ctx.Err(); err != nil {
					return false, err
				}
			}
			rec := coefs[i*rs : (i+1)*rs]
			var c uint32
			if check {
				if _, c, _, _, err = h.CheckCoef(i, rec); err != nil {
					return false, err
				}
			} else {
				_, c, _, _, _ = zkey.DecodeCoef(rec)
			}
			if c < prev {
				return false, nil
			}
			prev = c
			for k < coefBlocks && uint64(c) >= n*uint64(k)/coefBlocks {
				blocks[k] = i
				k++
			}
		}
		for ; k <= coefBlocks; k++ {
			blocks[k] = count
		}
		return true, nil
	}
	sorted, err := index(true)
	if err != nil || sorted {
		return blocks, coefs, err
	}
	// Not sorted (snarkjs always sorts): check the rest, then sort a copy.
	// Field addition commutes, so any order of a constraint's terms gives
	// the same evaluation and a stable sort by constraint is enough.
	for i := range count {
		if _, _, _, _, err := h.CheckCoef(i, coefs[i*rs:(i+1)*rs]); err != nil {
			return nil, nil, err
		}
	}
	cons := make([]uint32, count)
	idx := make([]int, count)
	for i := range idx {
		idx[i] = i
		_, cons[i], _, _, _ = zkey.DecodeCoef(coefs[i*rs : (i+1)*rs])
	}
	slices.SortStableFunc(idx, func(x, y int) int { return cmp.Compare(cons[x], cons[y]) })
	out := make([]byte, len(coefs))
	for j, i := range idx {
		copy(out[j*rs:(j+1)*rs], coefs[i*rs:(i+1)*rs])
	}
	coefs = out
	if _, err := index(false); err != nil {
		return nil, nil, err
	}
	return blocks, coefs, nil
}

// VerifyingKey returns the verifying key embedded in the proving key (the
// same one snarkjs's "zkey export verificationkey" exports).
func (pk *ProvingKey) VerifyingKey() *VerifyingKey { return pk.vk }

// NVars is the number of witness values a proof needs (wire 0 included).
func (pk *ProvingKey) NVars() int { return pk.nVars }

// NPublic is the number of public signals.
func (pk *ProvingKey) NPublic() int { return pk.nPublic }

// DomainSize is the size of the evaluation domain (a power of two).
func (pk *ProvingKey) DomainSize() int { return pk.domainSize }

// Memory is what a proving key holds, in bytes.
type Memory struct {
	// Mapped is the key's file mapping: page-cache pages, shared with every
	// process that maps the same file and reclaimable by the kernel (they
	// are read back from the file). They count in a process's resident set
	// only once touched. 0 for a key made in memory.
	Mapped int64
	// Heap is what the key keeps on the Go heap: the header and verifying
	// key, the coefficient index, and for a key made in memory (or a file
	// whose coefficients were not sorted) its bulk.
	Heap int64
	// Tables is what Warm built (window tables, FFT twiddles), in anonymous
	// memory outside the Go heap; DropTables and Close return it to the
	// system at once (once the proofs using it end).
	Tables int64
}

// Total is the sum of the three.
func (m Memory) Total() int64 { return m.Mapped + m.Heap + m.Tables }

// Memory reports the bytes the key holds: exact sizes of its mapping, of
// its tables and of its heap buffers (small fixed structures are counted by
// their size, Go's allocator rounding aside). A closed key holds nothing.
// Tables retired by DropTables while a proof still uses them are not
// counted (they go when that proof ends).
func (pk *ProvingKey) Memory() Memory {
	pk.mu.Lock()
	defer pk.mu.Unlock()
	if pk.closed {
		return Memory{}
	}
	m := Memory{Heap: pk.heapBytes}
	if pk.file != nil {
		m.Mapped = int64(len(pk.file.data))
	}
	if w := pk.warm.Load(); w != nil {
		m.Tables = w.bytes
	}
	return m
}

// ProveMemory is the memory one Prove call needs beyond the key, taken for
// the call's duration from anonymous memory and returned at its end:
// FFT buffers, the witness in the MSMs' form, bucket arrays.
func (pk *ProvingKey) ProveMemory() int64 {
	return int64(newScratchPlan(pk, pk.warm.Load(), runtime.GOMAXPROCS(0)).size)
}

// acquire marks the key in use by a proof or a table build.
func (pk *ProvingKey) acquire() error {
	pk.mu.Lock()
	defer pk.mu.Unlock()
	if pk.closed {
		return ErrClosed
	}
	pk.refs++
	return nil
}

func (pk *ProvingKey) release() {
	pk.mu.Lock()
	defer pk.mu.Unlock()
	pk.refs--
	if pk.closed && pk.refs == 0 {
		pk.free()
	}
}

// free releases the mapping and the tables; pk.mu held, no user left.
func (pk *ProvingKey) free() {
	if w := pk.warm.Swap(nil); w != nil {
		w.retire()
	}
	if pk.file != nil {
		pk.file.release()
	}
}

// Close releases the key: its mapping and tables go once the proofs in
// flight end; later calls to Prove and Warm return ErrClosed. Close is
// idempotent and never blocks.
func (pk *ProvingKey) Close() error {
	pk.mu.Lock()
	defer pk.mu.Unlock()
	if pk.closed {
		return nil
	}
	pk.closed = true
	if pk.refs == 0 {
		pk.free()
	}
	return nil
}

// Validate reads every point of the key and checks that it has canonical
// coordinates and lies on the curve: what LoadProvingKey leaves out to stay
// cheap. Prove runs it itself when a proof fails its check, to tell a
// corrupted key (ErrKeyCorrupt) from a witness that does not satisfy the
// circuit.
func (pk *ProvingKey) Validate(ctx context.Context) error {
	if err := pk.acquire(); err != nil {
		return err
	}
	defer pk.release()
	v := zkey.View{A: pk.a, B1: pk.b1, B2: pk.b2, C: pk.c, H: pk.h}
	err := mmap.Guard(func() error { return v.CheckPoints(ctx) })
	switch {
	case err == nil:
		return nil
	case errors.Is(err, mmap.ErrFault):
		return fmt.Errorf("%w: %w", ErrKeyChanged, err)
	case errors.Is(err, zkey.ErrMalformed):
		return fmt.Errorf("%w: %w", ErrKeyCorrupt, err)
	}
	return err
}
