package prover

import (
	"context"
	"fmt"
	"os"

	"github.com/openpassport/prover-fleet/shared/circuitdir"
	"github.com/openpassport/prover-fleet/shared/groth16"
	"github.com/openpassport/prover-fleet/worker/internal/keycache"
)

// zkeys is the keycache.Source of a zkey folder.
type zkeys struct {
	layout circuitdir.Layout
	// load turns a zkey file into a cached key: provingKeys for Native,
	// zkeyFiles for Command.
	load func(ctx context.Context, path string, size int64) (keycache.Key, error)
}

// Stat returns the version of circuit's zkey, or an error wrapping ErrNoKey.
func (z zkeys) Stat(circuit string) (keycache.Version, error) {
	if !circuitdir.ValidName(circuit) {
		return keycache.Version{}, fmt.Errorf("%w: %q is not a circuit name", ErrNoKey, circuit)
	}
	st, err := os.Stat(z.layout.Zkey(circuit))
	if err != nil {
		return keycache.Version{}, fmt.Errorf("%w: %s: %v", ErrNoKey, circuit, err)
	}
	if !st.Mode().IsRegular() {
		return keycache.Version{}, fmt.Errorf("%w: %s: not a regular file", ErrNoKey, circuit)
	}
	return keycache.Version{Size: st.Size(), ModTime: st.ModTime(), Estimate: st.Size() + keyHeap}, nil
}

// keyHeap bounds what a mapped key keeps on the heap beside its file (its
// header, verifying key and coefficient index: kilobytes), for the
// reservation of a load.
const keyHeap = 256 << 10

// Load loads circuit's zkey.
func (z zkeys) Load(ctx context.Context, circuit string) (keycache.Key, error) {
	path := z.layout.Zkey(circuit)
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrNoKey, circuit, err)
	}
	k, err := z.load(ctx, path, st.Size())
	if err != nil {
		return nil, fmt.Errorf("load proving key of %s: %w", circuit, err)
	}
	return k, nil
}

// provingKey is a shared/groth16 key as the cache holds it: the key file
// mapped read-only (its pages are the page cache's, shared with every
// process that maps the file) and a small index on the heap, plus the
// window tables Warm builds in anonymous memory, which DropTables returns
// at once (once the proofs using them end).
type provingKey struct{ pk *groth16.ProvingKey }

func loadProvingKey(ctx context.Context, path string, _ int64) (keycache.Key, error) {
	pk, err := groth16.LoadProvingKey(ctx, path)
	if err != nil {
		return nil, err
	}
	return &provingKey{pk: pk}, nil
}

// key is the groth16 key.
func (k *provingKey) key() *groth16.ProvingKey { return k.pk }

// Bytes is the key's mapping and heap (Memory without its tables).
func (k *provingKey) Bytes() int64 {
	m := k.pk.Memory()
	return m.Mapped + m.Heap
}

func (k *provingKey) TableBytes(budget int64) int64 { return k.pk.TableBytes(budget) }

func (k *provingKey) Warm(ctx context.Context, budget int64) (int64, error) {
	st, err := k.pk.Warm(ctx, budget)
	return st.TableBytes, err
}

func (k *provingKey) DropTables() int64 { return k.pk.DropTables() }

// Close releases the mapping and the tables (the cache closes a key only
// once no proof uses it).
func (k *provingKey) Close() error { return k.pk.Close() }

// zkeyFile stands for a zkey a child prover reads: the worker holds none of
// it; its Bytes are the file's pages in the kernel's page cache.
type zkeyFile struct{ size int64 }

func loadZkeyFile(_ context.Context, _ string, size int64) (keycache.Key, error) {
	return zkeyFile{size: size}, nil
}

func (f zkeyFile) Bytes() int64                             { return f.size }
func (zkeyFile) TableBytes(int64) int64                     { return 0 }
func (zkeyFile) Warm(context.Context, int64) (int64, error) { return 0, nil }
func (zkeyFile) DropTables() int64                          { return 0 }
func (zkeyFile) Close() error                               { return nil }
