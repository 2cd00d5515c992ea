// Package admission decides who gets into the frontend and how much of it
// each client may hold, so that a flood from one network address (or from
// a few hundred) leaves the door open for everyone else:
//
//   - the client's source: its address (IPv4 /32, IPv6 /64 by default),
//     read from the TCP peer, or through trusted proxies from the PROXY
//     protocol header and X-Forwarded-For (Source, Listener);
//   - connections: at most MaxConns TCP connections in all and
//     MaxConnsPerSource from one peer, counted by the Listener, which
//     answers the ones over a limit with HTTP 503 and closes them; and
//     WebSockets per source (AcquireWebSocket), which also counts clients
//     behind a proxy;
//   - handshakes: a token bucket per source (AllowHello) in front of
//     every call that signs an attestation document.
//
// The open sessions per source are bounded by the session table itself
// (api/internal/handshake), where the global cap lives. A source this
// package cannot tell (a vsock peer without a forwarded address) is
// unknown: only the global bounds apply to it.
//
// Entries of sources that hold nothing and whose bucket is full again are
// dropped by Run; at most MaxSources are tracked at once (ErrSources
// beyond), which bounds the table's memory whatever the number of
// addresses an attacker has.
package admission

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Refusals. The frontend answers each with JSON-RPC -32000 (server busy)
// or, for a connection, HTTP 503 with that error as body.
var (
	ErrConns       = errors.New("too many connections")
	ErrSourceConns = errors.New("too many connections from this address")
	ErrHelloRate   = errors.New("too many handshakes from this address")
	ErrSources     = errors.New("too many clients")
)

// Reasons of refusals, the labels of the prover_api_refused_total metric.
// Sessions and SourceSessions are the session table's (handshake.ErrBusy
// and handshake.ErrSourceBusy); the frontend reports them with the same
// labels.
const (
	ReasonConns          = "connections"
	ReasonSourceConns    = "source_connections"
	ReasonHelloRate      = "hello_rate"
	ReasonSources        = "sources"
	ReasonSessions       = "sessions"
	ReasonSourceSessions = "source_sessions"
)

// ReasonOf is the label of one of this package's refusals ("" for any
// other error).
func ReasonOf(err error) string {
	switch {
	case errors.Is(err, ErrConns):
		return ReasonConns
	case errors.Is(err, ErrSourceConns):
		return ReasonSourceConns
	case errors.Is(err, ErrHelloRate):
		return ReasonHelloRate
	case errors.Is(err, ErrSources):
		return ReasonSources
	}
	return ""
}

// Observer hears about every refusal (for metrics). Refused must not
// block.
type Observer interface {
	Refused(reason string)
}

