package job

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/openpassport/prover-fleet/shared/status"
)

func TestSealOpen(t *testing.T) {
	s, err := NewSealer(NewKey())
	if err != nil {
		t.Fatal(err)
	}
	in := []byte(`{"secret":"1234"}`)
	sealed, err := s.Seal("id-1", in)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("1234")) {
		t.Fatal("sealed blob contains the plaintext")
	}
	got, err := s.Open("id-1", sealed)
	if err != nil || !bytes.Equal(got, in) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if _, err := s.Open("id-2", sealed); !errors.Is(err, ErrOpen) {
		t.Fatalf("open under another request id: %v, want ErrOpen", err)
	}
	other, _ := NewSealer(NewKey())
	if _, err := other.Open("id-1", sealed); !errors.Is(err, ErrOpen) {
		t.Fatalf("open with another key: %v, want ErrOpen", err)
	}
	if _, err := s.Open("id-1", sealed[:5]); !errors.Is(err, ErrOpen) {
		t.Fatalf("open truncated: %v", err)
	}
}

func TestEnvelopeRoundTrip(t *testing.T) {
	s, _ := NewSealer(NewKey())
	sealed, _ := s.Seal("7f1c", []byte("{}"))
	e := Envelope{RequestID: "7f1c", ProofType: "disclose_id", Circuit: "disclose_demo", EnqueuedAt: time.Unix(5, 0).UTC(), Sealed: sealed}
	data, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Unmarshal(data)
	if err != nil {
		t.Fatal(err)
	}
	if back.RequestID != e.RequestID || back.Family() != "disclose" || !bytes.Equal(back.Sealed, sealed) || !back.EnqueuedAt.Equal(e.EnqueuedAt) {
		t.Fatalf("round trip changed the envelope: %+v", back)
	}
	cases := map[string]Envelope{
		"no id":      {ProofType: "dsc", Circuit: "c", Sealed: sealed},
		"bad type":   {RequestID: "x", ProofType: "nope", Circuit: "c", Sealed: sealed},
		"no circuit": {RequestID: "x", ProofType: "dsc", Sealed: sealed},
		"no inputs":  {RequestID: "x", ProofType: "dsc", Circuit: "c"},
	}
	for name, bad := range cases {
		if _, err := bad.Marshal(); err == nil {
			t.Errorf("%s: Marshal accepted %+v", name, bad)
		}
	}
	if _, err := Unmarshal([]byte("{")); err == nil {
		t.Fatal("Unmarshal accepted broken JSON")
	}
}

func TestParseKey(t *testing.T) {
	k := NewKey()
	for name, in := range map[string][]byte{"raw": k, "hex": []byte(hex.EncodeToString(k) + "\n")} {
		got, err := ParseKey(in)
		if err != nil || !bytes.Equal(got, k) {
			t.Errorf("%s: ParseKey = %x, %v", name, got, err)
		}
	}
	if _, err := ParseKey([]byte("abcd")); err == nil {
		t.Fatal("short key accepted")
	}
}

func TestStatusEvents(t *testing.T) {
	at := time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.FixedZone("x", 3600))
	want := time.Date(2025, 3, 1, 11, 0, 0, 123456000, time.UTC) // UTC, cut to microseconds as a row holds it
	proof := json.RawMessage(`{"protocol":"groth16"}` + "\n")
	cases := []struct {
		name     string
		ev       StatusEvent
		complete bool
	}{
		{"witness generated", WitnessGeneratedEvent("id", at), true},
		{"proof generated", ProofGeneratedEvent("id", &at, at, proof, []string{"7"}), true},
		{"proof generated, witness time unknown", ProofGeneratedEvent("id", nil, at, proof, []string{"7"}), false},
		{"failed", FailedEvent("id", "cancelled", at), true},
		{"bare (older publisher)", StatusEvent{RequestID: "id", Status: status.ProofGenerated, At: at}, false},
		{"proof generated without a proof", StatusEvent{RequestID: "id", Status: status.ProofGenerated,
			Row: &StatusRow{WitnessGeneratedAt: &at, ProofGeneratedAt: &at}}, false},
		{"proof generated with a broken proof", StatusEvent{RequestID: "id", Status: status.ProofGenerated,
			Row: &StatusRow{WitnessGeneratedAt: &at, ProofGeneratedAt: &at, Proof: json.RawMessage("{")}}, false},
		{"witness generated without its time", StatusEvent{RequestID: "id", Status: status.WitnessGenerated, Row: &StatusRow{}}, false},
		{"pending", StatusEvent{RequestID: "id", Status: status.Pending, Row: &StatusRow{}}, false},
		{"verified (not the prover's)", StatusEvent{RequestID: "id", Status: status.Verified, Row: &StatusRow{}}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := c.ev.Complete(); got != c.complete {
				t.Fatalf("Complete() = %v, want %v", got, c.complete)
			}
			data, err := json.Marshal(c.ev)
			if err != nil {
				return // cannot be published either
			}
			var back StatusEvent
			if err := json.Unmarshal(data, &back); err != nil {
				t.Fatal(err)
			}
			if got := back.Complete(); got != c.complete {
				t.Fatalf("Complete() = %v after a JSON round trip of %s, want %v", got, data, c.complete)
			}
		})
	}

	ev := ProofGeneratedEvent("id", &at, at, proof, nil)
	if r := ev.Row; !r.WitnessGeneratedAt.Equal(want) || r.WitnessGeneratedAt.Location() != time.UTC ||
		!r.ProofGeneratedAt.Equal(want) || string(r.Proof) != string(proof) || r.PublicInputs == nil || len(r.PublicInputs) != 0 {
		t.Fatalf("proof generated row %+v", r)
	}
	if r := FailedEvent("id", "no", at).Row; r.Reason != "no" || r.WitnessGeneratedAt != nil {
		t.Fatalf("failed row %+v", r)
	}

	// An older publisher's event decodes, without a row.
	var old StatusEvent
	if err := json.Unmarshal([]byte(`{"request_id":"id","status":2,"at":"2025-03-01T11:00:00Z"}`), &old); err != nil {
		t.Fatal(err)
	}
	if old.Row != nil || old.Status != status.ProofGenerated || old.Complete() {
		t.Fatalf("old event decoded as %+v", old)
	}
}
