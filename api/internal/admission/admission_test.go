package admission

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// clock is a settable clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// counter counts refusals by reason.
type counter struct {
	mu sync.Mutex
	m  map[string]int
}

func (c *counter) Refused(reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]int{}
	}
	c.m[reason]++
}

func (c *counter) get(reason string) int { c.mu.Lock(); defer c.mu.Unlock(); return c.m[reason] }

func newAdmission(t *testing.T, cfg Config, obs Observer) *Admission {
	t.Helper()
	a, err := New(cfg, obs)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func prefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func TestSource(t *testing.T) {
	t.Parallel()
	a := newAdmission(t, Config{TrustedProxies: []netip.Prefix{prefix("10.0.0.0/8"), prefix("2001:db8:ffff::/48")}}, nil)
	tests := []struct {
		name   string
		remote string
		xff    []string
		want   string // "" for unknown
	}{
		{"direct IPv4", "198.51.100.7:4000", nil, "198.51.100.7/32"},
		{"direct IPv6 counts as its /64", "[2001:db8:1:2:3:4:5:6]:4000", nil, "2001:db8:1:2::/64"},
		{"IPv4-mapped IPv6 is IPv4", "[::ffff:198.51.100.7]:4000", nil, "198.51.100.7/32"},
		{"an untrusted peer's header is ignored", "198.51.100.7:4000", []string{"203.0.113.9"}, "198.51.100.7/32"},
		{"a trusted proxy names the client", "10.1.2.3:4000", []string{"203.0.113.9"}, "203.0.113.9/32"},
		{"the rightmost untrusted hop is the client", "10.1.2.3:4000", []string{"192.0.2.66, 203.0.113.9, 10.9.9.9"}, "203.0.113.9/32"},
		{"several headers are one list", "10.1.2.3:4000", []string{"192.0.2.66", "203.0.113.9, 10.9.9.9"}, "203.0.113.9/32"},
		{"a forged prefix does not help", "10.1.2.3:4000", []string{"10.0.0.1, 203.0.113.9"}, "203.0.113.9/32"},
		{"all hops trusted: the leftmost", "10.1.2.3:4000", []string{"10.0.0.5, 10.0.0.6"}, "10.0.0.5/32"},
		{"garbage stops the walk at the last good hop", "10.1.2.3:4000", []string{"not-an-ip, 203.0.113.9"}, "203.0.113.9/32"},
		{"garbage right after the proxy: the proxy", "10.1.2.3:4000", []string{"203.0.113.9, junk"}, "10.1.2.3/32"},
		{"hops with ports", "10.1.2.3:4000", []string{"[2001:db8:5::1]:443"}, "2001:db8:5::/64"},
		{"a trusted IPv6 proxy", "[2001:db8:ffff:1::1]:4000", []string{"198.51.100.8"}, "198.51.100.8/32"},
		{"a trusted proxy without the header", "10.1.2.3:4000", nil, "10.1.2.3/32"},
		{"a vsock peer is the relay: trusted", "vm(3):1234", []string{"198.51.100.9"}, "198.51.100.9/32"},
		{"a vsock peer without the header: unknown", "vm(3):1234", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := http.NewRequest(http.MethodGet, "/", nil)
			r.RemoteAddr = tt.remote
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			got := a.Source(r)
			want := netip.Prefix{}
			if tt.want != "" {
				want = prefix(tt.want)
			}
			if got != want {
				t.Fatalf("Source = %v, want %v", got, want)
			}
		})
	}
}

