package service_test

import (
	"encoding/json"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/openpassport/prover-fleet/shared/family"
	"github.com/openpassport/prover-fleet/shared/jobqueue"
	"github.com/openpassport/prover-fleet/shared/status"
	"github.com/openpassport/prover-fleet/shared/store"
	wt "github.com/openpassport/prover-fleet/worker/internal/workertest"
	"github.com/openpassport/prover-fleet/worker/service"
)

// warm makes svc hold circuits warm, as proving them would.
func warm(t *testing.T, svc *service.Service, circuits ...string) {
	t.Helper()
	for _, c := range circuits {
		l, err := svc.Keys().Acquire(t.Context(), c)
		if err != nil {
			t.Fatal(err)
		}
		l.Release()
	}
}

// announcements keeps the last announcement of each worker on the family's
// warm subject: what each Taker hears from the others.
type announcements struct {
	mu   sync.Mutex
	last map[string]announced
}

type announced struct {
	Worker  string   `json:"worker"`
	Warm    []string `json:"warm"`
	Waiting bool     `json:"waiting"`
}

func listen(t *testing.T, nc *nats.Conn, f family.Family) *announcements {
	t.Helper()
	a := &announcements{last: map[string]announced{}}
	sub, err := nc.Subscribe(jobqueue.WarmSubject(f), func(m *nats.Msg) {
		var an announced
		if json.Unmarshal(m.Data, &an) == nil && an.Worker != "" {
			a.mu.Lock()
			a.last[an.Worker] = an
			a.mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return a
}

// waitWaiting forgets what was said so far, then waits until every worker
// of want has said again that it waits for a job and holds (at least) its
// circuits warm. A waiting worker says so again every --fetch-wait.
func (a *announcements) waitWaiting(t *testing.T, want map[string][]string) {
	t.Helper()
	a.mu.Lock()
	clear(a.last)
	a.mu.Unlock()
	deadline := time.Now().Add(20 * time.Second)
	for {
		a.mu.Lock()
		ok := true
		for id, circuits := range want {
			an, seen := a.last[id]
			ok = ok && seen && an.Waiting
			for _, c := range circuits {
				ok = ok && slices.Contains(an.Warm, c)
			}
		}
		got := fmtAnnouncements(a.last)
		a.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("workers did not say they wait with their keys warm: last said %s, want %v", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func fmtAnnouncements(m map[string]announced) string {
	b, _ := json.Marshal(m)
	return string(b)
}

// Two workers of one family, each holding other circuits warm, on real
// NATS and Postgres (the provers are fakes: this is about who takes a
// job). While both are idle each circuit's jobs go to the worker holding
// its key; while that worker is busy, the other takes them: no job waits
// for a particular worker.
func TestAffinityPrefersTheWarmWorkerAndNeverWaitsForIt(t *testing.T) {
	t.Parallel()
	s := wt.Setup(t, jobqueue.Config{})
	f := wt.NewFakes(t)
	start := func(id string) *wt.Running {
		c := s.Config(f, family.DSC)
		c.WorkerID, c.Concurrency = id, 1
		c.AffinityYield = time.Second // generous: the test is about who, not how fast
		c.ChildEnv = append(c.ChildEnv, "FAKE_SLEEP=5")
		return s.Start(c)
	}
	heard := listen(t, s.NC, family.DSC)
	a, b := start("worker-a"), start("worker-b")
	warm(t, a.Svc, "fakex_ok", "fakex_slow")
	warm(t, b.Svc, "fakey_ok")

	// idle waits until neither worker runs a job and both have said again
	// that they wait for one, with their keys warm: a worker still busy,
	// or not known to wait, is not yielded to, by design.
	idle := func() {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for a.Svc.Running()+b.Svc.Running() > 0 {
			if time.Now().After(deadline) {
				t.Fatal("the workers stay busy")
			}
			time.Sleep(20 * time.Millisecond)
		}
		heard.waitWaiting(t, map[string][]string{"worker-a": {"fakex_ok", "fakex_slow"}, "worker-b": {"fakey_ok"}})
	}
	holder := map[string]string{"fakex_ok": "worker-a", "fakey_ok": "worker-b"}
	for round, c := range []string{"fakex_ok", "fakey_ok", "fakey_ok", "fakex_ok", "fakex_ok", "fakey_ok"} {
		idle()
		id := s.Submit("dsc", c, wt.FakeInputs(strconv.Itoa(round)))
		row := s.WaitStatus(id, status.ProofGenerated, 20*time.Second)
		if row.WorkerID != holder[c] {
			t.Fatalf("round %d: the %s job was proved by %s, want %s (which holds its key warm)", round, c, row.WorkerID, holder[c])
		}
	}

	// worker-a is busy with a slow job of its own; the next fakex_ok job
	// goes to worker-b, which does not hold its key, rather than wait.
	idle()
	slow := s.Submit("dsc", "fakex_slow", wt.FakeInputs("slow"))
	s.WaitRow(slow, 10*time.Second, "claimed by worker-a", func(p store.Proof) bool { return p.WorkerID == "worker-a" })
	id := s.Submit("dsc", "fakex_ok", wt.FakeInputs("while busy"))
	if row := s.WaitStatus(id, status.ProofGenerated, 20*time.Second); row.WorkerID != "worker-b" {
		t.Fatalf("the fakex_ok job submitted while worker-a was busy was proved by %s, want worker-b", row.WorkerID)
	}
	if row := s.WaitStatus(slow, status.ProofGenerated, 20*time.Second); row.WorkerID != "worker-a" {
		t.Fatalf("the slow job was proved by %s", row.WorkerID)
	}
	// worker-b now holds fakex_ok warm too.
	if w := b.Svc.Keys().Warm(); len(w) != 2 || w[0] != "fakex_ok" {
		t.Fatalf("worker-b warm %v, want fakex_ok first", w)
	}
	s.WaitQueueEmpty(family.DSC, 5*time.Second)
}
