// Package keycache keeps proving keys warm within one memory budget shared
// by every key and its window tables.
//
// A worker meets many circuits (a family has dozens, each key 0.5–4 GB), so
// it cannot keep every key it ever loaded. A Cache loads a circuit's key on
// first use (concurrent first uses wait for one load), keeps it while the
// budget allows, and when another key needs room it evicts the least
// recently used key that no proof is using (window tables go first: the
// idle keys' tables, least recently used first, before any key; among
// keys, the ones SetSpare says another worker holds go first). A key in
// use is never evicted; a load that does not
// fit waits until enough keys are released. A key larger than the whole
// budget still loads, once every other key is gone, and proves alone: the
// Observer is told (Oversize). Window tables are built in the background
// after a load, only within what the budget leaves.
//
// The cache knows keys through the Key interface (what a cached key must
// offer: the bytes it holds, tables built within a budget and dropped on
// demand, and a Close that frees it once the proofs in flight end) and
// loads them through a Source; worker/internal/prover implements both for
// shared/groth16.
//
// With Config.Bookkeeping the keys hold no memory of this process: the
// prover runs as a child process and the "key" stands for the zkey's pages
// in the kernel's page cache. The cache then only keeps the order and the
// sizes (so that a worker knows which circuits it holds warm, for
// affinity), and never makes a proof wait.
package keycache

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// ErrClosed is returned by Acquire once the cache is closed.
var ErrClosed = errors.New("keycache: closed")

// Key is a loaded proving key as the cache holds it. All methods must be
// safe for concurrent use with the proofs that use the key.
type Key interface {
	// Bytes is the memory the key holds, its tables excluded.
	Bytes() int64
	// TableBytes is the memory Warm would take with budget bytes.
	TableBytes(budget int64) int64
	// Warm builds window tables within budget bytes and returns the bytes
	// they take. Proofs may run meanwhile. On error nothing is kept.
	Warm(ctx context.Context, budget int64) (int64, error)
	// DropTables releases the key's tables and returns the bytes released
	// (0 if it has none, or cannot drop them: the cache then evicts the
	// whole key).
	DropTables() int64
	// Close releases the key. The cache calls it only once no proof uses
	// the key.
	Close() error
}

// Version identifies the file a key was loaded from (a changed file is
// loaded again), and says what its key will hold.
type Version struct {
	Size    int64
	ModTime time.Time
	// Estimate is the memory the loaded key is expected to hold (at least
	// Size when zero): what a load reserves in the budget before it knows.
	Estimate int64
}

// Same reports whether v and w are the same version.
func (v Version) Same(w Version) bool { return v.Size == w.Size && v.ModTime.Equal(w.ModTime) }

// Source finds and loads keys.
type Source interface {
	// Stat returns the version of circuit's key on disk (its Estimate, or
	// Size, is the memory reserved while the key loads), or an error if
	// there is none.
	Stat(circuit string) (Version, error)
	// Load loads circuit's key. ctx is not a job's: a load outlives the
	// job that asked first.
	Load(ctx context.Context, circuit string) (Key, error)
}

// Observer is told what the cache does (metrics and logs implement it).
// It is called with the cache's lock held: it must be quick and must not
// call the cache.
type Observer interface {
	// Acquired: a proof got circuit's key; warm is false when it had to
	// load it (or wait for its load).
	Acquired(circuit string, warm bool)
	// Loaded: a load ended after took; bytes is what the key holds.
	Loaded(circuit string, bytes int64, took time.Duration, err error)
	// Evicted: the key left the cache, freeing bytes (key and tables).
	// reason is "room" (another key needed it), "stale" (its file
	// changed) or "closed".
	Evicted(circuit string, bytes int64, reason string)
	// Oversize: a key larger than the whole budget was loaded, alone.
	Oversize(circuit string, bytes, budget int64)
	// TablesBuilt: a table build ended after took with bytes of tables.
	TablesBuilt(circuit string, bytes int64, took time.Duration, err error)
	// TablesDropped: an idle key's tables were dropped to make room.
	TablesDropped(circuit string, bytes int64)
}

// Config configures a Cache.
type Config struct {
	// Budget is the memory, in bytes, all keys and tables may hold
	// together. Required (> 0).
	Budget int64
	// Tables builds window tables with what the budget leaves after a
	// key loads.
	Tables bool
	// Bookkeeping: keys hold no memory of this process (command mode).
	// Acquire never waits for room; eviction only forgets.
	Bookkeeping bool
}

// Held is what the cache holds now.
type Held struct {
	// Keys is the number of keys loaded (warm).
	Keys int
	// KeyBytes and TableBytes are their memory: keys (a load in progress
	// counts with its reservation), and tables (a build in progress with
	// its plan). A key evicted while a proof still used it counts until the
	// proof ends.
	KeyBytes, TableBytes int64
}