func TestAllowHello(t *testing.T) {
	t.Parallel()
	clk := &clock{now: time.Unix(1e9, 0)}
	obs := &counter{}
	a := newAdmission(t, Config{HelloRate: 2, HelloBurst: 3, MaxSources: 2, Now: clk.Now}, obs)
	src, other, third := prefix("198.51.100.1/32"), prefix("198.51.100.2/32"), prefix("198.51.100.3/32")
	for i := range 3 {
		if err := a.AllowHello(src); err != nil {
			t.Fatalf("hello %d within the burst: %v", i, err)
		}
	}
	if err := a.AllowHello(src); !errors.Is(err, ErrHelloRate) {
		t.Fatalf("hello past the burst: %v, want ErrHelloRate", err)
	}
	if err := a.AllowHello(other); err != nil {
		t.Fatalf("another source is not held back: %v", err)
	}
	if err := a.AllowHello(netip.Prefix{}); err != nil {
		t.Fatalf("an unknown source: %v", err)
	}
	// Two sources tracked, both with spent buckets: a third is refused.
	if err := a.AllowHello(third); !errors.Is(err, ErrSources) {
		t.Fatalf("a source beyond MaxSources: %v, want ErrSources", err)
	}
	clk.Add(500 * time.Millisecond) // one token back
	if err := a.AllowHello(src); err != nil {
		t.Fatalf("hello after a refill: %v", err)
	}
	if err := a.AllowHello(src); !errors.Is(err, ErrHelloRate) {
		t.Fatalf("second hello after one token's refill: %v", err)
	}
	// Once the buckets are full again the entries are dropped, and the
	// third source gets in.
	clk.Add(2 * time.Second)
	if n := a.Sweep(); n != 2 || a.Sources() != 0 {
		t.Fatalf("Sweep dropped %d, %d left; want 2, 0", n, a.Sources())
	}
	if err := a.AllowHello(third); err != nil {
		t.Fatalf("a new source after the sweep: %v", err)
	}
	if obs.get(ReasonHelloRate) != 2 || obs.get(ReasonSources) != 1 {
		t.Fatalf("refusals counted %v", obs.m)
	}
	off := newAdmission(t, Config{HelloRate: -1}, nil)
	for range 100 {
		if err := off.AllowHello(src); err != nil {
			t.Fatalf("no limit: %v", err)
		}
	}
}

func TestAcquireWebSocket(t *testing.T) {
	t.Parallel()
	obs := &counter{}
	a := newAdmission(t, Config{MaxConnsPerSource: 2}, obs)
	src := prefix("198.51.100.1/32")
	r1, err := a.AcquireWebSocket(src)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.AcquireWebSocket(src); err != nil {
		t.Fatal(err)
	}
	if _, err := a.AcquireWebSocket(src); !errors.Is(err, ErrSourceConns) {
		t.Fatalf("third WebSocket: %v, want ErrSourceConns", err)
	}
	if _, err := a.AcquireWebSocket(prefix("198.51.100.2/32")); err != nil {
		t.Fatalf("another source: %v", err)
	}
	r1()
	r1() // a second release is a no-op
	if _, err := a.AcquireWebSocket(src); err != nil {
		t.Fatalf("after a release: %v", err)
	}
	if _, err := a.AcquireWebSocket(src); !errors.Is(err, ErrSourceConns) {
		t.Fatalf("a double release freed two slots: %v", err)
	}
	if a.Sweep() != 0 {
		t.Fatal("Sweep dropped a source that holds WebSockets")
	}
	if obs.get(ReasonSourceConns) != 2 {
		t.Fatalf("refusals counted %v", obs.m)
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	for _, cfg := range []Config{
		{MaxConns: -2}, {MaxConnsPerSource: -5}, {HelloRate: -0.5}, {HelloBurst: -3}, {MaxSources: -1},
		{IPv6PrefixLen: 129}, {ProxyHeaderTimeout: -time.Second}, {TrustedProxies: []netip.Prefix{{}}},
	} {
		if _, err := New(cfg, nil); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
	if got, err := ParsePrefixes(" 10.0.0.0/8, 192.0.2.7 ,::ffff:192.0.2.8, 2001:db8::1/32,"); err != nil ||
		fmt.Sprint(got) != "[10.0.0.0/8 192.0.2.7/32 192.0.2.8/32 2001:db8::/32]" {
		t.Fatalf("ParsePrefixes = %v, %v", got, err)
	}
	if _, err := ParsePrefixes("10.0.0.0/33"); err == nil {
		t.Fatal("a /33 IPv4 prefix was accepted")
	}
}

// serve runs an HTTP server on a wrapped loopback listener that answers
// every request with the source Admission sees.
func serve(t *testing.T, a *Admission) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, a.Source(r))
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	go hs.Serve(a.Listener(ln))
	t.Cleanup(func() { hs.Close() })
	return ln.Addr().String()
}

