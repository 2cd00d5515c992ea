// Package circuits knows which circuits this deployment can prove, from the
// circuit folder laid out as shared/circuitdir describes.
//
// A circuit name is known when its witness generator is present, either
// circom's C++ build (an executable file) or its WebAssembly build, and,
// when a zkey folder is configured, its proving key exists too (a request
// the workers could not prove is refused at the door rather than failing
// minutes later): circuitdir.Layout.Installed. Only presence is checked;
// files are not read.
//
// The listing is cached. A lookup that misses rescans the folders, at most
// once per refresh interval, so a circuit added at run time becomes known
// without a restart and a stream of unknown names costs one scan per
// interval.
package circuits

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/openpassport/prover-fleet/shared/circuitdir"
)

// Config locates the folders.
type Config struct {
	// Layout.CircuitDir holds the witness generators (required);
	// Layout.ZkeyDir the proving keys, empty to skip the zkey check.
	Layout circuitdir.Layout
	// Refresh is the least time between two rescans (default 10 s).
	Refresh time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// DefaultRefresh is the default least time between two rescans.
const DefaultRefresh = 10 * time.Second

// Catalog answers whether a circuit is known. Safe for concurrent use.
type Catalog struct {
	cfg Config

	mu      sync.Mutex
	names   map[string]bool
	scanned time.Time
}

// New scans the folders once; a folder that cannot be read is an error.
func New(cfg Config) (*Catalog, error) {
	if cfg.Layout.CircuitDir == "" {
		return nil, errors.New("circuits: circuit folder is required")
	}
	if cfg.Refresh == 0 {
		cfg.Refresh = DefaultRefresh
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	for _, dir := range []string{cfg.Layout.CircuitDir, cfg.Layout.ZkeyDir} {
		if dir == "" {
			continue
		}
		st, err := os.Stat(dir)
		if err != nil {
			return nil, fmt.Errorf("circuits: %w", err)
		}
		if !st.IsDir() {
			return nil, fmt.Errorf("circuits: %s is not a directory", dir)
		}
	}
	c := &Catalog{cfg: cfg}
	if err := c.rescanLocked(); err != nil {
		return nil, err
	}
	return c, nil
}

// Known reports whether name is a circuit this deployment can prove.
func (c *Catalog) Known(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.names[name] {
		return true
	}
	if c.cfg.Now().Sub(c.scanned) < c.cfg.Refresh {
		return false
	}
	if err := c.rescanLocked(); err != nil {
		// Keep the last good listing; the next miss after Refresh retries.
		return false
	}
	return c.names[name]
}

// Names lists the known circuits, sorted.
func (c *Catalog) Names() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.names))
	for n := range c.names {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Rescan reads the folders now.
func (c *Catalog) Rescan() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rescanLocked()
}

func (c *Catalog) rescanLocked() error {
	c.scanned = c.cfg.Now()
	installed, err := c.cfg.Layout.Installed()
	if err != nil {
		return fmt.Errorf("circuits: %w", err)
	}
	names := make(map[string]bool, len(installed))
	for _, n := range installed {
		names[n] = true
	}
	c.names = names
	return nil
}