// Total is KeyBytes + TableBytes.
func (h Held) Total() int64 { return h.KeyBytes + h.TableBytes }

type entry struct {
	circuit string
	v       Version
	key     Key
	bytes   int64 // key memory; the reservation while loading
	tables  int64 // table memory; the plan while building
	refs    int   // leases out
	waiters int   // Acquire calls waiting for this entry's load
	used    uint64

	loading bool
	ready   chan struct{} // closed when the load ended
	err     error

	building    bool
	cancelBuild context.CancelFunc
	noDrop      bool // its key cannot drop tables alone

	detached bool // out of the map: goes once unused
	reason   string
}

func (e *entry) idle() bool { return e.refs == 0 && e.waiters == 0 && !e.loading }

// Cache holds proving keys within a memory budget. Its methods are safe for
// concurrent use.
type Cache struct {
	src Source
	cfg Config
	obs Observer

	mu      sync.Mutex
	entries map[string]*entry   // by circuit
	held    map[*entry]struct{} // every entry whose memory counts
	sizes   map[string]int64    // what each circuit's key held when last loaded
	clock   uint64
	changed chan struct{} // closed (and replaced) whenever memory is freed
	closed  bool
	closing []Key // to Close once mu is released
	spare   func(circuit string) bool

	ctx    context.Context // ends with Close: stops builds and loads
	cancel context.CancelFunc
	work   sync.WaitGroup // loads and builds in progress
}

