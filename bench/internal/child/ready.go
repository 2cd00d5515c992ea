package child

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"
)

// FreeAddr returns a loopback address with a port free a moment ago, for a
// child to listen on.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// ExitedError is WaitReady's error when the program exited before it was
// ready: typically a flag or configuration it does not support.
type ExitedError struct{ Output string }

func (e *ExitedError) Error() string { return "exited during start-up: " + e.Output }

// WaitReady polls url (a /readyz) until it answers 200, the process exits
// (an *ExitedError), ctx ends, or within has passed.
func (p *Process) WaitReady(ctx context.Context, url string, within time.Duration) error {
	return p.waitFor(ctx, url, within, func() (bool, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return false, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
}

// WaitListening is WaitReady for a program without a /readyz: it polls
// until a TCP connection to addr opens (and closes it).
func (p *Process) WaitListening(ctx context.Context, addr string, within time.Duration) error {
	return p.waitFor(ctx, addr, within, func() (bool, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return false, nil
		}
		c.Close()
		return true, nil
	})
}

func (p *Process) waitFor(ctx context.Context, what string, within time.Duration, ready func() (bool, error)) error {
	deadline := time.Now().Add(within)
	for {
		ok, err := ready()
		if err != nil || ok {
			return err
		}
		select {
		case <-p.Exited():
			return &ExitedError{Output: p.Output()}
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s: %s", what, within, p.Output())
		}
	}
}
