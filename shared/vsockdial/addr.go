// Package vsockdial connects the programs to NATS and Postgres, and lets the
// frontend accept connections, over AF_VSOCK when they run inside an AWS
// Nitro enclave, and over TCP everywhere else.
//
// An enclave has no network interface: its only way out is a vsock
// connection to its parent instance, where a proxy (vsock-proxy or socat)
// forwards a vsock port to the real service. Instead of running socat inside
// the enclave to turn vsock back into a local TCP port, the programs dial the
// vsock port themselves:
//
//   - NATS: a Dialer is a nats.CustomDialer; Dialer.NATSOptions installs it.
//   - Postgres: Dialer.DialContext is a pgconn.DialFunc; Dialer.ConfigurePgx
//     installs it on a *pgxpool.Config.
//   - the frontend: Listen("vsock://:8443") accepts vsock connections that the
//     parent's TCP→vsock proxy forwards from the app.
//
// The server URLs stay ordinary URLs (nats://nats.internal:4222,
// postgres://…@db.internal:5432/…), so TLS still verifies the real host
// name; the Dialer's Target only decides where the bytes go. An empty Target
// dials TCP to the address the client library asks for, unchanged.
//
// Address syntax (ParseAddr):
//
//	vsock://CID:PORT     a vsock endpoint, CID and PORT decimal (3 is the parent
//	                     instance as seen from an enclave)
//	vsock://:PORT        a vsock listener on any CID (also vsock://ANY:PORT)
//	host:port            TCP
//	tcp://host:port      TCP
//	nats://host[:port]   TCP, port 4222 by default (also tls://)
//	postgres://…host[:port]/…  TCP, port 5432 by default (also postgresql://)
package vsockdial

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// AnyCID is the wildcard context ID a listener binds to (VMADDR_CID_ANY).
// It cannot be dialed.
const AnyCID uint32 = math.MaxUint32

// Well-known context IDs.
const (
	// HypervisorCID is the hypervisor itself (VMADDR_CID_HYPERVISOR).
	HypervisorCID uint32 = 0
	// LocalCID is this machine's loopback (VMADDR_CID_LOCAL).
	LocalCID uint32 = 1
	// HostCID is the host of an ordinary VM (VMADDR_CID_HOST).
	HostCID uint32 = 2
	// ParentCID is the parent instance as seen from a Nitro enclave.
	ParentCID uint32 = 3
)

// ErrInvalidAddr is wrapped by every error ParseAddr returns.
var ErrInvalidAddr = errors.New("invalid address")

// Addr is a parsed address: a vsock endpoint or a TCP host:port.
type Addr struct {
	// Vsock is true for a vsock endpoint (CID and Port), false for TCP
	// (HostPort).
	Vsock bool
	// CID is the vsock context ID; AnyCID for a listener on any CID.
	CID uint32
	// Port is the vsock port.
	Port uint32
	// HostPort is the TCP address, as net.Dial takes it.
	HostPort string
}

// IsZero reports whether a is the zero Addr (no address configured).
func (a Addr) IsZero() bool { return a == Addr{} }

// String returns the address in the syntax ParseAddr accepts:
// vsock://CID:PORT (vsock://ANY:PORT for AnyCID) or host:port.
func (a Addr) String() string {
	if !a.Vsock {
		return a.HostPort
	}
	cid := strconv.FormatUint(uint64(a.CID), 10)
	if a.CID == AnyCID {
		cid = "ANY"
	}
	return "vsock://" + cid + ":" + strconv.FormatUint(uint64(a.Port), 10)
}

// defaultPorts are the ports of the URL schemes whose port may be left out.
var defaultPorts = map[string]string{
	"nats":       "4222",
	"tls":        "4222",
	"postgres":   "5432",
	"postgresql": "5432",
}

// ParseAddr parses a vsock or TCP address (see the package documentation for
// the syntax). Errors wrap ErrInvalidAddr and name the input and the reason.
func ParseAddr(s string) (Addr, error) {
	in := strings.TrimSpace(s)
	if in == "" {
		return Addr{}, fmt.Errorf("vsockdial: empty address: %w", ErrInvalidAddr)
	}
	scheme, rest, hasScheme := strings.Cut(in, "://")
	if !hasScheme {
		hp, err := tcpHostPort(in, "")
		if err != nil {
			return Addr{}, fmt.Errorf("vsockdial: address %q: %s: %w", s, err, ErrInvalidAddr)
		}
		return Addr{HostPort: hp}, nil
	}
	switch scheme = strings.ToLower(scheme); scheme {
	case "vsock":
		a, err := parseVsock(rest)
		if err != nil {
			return Addr{}, fmt.Errorf("vsockdial: address %q: %s: %w", s, err, ErrInvalidAddr)
		}
		return a, nil
	case "tcp", "nats", "tls", "postgres", "postgresql":
		u, err := url.Parse(in)
		if err != nil {
			return Addr{}, fmt.Errorf("vsockdial: address %q: %w: %w", s, err, ErrInvalidAddr)
		}
		if strings.Contains(u.Host, ",") {
			return Addr{}, fmt.Errorf("vsockdial: address %q: several hosts are not supported: %w", s, ErrInvalidAddr)
		}
		hp, err := tcpHostPort(u.Host, defaultPorts[scheme])
		if err != nil {
			return Addr{}, fmt.Errorf("vsockdial: address %q: %s: %w", s, err, ErrInvalidAddr)
		}
		return Addr{HostPort: hp}, nil
	default:
		return Addr{}, fmt.Errorf("vsockdial: address %q: unknown scheme %q (want vsock, tcp, nats, tls, postgres or postgresql): %w", s, scheme, ErrInvalidAddr)
	}
}

// parseVsock parses "CID:PORT" (CID may be empty or ANY).
func parseVsock(rest string) (Addr, error) {
	if strings.ContainsAny(rest, "/?#@") {
		return Addr{}, errors.New("a vsock address is only CID:PORT")
	}
	cidText, portText, ok := strings.Cut(rest, ":")
	if !ok || portText == "" {
		return Addr{}, errors.New("missing port (want vsock://CID:PORT)")
	}
	var cid uint32
	switch {
	case cidText == "" || strings.EqualFold(cidText, "any"):
		cid = AnyCID
	default:
		n, err := strconv.ParseUint(cidText, 10, 32)
		if err != nil || n == uint64(AnyCID) {
			return Addr{}, fmt.Errorf("bad CID %q (want a decimal context ID below %d, or ANY)", cidText, AnyCID)
		}
		cid = uint32(n)
	}
	port, err := strconv.ParseUint(portText, 10, 32)
	if err != nil || port == math.MaxUint32 {
		return Addr{}, fmt.Errorf("bad port %q (want a decimal vsock port below %d)", portText, uint64(math.MaxUint32))
	}
	return Addr{Vsock: true, CID: cid, Port: uint32(port)}, nil
}

// tcpHostPort validates host:port, filling in defPort when the port is
// absent and defPort is set.
func tcpHostPort(hostport, defPort string) (string, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		var ae *net.AddrError
		if !errors.As(err, &ae) || ae.Err != "missing port in address" {
			return "", fmt.Errorf("bad host:port (%v)", err)
		}
		host, port = strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]"), ""
	}
	if port == "" {
		if defPort == "" {
			return "", errors.New("missing port (want host:port)")
		}
		port = defPort
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return "", fmt.Errorf("bad port %q (want 0..65535)", port)
	}
	return net.JoinHostPort(host, port), nil
}
