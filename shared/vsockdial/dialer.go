package vsockdial

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mdlayher/vsock"
	"github.com/nats-io/nats.go"
)

// DefaultTimeout bounds one dial when Config.Timeout is zero.
const DefaultTimeout = 5 * time.Second

// Config configures a Dialer.
type Config struct {
	// Target is where every connection goes, whatever address the client
	// library asks for: "vsock://3:4222" for a proxy on the parent instance,
	// or a TCP address (a local proxy). Empty: dial TCP to the address the
	// client library asks for.
	Target string
	// Timeout bounds one dial, in addition to any deadline of the caller's
	// context (default DefaultTimeout). nats.go's CustomDialer has no
	// context, so this is its only bound.
	Timeout time.Duration
}

// Dialer dials the configured Target, or TCP when there is none. It is a
// nats.CustomDialer (Dial) and a pgconn.DialFunc (DialContext). Safe for
// concurrent use.
type Dialer struct {
	target  Addr
	timeout time.Duration
	tcp     net.Dialer
}

// NewDialer validates cfg and returns a Dialer.
func NewDialer(cfg Config) (*Dialer, error) {
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("vsockdial: Config.Timeout must not be negative, got %s", cfg.Timeout)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	d := &Dialer{timeout: cfg.Timeout}
	if cfg.Target != "" {
		a, err := ParseAddr(cfg.Target)
		if err != nil {
			return nil, fmt.Errorf("vsockdial: Config.Target: %w", err)
		}
		if a.Vsock && a.CID == AnyCID {
			return nil, fmt.Errorf("vsockdial: Config.Target %s names no CID to dial", a)
		}
		if a.Vsock && a.Port == 0 {
			return nil, fmt.Errorf("vsockdial: Config.Target %s names no port to dial", a)
		}
		d.target = a
	}
	return d, nil
}

// Target is the address every connection goes to; the zero Addr when the
// Dialer dials what it is asked.
func (d *Dialer) Target() Addr { return d.target }

// Dial implements nats.CustomDialer. The dial is bounded by Config.Timeout.
func (d *Dialer) Dial(network, address string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, address)
}

// DialContext dials the Target (or network/address when there is none). It
// has the signature of pgconn.DialFunc. Errors name the address dialed; a
// machine without a vsock device gets an error that says so.
func (d *Dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	switch {
	case d.target.Vsock:
		c, err := vsock.DialContext(ctx, d.target.CID, d.target.Port, nil)
		if err != nil {
			return nil, fmt.Errorf("vsockdial: dial %s (for %s): %w%s", d.target, address, err, vsockHint(err))
		}
		return c, nil
	case !d.target.IsZero():
		network, address = "tcp", d.target.HostPort
	}
	c, err := d.tcp.DialContext(ctx, network, address)
	if err != nil {
		return nil, fmt.Errorf("vsockdial: dial %s %s: %w", network, address, err)
	}
	return c, nil
}

// vsockHint explains the errors a machine without vsock support returns.
func vsockHint(err error) string {
	switch {
	case errors.Is(err, syscall.EAFNOSUPPORT), errors.Is(err, syscall.ENODEV), errors.Is(err, syscall.ENOENT):
		return " (no vsock device on this machine: vsock addresses work inside a Nitro enclave or a VM with virtio-vsock)"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNREFUSED):
		return " (nothing listens on that vsock port: is the proxy on the parent instance running?)"
	case errors.Is(err, syscall.ETIMEDOUT), errors.Is(err, context.DeadlineExceeded):
		return " (no answer: check the CID and that the proxy on the parent instance is running)"
	}
	return ""
}

// NATSOptions returns the nats.Connect options that route the connection
// through this Dialer. With a Target, the server URL's host is not looked up
// (an enclave has no DNS) and servers the cluster advertises are ignored
// (every connection goes to the Target anyway).
func (d *Dialer) NATSOptions() []nats.Option {
	opts := []nats.Option{nats.SetCustomDialer(d)}
	if !d.target.IsZero() {
		opts = append(opts, nats.SkipHostLookup(), nats.IgnoreDiscoveredServers())
	}
	return opts
}

// ConfigurePgx routes the pool's connections (and pgx's cancel requests)
// through this Dialer. With a Target, host names in the database URL are not
// looked up (an enclave has no DNS); they still serve TLS verification.
func (d *Dialer) ConfigurePgx(cfg *pgxpool.Config) {
	cfg.ConnConfig.DialFunc = d.DialContext
	if !d.target.IsZero() {
		cfg.ConnConfig.LookupFunc = func(_ context.Context, host string) ([]string, error) {
			return []string{host}, nil
		}
	}
}

// Listen listens on addr: a vsock address (vsock://:PORT or vsock://ANY:PORT
// for any CID, vsock://CID:PORT for one) or a TCP address (host:port,
// tcp://host:port). Port 0 picks a free port.
func Listen(addr string) (net.Listener, error) {
	a, err := ParseAddr(addr)
	if err != nil {
		return nil, err
	}
	if !a.Vsock {
		l, err := net.Listen("tcp", a.HostPort)
		if err != nil {
			return nil, fmt.Errorf("vsockdial: listen %s: %w", a, err)
		}
		return l, nil
	}
	l, err := vsock.ListenContextID(a.CID, a.Port, nil)
	if err != nil {
		return nil, fmt.Errorf("vsockdial: listen %s: %w%s", a, err, vsockHint(err))
	}
	return l, nil
}
