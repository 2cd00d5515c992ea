package keycache_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openpassport/prover-fleet/shared/groth16"
	"github.com/openpassport/prover-fleet/shared/groth16/wtns"
	"github.com/openpassport/prover-fleet/worker/internal/keycache"
)

// The tiny circuit of shared/groth16's tests: a snarkjs key and a witness.
const tinyDir = "../../../shared/groth16/testdata"

// keys is a folder of real groth16 keys, copies of the tiny snarkjs key
// under several circuit names, loaded with shared/groth16.
type keys struct {
	dir   string
	size  int64
	loads atomic.Int64
}

func newKeys(t *testing.T, names ...string) *keys {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(tinyDir, "tiny_snarkjs.zkey"))
	if err != nil {
		t.Fatal(err)
	}
	k := &keys{dir: t.TempDir()}
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(k.dir, n+".zkey"), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// What one loaded key holds: its mapping and its heap (for the tiny
	// key, mostly the heap).
	pk, err := groth16.LoadProvingKey(t.Context(), filepath.Join(tinyDir, "tiny_snarkjs.zkey"))
	if err != nil {
		t.Fatal(err)
	}
	m := pk.Memory()
	k.size = m.Mapped + m.Heap
	pk.Close()
	return k
}

var errNoKey = errors.New("no key")

func (k *keys) Stat(circuit string) (keycache.Version, error) {
	st, err := os.Stat(filepath.Join(k.dir, circuit+".zkey"))
	if err != nil {
		return keycache.Version{}, fmt.Errorf("%w: %v", errNoKey, err)
	}
	return keycache.Version{Size: st.Size(), ModTime: st.ModTime(), Estimate: k.size}, nil
}

func (k *keys) Load(ctx context.Context, circuit string) (keycache.Key, error) {
	k.loads.Add(1)
	path := filepath.Join(k.dir, circuit+".zkey")
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	pk, err := groth16.LoadProvingKey(ctx, path)
	if err != nil {
		return nil, err
	}
	if st.Size() == 0 {
		return nil, errors.New("empty key")
	}
	return &key{pk: pk}, nil
}

// key is a groth16 key as the cache holds it: mapped, with window tables
// it can build and drop.
type key struct{ pk *groth16.ProvingKey }

func (k *key) Bytes() int64 {
	m := k.pk.Memory()
	return m.Mapped + m.Heap
}
func (k *key) TableBytes(b int64) int64 { return k.pk.TableBytes(b) }
func (k *key) DropTables() int64        { return k.pk.DropTables() }
func (k *key) Close() error             { return k.pk.Close() }
func (k *key) Warm(ctx context.Context, b int64) (int64, error) {
	st, err := k.pk.Warm(ctx, b)
	return st.TableBytes, err
}

// prove makes a real proof with a leased key and checks it.
func prove(t *testing.T, l *keycache.Lease) {
	t.Helper()
	w, err := wtns.ReadFile(t.Context(), filepath.Join(tinyDir, "tiny.wtns"))
	if err != nil {
		t.Fatal(err)
	}
	pk := l.Key().(*key).pk
	p, pub, err := groth16.Prove(t.Context(), pk, w)
	if err != nil {
		t.Fatal(err)
	}
	if err := pk.VerifyingKey().Verify(p, pub); err != nil {
		t.Fatal(err)
	}
}

// events records what the cache reports.
type events struct {
	mu       sync.Mutex
	log      []string
	oversize int
}

func (e *events) add(s string) { e.mu.Lock(); e.log = append(e.log, s); e.mu.Unlock() }
func (e *events) Acquired(c string, warm bool) {
	if !warm {
		e.add("cold " + c)
	}
}
func (e *events) Loaded(c string, _ int64, _ time.Duration, err error) {
	if err != nil {
		e.add("failed " + c)
	}
}
func (e *events) Evicted(c string, _ int64, reason string) { e.add("evict " + c + " " + reason) }
func (e *events) Oversize(c string, _, _ int64)            { e.mu.Lock(); e.oversize++; e.mu.Unlock() }
func (e *events) TablesBuilt(c string, b int64, _ time.Duration, err error) {
	if err == nil && b > 0 {
		e.add("tables " + c)
	}
}
func (e *events) TablesDropped(c string, _ int64) { e.add("drop tables " + c) }

