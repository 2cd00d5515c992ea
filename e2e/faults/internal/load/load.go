// Package load acts as the phone app for the fault suite: it sends proof
// requests through the frontend at a steady rate with api/client (a new
// WebSocket, hello, attestation check, encryption, submit), and when an
// attempt fails it retries the way the app does: later, with the same uuid
// and a new hello. It records what each request went through in a Ledger.
package load

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/openpassport/prover-fleet/api/client"
	"github.com/openpassport/prover-fleet/shared/family"
)

// Config configures a load run.
type Config struct {
	// URL returns the frontend's WebSocket URL now.
	URL func() string
	// Verifier checks the attestation documents.
	Verifier client.Verifier
	// The request every call sends.
	Type         family.ProofType
	Circuit      string
	Inputs       json.RawMessage
	EndpointType string
	Endpoint     string
	// Requests are sent over Duration: Burst of them at once at BurstAt
	// (so that a fault meets a backlog: jobs queued, running and being
	// recorded), the others evenly.
	Requests int
	Duration time.Duration
	Burst    int
	BurstAt  time.Duration
	// Until, when set, keeps the steady rate going after Duration until it
	// is closed (a fault that outlasts the load still meets requests).
	Until <-chan struct{}
	// RetryDelay separates a failed attempt from the next one; GiveUp is
	// how long after its first attempt a request stops retrying.
	RetryDelay time.Duration
	GiveUp     time.Duration
	// AttemptTimeout bounds one attempt (dial, hello, submit).
	AttemptTimeout time.Duration
}

// Request is what one request went through.
type Request struct {
	UUID  string
	First time.Time // first attempt began
	// Accepted is when the frontend accepted it (zero if it never did);
	// Via says how the client learned it: "submit" (the submit answered
	// the uuid) or "recorded" (a retry's hello said the uuid exists and
	// its status is recorded: an earlier attempt's answer was lost).
	Accepted time.Time
	Via      string
	Attempts int
	// Errors are the failed attempts' errors, in order.
	Errors []string
}

// Ledger holds every request of a run. Safe for concurrent use.
type Ledger struct {
	mu       sync.Mutex
	requests []*Request
	inFlight atomic.Int64
}

// Requests returns a copy of every request.
func (l *Ledger) Requests() []Request {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Request, len(l.requests))
	for i, r := range l.requests {
		out[i] = *r
		out[i].Errors = append([]string(nil), r.Errors...)
	}
	return out
}

// InFlight is the number of submits sent and not answered yet.
func (l *Ledger) InFlight() int64 { return l.inFlight.Load() }

func (l *Ledger) add(r *Request) {
	l.mu.Lock()
	l.requests = append(l.requests, r)
	l.mu.Unlock()
}

func (l *Ledger) update(f func()) {
	l.mu.Lock()
	f()
	l.mu.Unlock()
}

// Run sends the requests and returns once each is accepted or has given
// up (or ctx ends).
func Run(ctx context.Context, cfg Config, l *Ledger) {
	start := time.Now()
	var at []time.Duration
	steady := max(cfg.Requests-cfg.Burst, 0)
	for i := range steady {
		at = append(at, cfg.Duration*time.Duration(i)/time.Duration(steady))
	}
	for range min(cfg.Burst, cfg.Requests) {
		at = append(at, cfg.BurstAt)
	}
	slices.Sort(at)
	var wg sync.WaitGroup
	defer wg.Wait()
	next := func(d time.Duration) bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(time.Until(start.Add(d))):
		}
		r := &Request{UUID: uuid.NewString(), First: time.Now()}
		l.add(r)
		wg.Add(1)
		go func() {
			defer wg.Done()
			send(ctx, cfg, l, r)
		}()
		return true
	}
	for _, d := range at {
		if !next(d) {
			return
		}
	}
	if cfg.Until == nil || steady == 0 {
		return
	}
	every := cfg.Duration / time.Duration(steady)
	for d := cfg.Duration; ; d += every {
		select {
		case <-cfg.Until:
			return
		default:
		}
		if !next(d) {
			return
		}
	}
}

// send runs one request's attempts.
func send(ctx context.Context, cfg Config, l *Ledger, r *Request) {
	for {
		via, err := attempt(ctx, cfg, l, r.UUID)
		now := time.Now()
		l.update(func() {
			r.Attempts++
			if err == nil {
				r.Accepted, r.Via = now, via
			} else {
				r.Errors = append(r.Errors, err.Error())
			}
		})
		if err == nil || now.Sub(r.First) > cfg.GiveUp || ctx.Err() != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(cfg.RetryDelay):
		}
	}
}

// errLiveSession: the uuid has a session from an earlier hello whose
// submit never arrived; it expires with the frontend's session TTL.
var errLiveSession = errors.New("uuid has a live session, not a recorded request")

// attempt is one try, the app's way: a new connection, hello with a new
// key, attestation, submit. A hello that says the uuid exists is
// followed by a status request: a recorded request means an earlier
// attempt was accepted and its answer lost.
func attempt(ctx context.Context, cfg Config, l *Ledger, id string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.AttemptTimeout)
	defer cancel()
	c, err := client.Dial(ctx, cfg.URL(), client.Options{Verifier: cfg.Verifier})
	if err != nil {
		return "", fmt.Errorf("dial: %w", err)
	}
	defer c.Close()
	submitted := false
	progress := func(ev client.Event) {
		if ev.Stage == client.StageAttested && !submitted {
			submitted = true
			l.inFlight.Add(1)
		}
	}
	_, err = c.Submit(ctx, client.Request{
		Type: cfg.Type, Circuit: cfg.Circuit, Inputs: cfg.Inputs, Onchain: true,
		EndpointType: cfg.EndpointType, Endpoint: cfg.Endpoint, UUID: id,
	}, progress)
	if submitted {
		l.inFlight.Add(-1)
	}
	if err == nil {
		return "submit", nil
	}
	if client.IsCode(err, -32600) && strings.Contains(err.Error(), "UUID already exists") {
		st, serr := c.Status(ctx, id)
		if serr == nil && st.UUID == id {
			return "recorded", nil
		}
		if serr != nil && !strings.Contains(serr.Error(), "UUID not found") {
			return "", fmt.Errorf("%w; status: %w", err, serr)
		}
		return "", errLiveSession
	}
	return "", err
}