// New returns a Cache loading keys from src. obs may be nil.
func New(src Source, cfg Config, obs Observer) (*Cache, error) {
	switch {
	case src == nil:
		return nil, errors.New("keycache: New needs a Source")
	case cfg.Budget <= 0:
		return nil, fmt.Errorf("keycache: Config.Budget must be positive, got %d", cfg.Budget)
	case cfg.Bookkeeping && cfg.Tables:
		return nil, errors.New("keycache: Config.Tables needs keys in memory (not Bookkeeping)")
	}
	if obs == nil {
		obs = nopObserver{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Cache{
		src: src, cfg: cfg, obs: obs,
		entries: map[string]*entry{}, held: map[*entry]struct{}{}, sizes: map[string]int64{},
		changed: make(chan struct{}), ctx: ctx, cancel: cancel,
	}, nil
}

// Lease is a proof's hold on a key: the key is not evicted until Release.
type Lease struct {
	c    *Cache
	e    *entry
	once sync.Once
}

// Key is the leased key.
func (l *Lease) Key() Key { return l.e.key }

// Release ends the lease. It is idempotent.
func (l *Lease) Release() {
	l.once.Do(func() {
		c := l.c
		c.mu.Lock()
		defer c.unlock()
		l.e.refs--
		c.touch(l.e)
		c.finalizeIfDone(l.e)
		if c.cfg.Bookkeeping {
			// Keys in use may have taken the account over the budget:
			// forget the least recent idle ones.
			c.makeRoom(0)
		}
		c.signal()
	})
}

// Acquire returns a lease on circuit's key, loading it if needed: it waits
// for a load in progress, and for room while the keys in use leave too
// little (never in Bookkeeping mode). ctx bounds the waits; a load it
// started goes on for others.
func (c *Cache) Acquire(ctx context.Context, circuit string) (*Lease, error) {
	v, err := c.src.Stat(circuit)
	if err != nil {
		return nil, err
	}
	warm := true
	c.mu.Lock()
	for {
		if c.closed {
			c.unlock()
			return nil, ErrClosed
		}
		e := c.entries[circuit]
		if e != nil && e.loading {
			warm = false
			e.waiters++
			ch := e.ready
			c.unlock()
			var done bool
			select {
			case <-ch:
			case <-ctx.Done():
				done = true
			}
			c.mu.Lock()
			e.waiters--
			if done {
				c.unlock()
				return nil, fmt.Errorf("keycache: waiting for the key of %s: %w", circuit, context.Cause(ctx))
			}
			if e.err != nil && c.entries[circuit] != e {
				// This wait's own load failed: report it (the next
				// Acquire tries again).
				err := e.err
				c.unlock()
				return nil, err
			}
			continue
		}
		if e != nil && !e.v.Same(v) {
			c.detach(e, "stale")
			e = nil
		}
		if e != nil {
			e.refs++
			c.touch(e)
			c.obs.Acquired(circuit, warm)
			c.maybeBuild(e)
			c.unlock()
			return &Lease{c: c, e: e}, nil
		}

		need := max(v.Size, v.Estimate, c.sizes[circuit], 1)
		if !c.makeRoom(need) && !c.cfg.Bookkeeping {
			h := c.heldBytes()
			if need <= c.cfg.Budget || h > 0 {
				ch := c.changed
				c.unlock()
				select {
				case <-ch:
				case <-ctx.Done():
					return nil, fmt.Errorf("keycache: waiting for room for the key of %s (%d bytes; %d of %d held by keys in use): %w",
						circuit, need, h, c.cfg.Budget, context.Cause(ctx))
				}
				c.mu.Lock()
				continue
			}
			// Larger than the whole budget and nothing else held: it
			// loads, alone.
		}
		warm = false
		e = &entry{circuit: circuit, v: v, bytes: need, loading: true, ready: make(chan struct{})}
		c.entries[circuit] = e
		c.held[e] = struct{}{}
		c.work.Add(1)
		go c.load(e)
	}
}

// load loads e's key in the background.
func (c *Cache) load(e *entry) {
	defer c.work.Done()
	start := time.Now()
	key, err := c.src.Load(c.ctx, e.circuit)
	took := time.Since(start)

	c.mu.Lock()
	defer c.unlock()
	defer close(e.ready)
	e.loading = false
	c.signal()
	if err != nil {
		e.err = err
		delete(c.held, e)
		if c.entries[e.circuit] == e {
			delete(c.entries, e.circuit)
		}
		c.obs.Loaded(e.circuit, 0, took, err)
		return
	}
	e.key = key
	e.bytes = key.Bytes()
	c.sizes[e.circuit] = e.bytes
	c.obs.Loaded(e.circuit, e.bytes, took, nil)
	// The reservation was an estimate; the key may hold a little more:
	// make room for the difference.
	c.makeRoom(0)
	if e.bytes > c.cfg.Budget && !c.cfg.Bookkeeping {
		c.obs.Oversize(e.circuit, e.bytes, c.cfg.Budget)
	}
	if c.closed || e.detached {
		e.detached, e.reason = true, "closed"
		c.finalizeIfDone(e)
		return
	}
	c.maybeBuild(e)
}

// makeRoom frees memory held by idle keys until need more bytes fit in the
// budget: their tables first (least recently used first; a build in
// progress is cancelled, and its end signals c.changed), then the keys
// themselves, least recently used first. It reports whether they fit. mu
// held.
func (c *Cache) makeRoom(need int64) bool {
	for c.heldBytes()+need > c.cfg.Budget {
		// Tables first: losing them costs a little CPU per proof, losing a
		// key a cold load.
		if v := c.lru(func(e *entry) bool { return e.building || (e.tables > 0 && !e.noDrop) }); v != nil {
			if v.building {
				v.cancelBuild()
				return false
			}
			if n := v.key.DropTables(); n > 0 {
				c.obs.TablesDropped(v.circuit, v.tables)
				v.tables = 0
			} else {
				v.noDrop = true // its tables go with the key
			}
			continue
		}
		// Keys another worker holds warm first: the family keeps more of
		// its catalogue warm somewhere.
		var v *entry
		if c.spare != nil {
			v = c.lru(func(e *entry) bool { return c.spare(e.circuit) })
		}
		if v == nil {
			v = c.lru(func(*entry) bool { return true })
		}
		if v == nil {
			return false
		}
		c.detach(v, "room")
	}
	return true
}

// SetSpare tells the cache which keys another worker holds warm
// (jobqueue.Taker.HeldElsewhere): when room is needed, those are evicted
// before the others, least recently used first. spare is called with the
// cache's lock held, so it must not call the cache. nil: plain LRU.
func (c *Cache) SetSpare(spare func(circuit string) bool) {
	c.mu.Lock()
	c.spare = spare
	c.mu.Unlock()
}

// lru is the least recently used idle entry that ok accepts, or nil. mu
// held.
func (c *Cache) lru(ok func(*entry) bool) *entry {
	var v *entry
	for _, e := range c.entries {
		if e.idle() && e.err == nil && ok(e) && (v == nil || e.used < v.used) {
			v = e
		}
	}
	return v
}

// maybeBuild starts a table build for e with what the budget leaves. mu
// held.
func (c *Cache) maybeBuild(e *entry) {
	if !c.cfg.Tables || c.closed || e.detached || e.loading || e.building || e.tables > 0 {
		return
	}
	left := c.cfg.Budget - c.heldBytes()
	if left <= 0 {
		return
	}
	want := e.key.TableBytes(left)
	if want <= 0 || want > left {
		return
	}
	e.tables, e.building = want, true
	ctx, cancel := context.WithCancel(c.ctx)
	e.cancelBuild = cancel
	c.work.Add(1)
	go func() {
		defer c.work.Done()
		defer cancel()
		start := time.Now()
		got, err := e.key.Warm(ctx, want)
		c.mu.Lock()
		defer c.unlock()
		e.building, e.noDrop = false, false
		if err != nil {
			got = 0
		}
		e.tables = got
		c.obs.TablesBuilt(e.circuit, got, time.Since(start), err)
		c.finalizeIfDone(e)
		c.signal()
	}()
}

// detach takes e out of the cache: its key goes now if nothing uses it,
// or when the last lease or build ends. mu held.
func (c *Cache) detach(e *entry, reason string) {
	if c.entries[e.circuit] == e {
		delete(c.entries, e.circuit)
	}
	e.detached, e.reason = true, reason
	if e.building {
		e.cancelBuild()
	}
	c.finalizeIfDone(e)
}

// finalizeIfDone releases a detached entry's memory once nothing uses it.
// mu held.
func (c *Cache) finalizeIfDone(e *entry) {
	if !e.detached || e.refs > 0 || e.loading || e.building {
		return
	}
	if _, ok := c.held[e]; !ok {
		return
	}
	delete(c.held, e)
	c.obs.Evicted(e.circuit, e.bytes+e.tables, e.reason)
	if e.key != nil {
		c.closing = append(c.closing, e.key)
	}
	c.signal()
}

func (c *Cache) touch(e *entry) {
	c.clock++
	e.used = c.clock
}

// signal wakes the Acquire calls waiting for room. mu held.
func (c *Cache) signal() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// unlock releases mu, then closes the keys finalized meanwhile (Close may
// take a while: it returns memory to the system).
func (c *Cache) unlock() {
	closing := c.closing
	c.closing = nil
	c.mu.Unlock()
	for _, k := range closing {
		_ = k.Close()
	}
}

func (c *Cache) heldBytes() int64 {
	var n int64
	for e := range c.held {
		n += e.bytes + e.tables
	}
	return n
}

// Held reports what the cache holds now.
func (c *Cache) Held() Held {
	c.mu.Lock()
	defer c.mu.Unlock()
	var h Held
	for e := range c.held {
		h.KeyBytes += e.bytes
		h.TableBytes += e.tables
	}
	for _, e := range c.entries {
		if !e.loading && e.err == nil {
			h.Keys++
		}
	}
	return h
}

// Budget is the configured budget in bytes.
func (c *Cache) Budget() int64 { return c.cfg.Budget }

// Warm lists the circuits whose keys are loaded, most recently used first.
func (c *Cache) Warm() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	es := make([]*entry, 0, len(c.entries))
	for _, e := range c.entries {
		if !e.loading && e.err == nil {
			es = append(es, e)
		}
	}
	slices.SortFunc(es, func(a, b *entry) int { return cmp.Compare(b.used, a.used) })
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.circuit
	}
	return out
}