// Config sets the limits. Zero fields take the defaults; -1 turns a limit
// off.
type Config struct {
	// MaxConns bounds the TCP connections the Listener holds (default
	// 20000).
	MaxConns int
	// MaxConnsPerSource bounds one source's connections: TCP connections
	// from one peer that is not a trusted proxy, and WebSockets of one
	// source however they arrive (default 64).
	MaxConnsPerSource int
	// HelloRate is the sustained rate, per second, of handshakes one
	// source may start (hello and attestation calls, which each sign a
	// document), and HelloBurst how many it may start at once (defaults 5
	// and 20).
	HelloRate  float64
	HelloBurst int
	// MaxSources bounds the sources tracked at once (default 100000).
	MaxSources int
	// TrustedProxies are the peers whose X-Forwarded-For header and, with
	// ProxyProtocol, PROXY protocol header name the client. A vsock peer
	// (the enclave's parent instance, its only way in) is always trusted.
	TrustedProxies []netip.Prefix
	// ProxyProtocol makes the Listener read a PROXY protocol header (v1 or
	// v2) from every connection of a trusted proxy; other peers' bytes are
	// read as they come (a header from them is not honoured).
	ProxyProtocol bool
	// ProxyHeaderTimeout bounds the wait for a PROXY header (default 5 s).
	ProxyHeaderTimeout time.Duration
	// IPv6PrefixLen is how much of an IPv6 address names a source (default
	// 64: one subscriber's network, since a host can use any address in
	// it).
	IPv6PrefixLen int
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Defaults.
const (
	DefaultMaxConns           = 20000
	DefaultMaxConnsPerSource  = 64
	DefaultHelloRate          = 5
	DefaultHelloBurst         = 20
	DefaultMaxSources         = 100000
	DefaultIPv6PrefixLen      = 64
	DefaultProxyHeaderTimeout = 5 * time.Second
)

func (c *Config) setDefaults() {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.MaxConns, DefaultMaxConns)
	def(&c.MaxConnsPerSource, DefaultMaxConnsPerSource)
	def(&c.HelloBurst, DefaultHelloBurst)
	def(&c.MaxSources, DefaultMaxSources)
	def(&c.IPv6PrefixLen, DefaultIPv6PrefixLen)
	if c.HelloRate == 0 {
		c.HelloRate = DefaultHelloRate
	}
	if c.ProxyHeaderTimeout == 0 {
		c.ProxyHeaderTimeout = DefaultProxyHeaderTimeout
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

func (c *Config) validate() error {
	var errs []error
	for _, f := range []struct {
		name string
		v    int
	}{{"MaxConns", c.MaxConns}, {"MaxConnsPerSource", c.MaxConnsPerSource}, {"HelloBurst", c.HelloBurst}} {
		if f.v < -1 {
			errs = append(errs, fmt.Errorf("%s must be positive or -1 (no limit), got %d", f.name, f.v))
		}
	}
	if c.HelloRate < 0 && c.HelloRate != -1 {
		errs = append(errs, fmt.Errorf("HelloRate must be positive or -1 (no limit), got %g", c.HelloRate))
	}
	if c.HelloRate > 0 && c.HelloBurst < 1 {
		errs = append(errs, fmt.Errorf("HelloBurst must be at least 1 with a HelloRate, got %d", c.HelloBurst))
	}
	if c.MaxSources < 1 {
		errs = append(errs, fmt.Errorf("MaxSources must be positive, got %d", c.MaxSources))
	}
	if c.IPv6PrefixLen < 1 || c.IPv6PrefixLen > 128 {
		errs = append(errs, fmt.Errorf("IPv6PrefixLen must be 1..128, got %d", c.IPv6PrefixLen))
	}
	if c.ProxyHeaderTimeout < 0 {
		errs = append(errs, fmt.Errorf("ProxyHeaderTimeout must not be negative, got %v", c.ProxyHeaderTimeout))
	}
	for _, p := range c.TrustedProxies {
		if !p.IsValid() {
			errs = append(errs, errors.New("TrustedProxies holds an invalid prefix"))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("admission: %w", err)
	}
	return nil
}

// Admission holds the per-source state. Safe for concurrent use.
type Admission struct {
	cfg     Config
	obs     Observer
	trusted []netip.Prefix

	conns atomic.Int64 // TCP connections the Listener holds

	mu        sync.Mutex
	sources   map[netip.Prefix]*entry
	lastSweep time.Time
}

// entry is one source's state.
type entry struct {
	conns      int32         // TCP connections (not through a trusted proxy)
	websockets int32         // WebSockets, however they arrived
	hellos     *rate.Limiter // nil until its first handshake
}

// New checks cfg and returns an empty Admission. obs may be nil.
func New(cfg Config, obs Observer) (*Admission, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if obs == nil {
		obs = nopObserver{}
	}
	trusted := make([]netip.Prefix, len(cfg.TrustedProxies))
	for i, p := range cfg.TrustedProxies {
		trusted[i] = p.Masked()
	}
	return &Admission{cfg: cfg, obs: obs, trusted: trusted, sources: make(map[netip.Prefix]*entry)}, nil
}

type nopObserver struct{}

func (nopObserver) Refused(string) {}

// ParsePrefixes reads a comma-separated list of addresses and CIDR
// prefixes (a bare address is one host), for a trusted-proxies flag.
func ParsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if strings.Contains(f, "/") {
			p, err := netip.ParsePrefix(f)
			if err != nil {
				return nil, fmt.Errorf("%q is not an address or CIDR prefix: %w", f, err)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not an address or CIDR prefix: %w", f, err)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// Key is the source an address belongs to: the address itself for IPv4,
// its first IPv6PrefixLen bits for IPv6. The zero Prefix (unknown) for an
// invalid address.
func (a *Admission) Key(addr netip.Addr) netip.Prefix {
	if !addr.IsValid() {
		return netip.Prefix{}
	}
	addr = addr.Unmap().WithZone("")
	bits := 32
	if addr.Is6() {
		bits = a.cfg.IPv6PrefixLen
	}
	p, _ := addr.Prefix(bits)
	return p
}

// trustedAddr reports whether addr is a trusted proxy.
func (a *Admission) trustedAddr(addr netip.Addr) bool {
	addr = addr.Unmap()
	for _, p := range a.trusted {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// peer reads a net.Addr: its IP, and whether it is a trusted proxy (a
// trusted address, or a peer without an IP: a vsock peer).
func (a *Admission) peer(addr net.Addr) (ip netip.Addr, trusted bool) {
	switch v := addr.(type) {
	case *net.TCPAddr:
		ip, _ = netip.AddrFromSlice(v.IP)
	case nil:
		return netip.Addr{}, false
	default:
		ap, err := netip.ParseAddrPort(addr.String())
		if err != nil {
			return netip.Addr{}, addr.Network() == "vsock"
		}
		ip = ap.Addr()
	}
	ip = ip.Unmap()
	return ip, ip.IsValid() && a.trustedAddr(ip)
}

// Source is the source of an HTTP request: the connection's peer (which
// the Listener already replaced by a trusted proxy's PROXY header), or,
// when the peer is a trusted proxy, the first address of X-Forwarded-For,
// read from the right, that is not a trusted proxy. A request whose
// source cannot be told (a vsock peer without the header) is unknown (the
// zero Prefix).
func (a *Admission) Source(r *http.Request) netip.Prefix {
	var peer netip.Addr
	var trusted bool
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		peer = ap.Addr().Unmap()
		trusted = a.trustedAddr(peer)
	} else {
		// Not host:port: a vsock peer ("vm(3):1234"), always the relay.
		trusted = true
	}
	if trusted {
		if ip, ok := a.forwarded(r.Header.Values("X-Forwarded-For")); ok {
			return a.Key(ip)
		}
	}
	return a.Key(peer)
}

// forwarded walks X-Forwarded-For from the right, past trusted proxies,
// and returns the first other address (or the leftmost one if all are
// trusted). An entry that is not an address stops the walk: what is left
// of it was written by whoever sent the request, so the last good address
// is the client as far as trusted hops know.
func (a *Admission) forwarded(values []string) (netip.Addr, bool) {
	var last netip.Addr
	for i := len(values) - 1; i >= 0; i-- {
		hops := strings.Split(values[i], ",")
		for j := len(hops) - 1; j >= 0; j-- {
			ip, ok := parseHop(hops[j])
			if !ok {
				return last, last.IsValid()
			}
			last = ip
			if !a.trustedAddr(ip) {
				return ip, true
			}
		}
	}
	return last, last.IsValid()
}

// parseHop reads one X-Forwarded-For entry: an address, possibly with a
// port ("1.2.3.4:5", "[2001:db8::1]:5").
func parseHop(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if ip, err := netip.ParseAddr(s); err == nil {
		return ip.Unmap().WithZone(""), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone(""), true
	}
	return netip.Addr{}, false
}

// entryLocked returns src's entry, creating it (ErrSources when the table
// is full even after a sweep).
func (a *Admission) entryLocked(src netip.Prefix, now time.Time) (*entry, error) {
	if e, ok := a.sources[src]; ok {
		return e, nil
	}
	if len(a.sources) >= a.cfg.MaxSources && now.Sub(a.lastSweep) >= time.Second {
		a.sweepLocked(now)
	}
	if len(a.sources) >= a.cfg.MaxSources {
		return nil, ErrSources
	}
	e := &entry{}
	a.sources[src] = e
	return e, nil
}

// refuse reports a refusal and returns it.
func (a *Admission) refuse(err error) error {
	a.obs.Refused(ReasonOf(err))
	return err
}

// AllowHello takes a token from src's handshake bucket: ErrHelloRate when
// it is empty, ErrSources when src is new and the table is full. An
// unknown source is always allowed.
func (a *Admission) AllowHello(src netip.Prefix) error {
	if !src.IsValid() || a.cfg.HelloRate < 0 {
		return nil
	}
	now := a.cfg.Now()
	a.mu.Lock()
	e, err := a.entryLocked(src, now)
	if err == nil && e.hellos == nil {
		e.hellos = rate.NewLimiter(rate.Limit(a.cfg.HelloRate), a.cfg.HelloBurst)
	}
	a.mu.Unlock()
	if err != nil {
		return a.refuse(err)
	}
	if !e.hellos.AllowN(now, 1) {
		return a.refuse(ErrHelloRate)
	}
	return nil
}

// AcquireWebSocket counts a WebSocket of src: ErrSourceConns when src
// holds MaxConnsPerSource already. Call release once when it closes.
func (a *Admission) AcquireWebSocket(src netip.Prefix) (release func(), err error) {
	return a.acquire(src, func(e *entry) *int32 { return &e.websockets })
}

// acquire counts one more of what field selects for src.
func (a *Admission) acquire(src netip.Prefix, field func(*entry) *int32) (func(), error) {
	if !src.IsValid() {
		return func() {}, nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	e, err := a.entryLocked(src, a.cfg.Now())
	if err != nil {
		return nil, a.refuse(err)
	}
	n := field(e)
	if a.cfg.MaxConnsPerSource > 0 && int(*n) >= a.cfg.MaxConnsPerSource {
		return nil, a.refuse(ErrSourceConns)
	}
	*n++
	var once sync.Once
	return func() {
		once.Do(func() {
			a.mu.Lock()
			defer a.mu.Unlock()
			*n--
		})
	}, nil
}

// Conns is the number of TCP connections the Listener holds.
func (a *Admission) Conns() int { return int(a.conns.Load()) }

// Sources is the number of sources tracked.
func (a *Admission) Sources() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.sources)
}

// Run drops idle sources every 10 s until ctx is done.
func (a *Admission) Run(ctx context.Context) {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			a.Sweep()
		}
	}
}

// Sweep drops the sources that hold no connection and whose handshake
// bucket is full again, and returns how many it dropped.
func (a *Admission) Sweep() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.sweepLocked(a.cfg.Now())
}

func (a *Admission) sweepLocked(now time.Time) int {
	a.lastSweep = now
	n := 0
	for src, e := range a.sources {
		if e.conns > 0 || e.websockets > 0 {
			continue
		}
		if e.hellos != nil && e.hellos.TokensAt(now) < float64(a.cfg.HelloBurst) {
			continue
		}
		delete(a.sources, src)
		n++
	}
	return n
}
