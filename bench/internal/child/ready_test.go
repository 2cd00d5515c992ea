package child

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestWaitReady(t *testing.T) {
	t.Parallel()
	// Ready on the third poll.
	var polls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if polls.Add(1) < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	p, err := Start(t.Context(), Cmd{Path: "/bin/sleep", Args: []string{"30"}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop(time.Second)
	if err := p.WaitReady(t.Context(), srv.URL, 10*time.Second); err != nil || polls.Load() != 3 {
		t.Fatalf("WaitReady = %v after %d polls, want nil after 3", err, polls.Load())
	}

	// Never ready, and the time runs out.
	never := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer never.Close()
	if err := p.WaitReady(t.Context(), never.URL, 200*time.Millisecond); err == nil || !strings.Contains(err.Error(), "not ready after 200ms") {
		t.Fatalf("WaitReady on a server never ready = %v", err)
	}

	// The program exits during start-up: its output says why.
	bad, err := Start(t.Context(), Cmd{Path: "/bin/sh", Args: []string{"-c", "echo 'unknown flag: --x' >&2; exit 2"}})
	if err != nil {
		t.Fatal(err)
	}
	addr, err := FreeAddr() // nothing listens there
	if err != nil {
		t.Fatal(err)
	}
	err = bad.WaitReady(t.Context(), "http://"+addr+"/readyz", 10*time.Second)
	var exited *ExitedError
	if !errors.As(err, &exited) || !strings.Contains(exited.Output, "unknown flag: --x") {
		t.Fatalf("WaitReady on a program that exited = %v, want an ExitedError with its output", err)
	}
}

func TestWaitListening(t *testing.T) {
	t.Parallel()
	p, err := Start(t.Context(), Cmd{Path: "/bin/sleep", Args: []string{"30"}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop(time.Second)
	addr, err := FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	// Nothing listens yet: the time runs out.
	if err := p.WaitListening(t.Context(), addr, 200*time.Millisecond); err == nil || !strings.Contains(err.Error(), "not ready after 200ms") {
		t.Fatalf("WaitListening with nothing listening = %v", err)
	}
	// A listener that opens during the wait.
	opened := make(chan net.Listener, 1)
	go func() {
		time.Sleep(150 * time.Millisecond)
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Error(err)
		}
		opened <- ln
	}()
	if err := p.WaitListening(t.Context(), addr, 10*time.Second); err != nil {
		t.Fatalf("WaitListening = %v, want nil once the listener opened", err)
	}
	if ln := <-opened; ln != nil {
		ln.Close()
	}
}