// WaitIdle blocks until no load or table build is in progress (tests and
// benchmarks: a key's tables are ready).
func (c *Cache) WaitIdle() { c.work.Wait() }

// Close stops loads and table builds, releases every key no proof uses
// (the others go when their leases end) and waits for the background work.
// Acquire returns ErrClosed afterwards.
func (c *Cache) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.cancel()
	for _, e := range c.entries {
		c.detach(e, "closed")
	}
	c.signal()
	c.unlock()
	c.work.Wait()
}

type nopObserver struct{}

func (nopObserver) Acquired(string, bool)                           {}
func (nopObserver) Loaded(string, int64, time.Duration, error)      {}
func (nopObserver) Evicted(string, int64, string)                   {}
func (nopObserver) Oversize(string, int64, int64)                   {}
func (nopObserver) TablesBuilt(string, int64, time.Duration, error) {}
func (nopObserver) TablesDropped(string, int64)                     {}

// Observers tells every one of obs (nil ones left out).
func Observers(obs ...Observer) Observer {
	var out multiObserver
	for _, o := range obs {
		if o != nil {
			out = append(out, o)
		}
	}
	return out
}

type multiObserver []Observer

func (m multiObserver) Acquired(c string, warm bool) {
	for _, o := range m {
		o.Acquired(c, warm)
	}
}

func (m multiObserver) Loaded(c string, b int64, d time.Duration, err error) {
	for _, o := range m {
		o.Loaded(c, b, d, err)
	}
}

func (m multiObserver) Evicted(c string, b int64, reason string) {
	for _, o := range m {
		o.Evicted(c, b, reason)
	}
}

func (m multiObserver) Oversize(c string, b, budget int64) {
	for _, o := range m {
		o.Oversize(c, b, budget)
	}
}

func (m multiObserver) TablesBuilt(c string, b int64, d time.Duration, err error) {
	for _, o := range m {
		o.TablesBuilt(c, b, d, err)
	}
}

func (m multiObserver) TablesDropped(c string, b int64) {
	for _, o := range m {
		o.TablesDropped(c, b)
	}
}
