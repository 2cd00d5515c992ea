package job

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
	"time"
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