func (e *events) take() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := e.log
	e.log = nil
	return out
}

func newCache(t *testing.T, k *keys, cfg keycache.Config) (*keycache.Cache, *events) {
	t.Helper()
	ev := &events{}
	c, err := keycache.New(k, cfg, ev)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, ev
}

func acquire(t *testing.T, c *keycache.Cache, circuit string) *keycache.Lease {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	l, err := c.Acquire(ctx, circuit)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// use proves once with circuit's key and releases it.
func use(t *testing.T, c *keycache.Cache, circuit string) {
	t.Helper()
	l := acquire(t, c, circuit)
	prove(t, l)
	l.Release()
}

func within(t *testing.T, c *keycache.Cache) keycache.Held {
	t.Helper()
	h := c.Held()
	if h.Total() > c.Budget() {
		t.Fatalf("cache holds %d bytes (%d keys), over its budget %d", h.Total(), h.Keys, c.Budget())
	}
	return h
}

func TestLeastRecentlyUsedIdleKeyGoes(t *testing.T) {
	t.Parallel()
	k := newKeys(t, "a", "b", "c", "d")
	c, ev := newCache(t, k, keycache.Config{Budget: 2*k.size + k.size/2}) // room for two keys
	steps := []struct {
		name   string
		use    string
		warm   []string // most recent first, afterwards
		events []string
	}{
		{"first key", "a", []string{"a"}, []string{"cold a"}},
		{"second key", "b", []string{"b", "a"}, []string{"cold b"}},
		{"a again: warm, now the most recent", "a", []string{"a", "b"}, nil},
		{"a third key evicts the least recent (b)", "c", []string{"c", "a"}, []string{"evict b room", "cold c"}},
		{"b comes back and evicts a", "b", []string{"b", "c"}, []string{"evict a room", "cold b"}},
	}
	for _, s := range steps {
		use(t, c, s.use)
		within(t, c)
		if got := c.Warm(); !slices.Equal(got, s.warm) {
			t.Fatalf("%s: warm %v, want %v", s.name, got, s.warm)
		}
		if got := ev.take(); !slices.Equal(got, s.events) {
			t.Fatalf("%s: events %v, want %v", s.name, got, s.events)
		}
	}
	if n := k.loads.Load(); n != 4 {
		t.Fatalf("%d loads, want 4", n)
	}
}

// A key another worker holds warm goes before a less recently used one
// that only this worker holds.
func TestKeyHeldElsewhereGoesFirst(t *testing.T) {
	t.Parallel()
	k := newKeys(t, "a", "b", "c", "d")
	c, ev := newCache(t, k, keycache.Config{Budget: 2*k.size + k.size/2})
	use(t, c, "a")
	use(t, c, "b") // a is the least recently used
	c.SetSpare(func(circuit string) bool { return circuit == "b" })
	use(t, c, "c")
	if got := ev.take(); !slices.Equal(got, []string{"cold a", "cold b", "evict b room", "cold c"}) {
		t.Fatalf("events %v, want b (held elsewhere) evicted rather than a", got)
	}
	c.SetSpare(nil) // plain LRU again
	use(t, c, "d")
	if got := ev.take(); !slices.Equal(got, []string{"evict a room", "cold d"}) {
		t.Fatalf("events %v, want the least recently used (a) evicted", got)
	}
	within(t, c)
}

func TestKeyInUseIsNeverEvicted(t *testing.T) {
	t.Parallel()
	k := newKeys(t, "a", "b", "c", "d")
	c, ev := newCache(t, k, keycache.Config{Budget: 2*k.size + k.size/2})
	held := acquire(t, c, "a") // a proof runs with a: a is the least recently used
	use(t, c, "b")
	use(t, c, "c") // evicts b (idle), not a (in use)
	if got := ev.take(); !slices.Equal(got, []string{"cold a", "cold b", "evict b room", "cold c"}) {
		t.Fatalf("events %v", got)
	}
	prove(t, held) // a still works

	// With a and c both in use there is no room for d: it waits until one
	// of them is released, and the budget holds meanwhile.
	heldC := acquire(t, c, "c")
	got := make(chan *keycache.Lease)
	go func() {
		l, err := c.Acquire(t.Context(), "d")
		if err != nil {
			t.Error(err)
		}
		got <- l
	}()
	time.Sleep(200 * time.Millisecond) // give d a chance to load wrongly
	within(t, c)
	if w := c.Warm(); !slices.Equal(w, []string{"c", "a"}) {
		t.Fatalf("warm %v while both keys are in use", w)
	}
	held.Release()
	d := <-got
	within(t, c)
	prove(t, d)
	d.Release()
	heldC.Release()
	if got := ev.take(); !slices.Equal(got, []string{"evict a room", "cold d"}) {
		t.Fatalf("events %v", got)
	}

	// A wait for room ends with the caller's context.
	a, b := acquire(t, c, "a"), acquire(t, c, "b")
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if _, err := c.Acquire(ctx, "c"); err == nil || !strings.Contains(err.Error(), "waiting for room") {
		t.Fatalf("Acquire with no room: %v", err)
	}
	a.Release()
	b.Release()
}

func TestKeyLargerThanTheBudgetProvesAlone(t *testing.T) {
	t.Parallel()
	k := newKeys(t, "big", "other")
	c, ev := newCache(t, k, keycache.Config{Budget: k.size / 2})
	l := acquire(t, c, "big")
	prove(t, l)
	if ev.oversize != 1 {
		t.Fatalf("oversize reported %d times", ev.oversize)
	}
	// Another key waits while the big one proves...
	done := make(chan *keycache.Lease)
	go func() {
		o, err := c.Acquire(t.Context(), "other")
		if err != nil {
			t.Error(err)
		}
		done <- o
	}()
	time.Sleep(200 * time.Millisecond)
	if h := c.Held(); h.Keys != 1 || h.KeyBytes != k.size {
		t.Fatalf("holding %+v while the big key proves, want it alone", h)
	}
	// ... and loads, alone, once it is released.
	l.Release()
	o := <-done
	prove(t, o)
	o.Release()
	if h := c.Held(); h.Keys != 1 || h.KeyBytes != k.size {
		t.Fatalf("holding %+v, want one key", h)
	}
	if got := ev.take(); !slices.Equal(got, []string{"cold big", "evict big room", "cold other"}) {
		t.Fatalf("events %v", got)
	}
}

func TestConcurrentFirstUsesLoadOnce(t *testing.T) {
	t.Parallel()
	k := newKeys(t, "a")
	c, _ := newCache(t, k, keycache.Config{Budget: 1 << 30})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { use(t, c, "a") })
	}
	wg.Wait()
	if n := k.loads.Load(); n != 1 {
		t.Fatalf("%d loads for 8 concurrent first uses, want 1", n)
	}
}