// dialFrom opens a connection from a local loopback address (Linux routes
// all of 127.0.0.0/8 to lo, so each is a distinct source).
func dialFrom(t *testing.T, from, to string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", to)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// get sends one request on c and returns the status and the body.
func get(t *testing.T, c net.Conn, header string) (int, string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(c, "%sGET / HTTP/1.1\r\nHost: x\r\n\r\n", header); err != nil {
		return 0, err.Error()
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestListener holds the global and per-peer connection limits with a
// real server, answers the connections over them with a 503 whose body is
// JSON-RPC -32000, and frees places as connections close.
func TestListener(t *testing.T) {
	t.Parallel()
	obs := &counter{}
	a := newAdmission(t, Config{MaxConns: 4, MaxConnsPerSource: 2, TrustedProxies: []netip.Prefix{prefix("127.0.0.9/32")}}, obs)
	addr := serve(t, a)
	busy := func(c net.Conn, message string) {
		t.Helper()
		code, body := get(t, c, "")
		var resp struct {
			Error struct {
				Code    int64
				Message string
			}
		}
		if code != http.StatusServiceUnavailable || json.Unmarshal([]byte(body), &resp) != nil ||
			resp.Error.Code != -32000 || resp.Error.Message != message {
			t.Fatalf("refused connection: HTTP %d %q, want 503 with -32000 %q", code, body, message)
		}
	}
	ok := func(c net.Conn, want string) {
		t.Helper()
		if code, body := get(t, c, ""); code != http.StatusOK || body != want {
			t.Fatalf("HTTP %d %q, want 200 %q", code, body, want)
		}
	}
	a1, a2 := dialFrom(t, "127.0.0.2", addr), dialFrom(t, "127.0.0.2", addr)
	ok(a1, "127.0.0.2/32")
	ok(a2, "127.0.0.2/32")
	busy(dialFrom(t, "127.0.0.2", addr), "Server busy: too many connections from your network address, retry later")
	b1 := dialFrom(t, "127.0.0.3", addr)
	ok(b1, "127.0.0.3/32")
	// A trusted proxy is not held to the per-source limit...
	p1 := dialFrom(t, "127.0.0.9", addr)
	ok(p1, "127.0.0.9/32")
	// ...but the global one holds: 4 connections.
	busy(dialFrom(t, "127.0.0.9", addr), "Server busy: too many connections, retry later")
	if a.Conns() != 4 {
		t.Fatalf("Conns = %d, want 4", a.Conns())
	}
	// Closing frees the places (the server sees the close on its read).
	a1.Close()
	p1.Close()
	deadline := time.Now().Add(5 * time.Second)
	for a.Conns() > 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	ok(dialFrom(t, "127.0.0.2", addr), "127.0.0.2/32")
	if obs.get(ReasonSourceConns) != 1 || obs.get(ReasonConns) != 1 {
		t.Fatalf("refusals counted %v", obs.m)
	}
}

// TestProxyProtocol: a trusted proxy's connections carry a PROXY header
// naming the client; an untrusted peer's header is not honoured; a trusted
// proxy that sends none is refused.
func TestProxyProtocol(t *testing.T) {
	t.Parallel()
	a := newAdmission(t, Config{ProxyProtocol: true, TrustedProxies: []netip.Prefix{prefix("127.0.0.9/32")},
		ProxyHeaderTimeout: time.Second}, nil)
	addr := serve(t, a)
	tests := []struct {
		name     string
		from     string
		header   string
		wantCode int
		wantBody string
	}{
		{"v1 from the proxy", "127.0.0.9", "PROXY TCP4 203.0.113.7 127.0.0.1 5000 80\r\n", 200, "203.0.113.7/32"},
		{"v1 IPv6 from the proxy", "127.0.0.9", "PROXY TCP6 2001:db8:7::1 ::1 5000 80\r\n", 200, "2001:db8:7::/64"},
		{"v2 from the proxy", "127.0.0.9", string(v2Header(t)), 200, "198.51.100.44/32"},
		{"no header from the proxy", "127.0.0.9", "", 0, ""},
		{"a client's own header", "127.0.0.4", "PROXY TCP4 203.0.113.7 127.0.0.1 5000 80\r\n", 400, ""},
		{"a client without one", "127.0.0.4", "", 200, "127.0.0.4/32"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, body := get(t, dialFrom(t, tt.from, addr), tt.header)
			if code != tt.wantCode || (tt.wantBody != "" && body != tt.wantBody) {
				t.Fatalf("HTTP %d %q, want %d %q", code, body, tt.wantCode, tt.wantBody)
			}
		})
	}
}

// v2Header is a PROXY protocol v2 header for TCP over IPv4 from
// 198.51.100.44:5000 to 127.0.0.1:80.
func v2Header(t *testing.T) []byte {
	t.Helper()
	h := []byte("\r\n\r\n\x00\r\nQUIT\n")
	h = append(h, 0x21, 0x11, 0x00, 12) // v2 PROXY, TCP4, 12 bytes of addresses
	h = append(h, 198, 51, 100, 44, 127, 0, 0, 1, 0x13, 0x88, 0x00, 0x50)
	return h
}

// Run stops with its context.
func TestRun(t *testing.T) {
	t.Parallel()
	a := newAdmission(t, Config{}, nil)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
	if !strings.Contains(Message(ErrHelloRate), "handshakes") {
		t.Fatal("Message(ErrHelloRate)")
	}
}
