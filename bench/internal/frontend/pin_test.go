package frontend

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestPinning(t *testing.T) {
	p, why := newPinning()
	if p == nil {
		t.Skip(why)
	}
	if p.api.Count() != 1 || p.rest.Count() != p.orig.Count()-1 || p.rest.IsSet(p.apiCPU) || !p.orig.IsSet(p.apiCPU) {
		t.Fatalf("split %v of %v: api %v, rest %v", p.apiCPU, p.orig, p.api, p.rest)
	}
	if err := p.pinSelf(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.restore(); err != nil {
			t.Error(err)
		}
	})
	var now unix.CPUSet
	if err := unix.SchedGetaffinity(0, &now); err != nil || now != p.rest {
		t.Fatalf("after pinSelf this thread may use %v (%v), want %v", now, err, p.rest)
	}
	err := p.onAPICPU(func() error {
		return unix.SchedGetaffinity(0, &now)
	})
	if err != nil || now != p.api {
		t.Fatalf("inside onAPICPU the thread may use %v (%v), want %v", now, err, p.api)
	}
	if err := p.restore(); err != nil {
		t.Fatal(err)
	}
	if err := unix.SchedGetaffinity(0, &now); err != nil || now != p.orig {
		t.Fatalf("after restore this thread may use %v (%v), want %v", now, err, p.orig)
	}
	if got := p.prefix(); len(got) != 3 || got[1] != "-c" {
		t.Fatalf("prefix = %q", got)
	}
}
