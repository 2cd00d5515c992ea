package prover

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/openpassport/prover-fleet/shared/circuitdir"
	"github.com/openpassport/prover-fleet/shared/groth16"
	"github.com/openpassport/prover-fleet/shared/groth16/wtns"
)

// Native proves in process with shared/groth16. Each circuit's proving key
// is mapped once, on first use (concurrent first uses wait for one load), and
// kept warm; a key file that changes on disk is loaded again and the old
// mapping released. Replace key files by renaming a new file over the old
// one: a file rewritten in place fails the proofs in flight with
// groth16.ErrKeyChanged (retried by the pipeline, with the new key). It writes
// proof.json and public.json exactly as snarkjs and rapidsnark do.
//
// With a table budget, once a key is loaded Native builds its fixed-base
// window tables in the background (groth16's ProvingKey.Warm: seconds of
// CPU, up to the budget in memory); proofs run meanwhile without them and
// pick them up when they are ready. Close stops the builds.
//
// Unlike a child process, an in-process proof cannot be killed: the
// timeout and cancellation are honoured between the prover's phases, and
// inside its multi-scalar multiplications once the key's tables are built.
type Native struct {
	layout      circuitdir.Layout // ZkeyDir absolute
	timeout     time.Duration
	tableBudget int64
	log         *slog.Logger

	mu   sync.Mutex
	keys map[string]*warmKey

	ctx    context.Context // cancelled by Close: stops table builds
	cancel context.CancelFunc
	builds sync.WaitGroup
}

type warmKey struct {
	ready   chan struct{} // closed when the load ended
	pk      *groth16.ProvingKey
	err     error
	modTime time.Time
	size    int64
}

// NewNative returns a Native prover reading the proving keys of keys
// (keys.Zkey; the circuit folder is not used), giving each key up to
// tableBudget bytes of window tables (0: none).
func NewNative(keys circuitdir.Layout, timeout time.Duration, tableBudget int64, log *slog.Logger) (*Native, error) {
	if keys.ZkeyDir == "" {
		return nil, errors.New("prover: zkey dir is empty")
	}
	if tableBudget < 0 {
		return nil, fmt.Errorf("prover: table budget %d is negative", tableBudget)
	}
	if log == nil {
		return nil, errors.New("prover: NewNative needs a logger")
	}
	abs, err := keys.Abs()
	if err != nil {
		return nil, fmt.Errorf("prover: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Native{
		layout: abs, timeout: timeout, tableBudget: tableBudget, log: log, keys: map[string]*warmKey{},
		ctx: ctx, cancel: cancel,
	}, nil
}

// WaitTables blocks until the table builds in progress have ended; key
// loads wait meanwhile (no new build can start during the wait).
func (n *Native) WaitTables() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.builds.Wait()
}

// Close stops the table builds in progress and waits for them, then
// releases every key (each once the proofs using it end). Proving still
// works afterwards: keys are loaded again, without tables.
func (n *Native) Close() {
	n.mu.Lock()
	n.cancel()
	keys := n.keys
	n.keys = map[string]*warmKey{}
	n.mu.Unlock()
	n.builds.Wait()
	for _, k := range keys {
		closeWhenLoaded(k)
	}
}

// key returns circuit's warm proving key, loading it if needed.
func (n *Native) key(ctx context.Context, circuit string) (*groth16.ProvingKey, error) {
	path := n.layout.Zkey(circuit)
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrNoKey, circuit, err)
	}
	n.mu.Lock()
	k, ok := n.keys[circuit]
	if ok {
		select {
		case <-k.ready:
			if k.err != nil || !k.modTime.Equal(st.ModTime()) || k.size != st.Size() {
				ok = false // failed or stale: load again
			}
		default: // loading: wait below
		}
	}
	if !ok {
		if old := n.keys[circuit]; old != nil {
			// Replaced: the old key's mapping goes once the proofs using
			// it end (a proof that has not started yet gets ErrClosed
			// and asks again, see Prove).
			select {
			case <-old.ready:
				closeWhenLoaded(old)
			default:
				go closeWhenLoaded(old)
			}
		}
		k = &warmKey{ready: make(chan struct{}), modTime: st.ModTime(), size: st.Size()}
		n.keys[circuit] = k
		go n.load(context.WithoutCancel(ctx), k, circuit, path)
	}
	n.mu.Unlock()
	select {
	case <-k.ready:
		return k.pk, k.err
	case <-ctx.Done():
		return nil, fmt.Errorf("prove: waiting for the proving key: %w", context.Cause(ctx))
	}
}

