package main

import (
	"context"
	"fmt"
	"time"

	"github.com/openpassport/prover-fleet/e2e/faults/internal/fleet"
	"github.com/openpassport/prover-fleet/e2e/faults/internal/load"
)

// scenario is one fault, injected a quarter into the load. inject returns
// when the fault is over, with that time (recovery is measured from it).
type scenario struct {
	name    string
	what    string
	cluster bool // a 3-node JetStream cluster, the stream at R3
	inject  func(ctx context.Context, e *env, l *load.Ledger) (time.Time, error)
}

var scenarios = []*scenario{
	{name: "worker-kill", what: "kill -9 of random workers, busy ones first, alternating direct provers and wrapper scripts; a supervisor restarts each after 2s", inject: killWorkers},
	{name: "pg-outage", what: "PostgreSQL stopped (fast shutdown) for the outage, then started again", inject: pgOutage},
	{name: "pg-restarts", what: "PostgreSQL restarted three times in immediate mode (crash recovery), 5s apart", inject: pgRestarts},
	{name: "nats-outage", what: "nats-server killed (kill -9) for the outage, then started again; the app retries late", inject: natsOutage},
	{name: "nats-node-loss", what: "3-node JetStream cluster, stream R3: the stream leader killed for the outage, then a follower for half of it", cluster: true, inject: nodeLoss},
	{name: "api-kill", what: "prover-api killed (kill -9) three times while submits are in flight, restarted 2s later each time", inject: apiKill},
}

func scenarioNames() []string {
	var names []string
	for _, s := range scenarios {
		names = append(names, s.name)
	}
	return names
}

func findScenario(name string) *scenario {
	for _, s := range scenarios {
		if s.name == name {
			return s
		}
	}
	return nil
}

// sleep waits d, or less if ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// killWorkers kills a worker every few seconds for half the load: one
// with a child process running (a witness generator or a prover) if there
// is one of the kind whose turn it is, else any of that kind. A supervisor restarts a killed worker after 2s (on the
// same work dir); the killed worker's processes must all be gone 1s after
// the kill, before the replacement starts.
func killWorkers(ctx context.Context, e *env, _ *load.Ledger) (time.Time, error) {
	window := e.cfg.duration / 2
	every := 4 * time.Second
	var last time.Time
	kinds := []string{"wrapper", "direct"}
	for i := 0; time.Duration(i)*every < window; i++ {
		kind := kinds[i%2]
		var pick, busy []*fleet.Worker
		for _, w := range e.live() {
			if w.Kind != kind {
				continue
			}
			pick = append(pick, w)
			if w.Busy() {
				busy = append(busy, w)
			}
		}
		if len(busy) > 0 {
			pick = busy
		}
		if len(pick) > 0 {
			w := pick[e.rng.IntN(len(pick))]
			children := len(fleet.Marked(w.Mark()))
			w.Kill()
			last = time.Now()
			e.note("kill -9 %s (%d child processes, busy %t)", w.Name, children, len(busy) > 0)
			e.bg.Add(2)
			go func() {
				defer e.bg.Done()
				time.Sleep(orphanGrace)
				e.collectOrphans(w, fmt.Sprintf("%s after its kill", orphanGrace))
			}()
			go func() {
				defer e.bg.Done()
				time.Sleep(restartAfter)
				if nw, err := e.startWorker(ctx, kind); err != nil {
					e.note("restart of a %s worker failed: %v", kind, err)
				} else {
					e.note("started %s", nw.Name)
				}
			}()
		}
		if err := sleep(ctx, every); err != nil {
			return last, err
		}
	}
	return last, sleep(ctx, orphanGrace)
}

func pgOutage(ctx context.Context, e *env, _ *load.Ledger) (time.Time, error) {
	if err := e.pg.Stop("fast"); err != nil {
		return time.Time{}, err
	}
	e.note("postgres stopped")
	if err := sleep(ctx, e.cfg.outage); err != nil {
		return time.Time{}, err
	}
	if err := e.pg.Start(ctx); err != nil {
		return time.Time{}, err
	}
	e.note("postgres started")
	return time.Now(), nil
}

func pgRestarts(ctx context.Context, e *env, _ *load.Ledger) (time.Time, error) {
	for i := range 3 {
		if i > 0 {
			if err := sleep(ctx, 5*time.Second); err != nil {
				return time.Time{}, err
			}
		}
		if err := e.pg.Stop("immediate"); err != nil {
			return time.Time{}, err
		}
		if err := e.pg.Start(ctx); err != nil {
			return time.Time{}, err
		}
		e.note("postgres restarted (immediate)")
	}
	return time.Now(), nil
}

func natsOutage(ctx context.Context, e *env, _ *load.Ledger) (time.Time, error) {
	node := e.nats.Nodes[0]
	node.Kill()
	e.note("nats-server killed")
	if err := sleep(ctx, e.cfg.outage); err != nil {
		return time.Time{}, err
	}
	if err := node.Start(ctx); err != nil {
		return time.Time{}, err
	}
	e.note("nats-server started")
	return time.Now(), nil
}

func nodeLoss(ctx context.Context, e *env, _ *load.Ledger) (time.Time, error) {
	leader, err := e.nats.StreamLeader(ctx, streamName, 30*time.Second)
	if err != nil {
		return time.Time{}, err
	}
	leader.Kill()
	e.note("%s killed (the stream leader)", leader.Name)
	if next, err := e.nats.StreamLeader(ctx, streamName, e.cfg.outage); err == nil {
		e.note("%s leads the stream now", next.Name)
	}
	if err := sleep(ctx, e.cfg.outage); err != nil {
		return time.Time{}, err
	}
	if err := leader.Start(ctx); err != nil {
		return time.Time{}, err
	}
	e.note("%s started again", leader.Name)
	if err := sleep(ctx, 5*time.Second); err != nil {
		return time.Time{}, err
	}
	now, err := e.nats.StreamLeader(ctx, streamName, 30*time.Second)
	if err != nil {
		return time.Time{}, err
	}
	var follower *fleet.NATSNode
	for _, n := range e.nats.Nodes {
		if n != now && n.Running() {
			follower = n
			break
		}
	}
	follower.Kill()
	e.note("%s killed (a follower; %s leads)", follower.Name, now.Name)
	if err := sleep(ctx, e.cfg.outage/2); err != nil {
		return time.Time{}, err
	}
	if err := follower.Start(ctx); err != nil {
		return time.Time{}, err
	}
	e.note("%s started again", follower.Name)
	return time.Now(), nil
}

func apiKill(ctx context.Context, e *env, l *load.Ledger) (time.Time, error) {
	for i := range 3 {
		if i > 0 {
			if err := sleep(ctx, 5*time.Second); err != nil {
				return time.Time{}, err
			}
		}
		// Wait (a little) for a submit in flight.
		for deadline := time.Now().Add(15 * time.Second); l.InFlight() == 0 && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		inFlight := l.InFlight()
		e.api.Kill()
		e.note("prover-api killed with %d submit(s) in flight", inFlight)
		if err := sleep(ctx, 2*time.Second); err != nil {
			return time.Time{}, err
		}
		if err := e.api.Start(ctx); err != nil {
			return time.Time{}, err
		}
		e.note("prover-api started")
	}
	return time.Now(), nil
}
