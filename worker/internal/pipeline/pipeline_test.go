package pipeline_test

import (
	"bytes"
	"encoding/json"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/openpassport/prover-fleet/internal/devstack/stacktest"
	"github.com/openpassport/prover-fleet/shared/family"
	"github.com/openpassport/prover-fleet/shared/job"
	"github.com/openpassport/prover-fleet/shared/jobqueue"
	"github.com/openpassport/prover-fleet/shared/status"
	"github.com/openpassport/prover-fleet/shared/store"
	wt "github.com/openpassport/prover-fleet/worker/internal/workertest"
)

func TestMain(m *testing.M) { os.Exit(stacktest.Main(m)) }

// near reports whether an event's time is the row's within the write's
// round trip (same host, same clock).
func near(ev *time.Time, row *time.Time) bool {
	return ev != nil && row != nil && ev.Sub(*row).Abs() < 2*time.Second
}

// The status events of a job carry what each write left in the row, so the
// frontend can forward them without reading it, and nothing of the inputs.
func TestEventsCarryTheRow(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		inputs string
		final  status.Code
	}{
		{"proved", wt.FakeInputs("7301"), status.ProofGenerated},
		{"rejected", wt.FakeInputs("reject 7301"), status.Failed},
	}
	s := wt.Setup(t, jobqueue.Config{})
	s.Start(s.Config(wt.NewFakes(t), family.Disclose))
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env := s.Envelope("disclose_id", "fake_ok", c.inputs)
			sub, err := s.NC.SubscribeSync(jobqueue.StatusSubject(env.RequestID))
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Unsubscribe()
			if err := s.Pub.Publish(t.Context(), env); err != nil {
				t.Fatal(err)
			}
			row := s.WaitStatus(env.RequestID, c.final, 20*time.Second)

			var events []job.StatusEvent
			for len(events) == 0 || !events[len(events)-1].Status.Terminal() {
				m, err := sub.NextMsg(5 * time.Second)
				if err != nil {
					t.Fatalf("after events %+v: %v", events, err)
				}
				if bytes.Contains(m.Data, []byte("7301")) {
					t.Fatalf("a status event carries the circuit inputs: %s", m.Data)
				}
				var ev job.StatusEvent
				if err := json.Unmarshal(m.Data, &ev); err != nil {
					t.Fatal(err)
				}
				if !ev.Complete() {
					t.Fatalf("event %s does not carry its row", m.Data)
				}
				events = append(events, ev)
			}
			checkEvents(t, events, row)
		})
	}
}

func checkEvents(t *testing.T, events []job.StatusEvent, row store.Proof) {
	t.Helper()
	last := events[len(events)-1]
	switch row.Status {
	case status.ProofGenerated:
		if len(events) != 2 || events[0].Status != status.WitnessGenerated {
			t.Fatalf("events %+v, want 1 then 2", events)
		}
		first := events[0].Row
		var proof bytes.Buffer
		if err := json.Compact(&proof, row.Proof); err != nil {
			t.Fatal(err)
		}
		r := last.Row
		if !near(first.WitnessGeneratedAt, row.WitnessGeneratedAt) || !r.WitnessGeneratedAt.Equal(*first.WitnessGeneratedAt) ||
			!near(r.ProofGeneratedAt, row.ProofGeneratedAt) || string(r.Proof) != proof.String() ||
			!slices.Equal(r.PublicInputs, row.PublicInputs) || r.Reason != "" {
			t.Fatalf("events %+v %+v do not match the row %+v", first, r, row)
		}
	case status.Failed:
		if len(events) != 1 || last.Row.Reason != row.Reason || row.Reason == "" {
			t.Fatalf("events %+v, want one failure with the row's reason %q", events, row.Reason)
		}
	}
}