func TestChangedFileLoadsAgain(t *testing.T) {
	t.Parallel()
	k := newKeys(t, "a")
	c, ev := newCache(t, k, keycache.Config{Budget: 1 << 30})
	use(t, c, "a")
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(filepath.Join(k.dir, "a.zkey"), later, later); err != nil {
		t.Fatal(err)
	}
	use(t, c, "a")
	if got := ev.take(); !slices.Equal(got, []string{"cold a", "evict a stale", "cold a"}) {
		t.Fatalf("events %v", got)
	}
	if h := c.Held(); h.Keys != 1 || h.KeyBytes != k.size {
		t.Fatalf("holding %+v, want the new key only (%d bytes)", h, k.size)
	}
}

func TestMissingKeyAndFailedLoad(t *testing.T) {
	t.Parallel()
	k := newKeys(t, "a")
	if err := os.WriteFile(filepath.Join(k.dir, "broken.zkey"), []byte("not a zkey"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, ev := newCache(t, k, keycache.Config{Budget: 1 << 30})
	if _, err := c.Acquire(t.Context(), "nope"); !errors.Is(err, errNoKey) {
		t.Fatalf("missing key: %v", err)
	}
	for range 2 { // a failed load is not cached: each use tries again
		if _, err := c.Acquire(t.Context(), "broken"); err == nil {
			t.Fatal("a broken key loaded")
		}
	}
	if h := c.Held(); h.Keys != 0 || h.Total() != 0 {
		t.Fatalf("holding %+v after failed loads", h)
	}
	if got := ev.take(); !slices.Equal(got, []string{"failed broken", "failed broken"}) {
		t.Fatalf("events %v", got)
	}
}

// Tables are built with what the budget leaves, and go before any key
// when a key needs room; the budget holds throughout.
func TestTablesWithinWhatTheBudgetLeavesGoFirst(t *testing.T) {
	t.Parallel()
	k := newKeys(t, "a", "b", "c")
	probe, _ := newCache(t, k, keycache.Config{Budget: 1 << 30})
	l := acquire(t, probe, "a")
	tables, keyBytes := l.Key().TableBytes(1<<40), l.Key().Bytes()
	l.Release()
	if tables == 0 || tables/2 >= keyBytes {
		t.Fatalf("the tiny key's tables take %d bytes (key %d): the test needs some, under twice the key", tables, keyBytes)
	}
	// Room for the three keys and half of one key's tables.
	c, ev := newCache(t, k, keycache.Config{Budget: 3*keyBytes + tables/2, Tables: true})
	use(t, c, "a")
	c.WaitIdle()
	if h := within(t, c); h.TableBytes != tables {
		t.Fatalf("holding %+v, want a's tables (%d bytes)", h, tables)
	}
	use(t, c, "a") // proves with its tables
	use(t, c, "b")
	c.WaitIdle()
	within(t, c)
	use(t, c, "c") // needs room: tables go, no key
	c.WaitIdle()
	h := within(t, c)
	got := ev.take()
	if !slices.Contains(got, "drop tables a") || slices.ContainsFunc(got, func(e string) bool { return strings.HasPrefix(e, "evict") }) {
		t.Fatalf("events %v: want a's tables dropped and no key evicted", got)
	}
	if h.Keys != 3 {
		t.Fatalf("holding %+v, want the three keys", h)
	}
}

func TestBookkeepingNeverWaits(t *testing.T) {
	t.Parallel()
	k := newKeys(t, "a", "b", "c")
	c, ev := newCache(t, k, keycache.Config{Budget: k.size + k.size/2, Bookkeeping: true})
	var leases []*keycache.Lease
	for _, n := range []string{"a", "b", "c"} { // three in use, room for one
		leases = append(leases, acquire(t, c, n))
	}
	for _, l := range leases {
		l.Release()
	}
	use(t, c, "a")
	if w := c.Warm(); !slices.Equal(w, []string{"a"}) {
		t.Fatalf("warm %v, want only the most recent within the budget", w)
	}
	if got := ev.take(); !slices.Contains(got, "evict b room") || !slices.Contains(got, "evict c room") {
		t.Fatalf("events %v", got)
	}
}

func TestCloseReleasesIdleKeysAndRefuses(t *testing.T) {
	t.Parallel()
	k := newKeys(t, "a", "b")
	c, ev := newCache(t, k, keycache.Config{Budget: 1 << 30})
	use(t, c, "a")
	b := acquire(t, c, "b")
	c.Close()
	if h := c.Held(); h.KeyBytes != k.size {
		t.Fatalf("holding %+v after Close with b in use, want b only", h)
	}
	prove(t, b)
	b.Release()
	if h := c.Held(); h.Total() != 0 {
		t.Fatalf("holding %+v after b's release", h)
	}
	if _, err := c.Acquire(t.Context(), "a"); !errors.Is(err, keycache.ErrClosed) {
		t.Fatalf("Acquire after Close: %v", err)
	}
	got := ev.take()
	slices.Sort(got)
	if !slices.Equal(got, []string{"cold a", "cold b", "evict a closed", "evict b closed"}) {
		t.Fatalf("events %v", got)
	}
}

func TestNewRejects(t *testing.T) {
	t.Parallel()
	k := newKeys(t)
	for name, tc := range map[string]struct {
		src keycache.Source
		cfg keycache.Config
	}{
		"no source":               {nil, keycache.Config{Budget: 1}},
		"no budget":               {k, keycache.Config{}},
		"tables with bookkeeping": {k, keycache.Config{Budget: 1, Tables: true, Bookkeeping: true}},
	} {
		if _, err := keycache.New(tc.src, tc.cfg, nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