// closeWhenLoaded closes k's key once its load has ended.
func closeWhenLoaded(k *warmKey) {
	<-k.ready
	if k.pk != nil {
		_ = k.pk.Close()
	}
}

// load reads a key; it is not bound to the job that asked first, so a
// cancelled job does not spoil the load for the others.
func (n *Native) load(ctx context.Context, k *warmKey, circuit, path string) {
	defer close(k.ready)
	start := time.Now()
	k.pk, k.err = groth16.LoadProvingKey(ctx, path)
	if k.err != nil {
		k.err = fmt.Errorf("load proving key of %s: %w", circuit, k.err)
		n.log.Error("proving key not loaded", "circuit", circuit, "err", k.err)
		return
	}
	m := k.pk.Memory()
	n.log.Info("proving key loaded", "circuit", circuit, "duration_ms", time.Since(start).Milliseconds(),
		"mapped_mib", m.Mapped>>20, "heap_kib", m.Heap>>10)
	if n.tableBudget <= 0 {
		return
	}
	n.mu.Lock() // Close cancels under mu: no build starts once it has
	defer n.mu.Unlock()
	if n.ctx.Err() != nil {
		return
	}
	pk := k.pk
	n.builds.Go(func() {
		st, err := pk.Warm(n.ctx, n.tableBudget)
		if err != nil {
			n.log.Warn("window tables not built", "circuit", circuit, "err", err)
			return
		}
		n.log.Info("window tables built", "circuit", circuit, "tables", st.Tables,
			"mib", st.TableBytes>>20, "duration_ms", st.Duration.Milliseconds())
	})
}

// Prove reads the witness wtns, proves and writes proof and public.
func (n *Native) Prove(ctx context.Context, circuit, dir, wtnsPath, proof, public string) error {
	if n.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, n.timeout, fmt.Errorf("prove: timed out after %s", n.timeout))
		defer cancel()
	}
	pk, err := n.key(ctx, circuit)
	if err != nil {
		return err
	}
	w, err := wtns.ReadFile(ctx, wtnsPath)
	if err != nil {
		return &Failure{Err: fmt.Errorf("prove: read witness: %w", err)}
	}
	p, signals, err := groth16.Prove(ctx, pk, w)
	if errors.Is(err, groth16.ErrClosed) {
		// The key was replaced (its file changed) between key and Prove.
		if pk, err = n.key(ctx, circuit); err != nil {
			clear(w)
			return err
		}
		p, signals, err = groth16.Prove(ctx, pk, w)
	}
	clear(w)
	if err != nil {
		if cause := context.Cause(ctx); cause != nil {
			return &Failure{Err: cause}
		}
		return &Failure{Err: fmt.Errorf("prove: %w", err)}
	}
	proofJSON, err := p.MarshalJSON()
	if err != nil {
		return &Failure{Err: fmt.Errorf("prove: %w", err)}
	}
	publicJSON, err := signals.MarshalJSON()
	if err != nil {
		return &Failure{Err: fmt.Errorf("prove: %w", err)}
	}
	if err := os.WriteFile(proof, proofJSON, 0o600); err != nil {
		return &Failure{Err: fmt.Errorf("prove: %w", err)}
	}
	if err := os.WriteFile(public, publicJSON, 0o600); err != nil {
		return &Failure{Err: fmt.Errorf("prove: %w", err)}
	}
	return nil
}
