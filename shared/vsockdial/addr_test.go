package vsockdial

import (
	"errors"
	"strings"
	"testing"
)

func TestParseAddr(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    Addr
		wantErr string // substring of the error; "" means success
	}{
		{name: "vsock parent", in: "vsock://3:4222", want: Addr{Vsock: true, CID: 3, Port: 4222}},
		{name: "vsock upper-case scheme", in: "VSOCK://16:5432", want: Addr{Vsock: true, CID: 16, Port: 5432}},
		{name: "vsock any CID empty", in: "vsock://:8443", want: Addr{Vsock: true, CID: AnyCID, Port: 8443}},
		{name: "vsock any CID word", in: "vsock://ANY:8443", want: Addr{Vsock: true, CID: AnyCID, Port: 8443}},
		{name: "vsock largest port", in: "vsock://3:4294967294", want: Addr{Vsock: true, CID: 3, Port: 4294967294}},
		{name: "vsock surrounding space", in: "  vsock://3:4222\n", want: Addr{Vsock: true, CID: 3, Port: 4222}},
		{name: "plain host:port", in: "nats.internal:4222", want: Addr{HostPort: "nats.internal:4222"}},
		{name: "plain ipv6", in: "[::1]:5432", want: Addr{HostPort: "[::1]:5432"}},
		{name: "plain any host", in: ":8080", want: Addr{HostPort: ":8080"}},
		{name: "tcp scheme", in: "tcp://127.0.0.1:15432", want: Addr{HostPort: "127.0.0.1:15432"}},
		{name: "nats url", in: "nats://nats:4222", want: Addr{HostPort: "nats:4222"}},
		{name: "nats url default port", in: "nats://nats", want: Addr{HostPort: "nats:4222"}},
		{name: "tls url default port", in: "tls://nats.internal", want: Addr{HostPort: "nats.internal:4222"}},
		{name: "postgres url", in: "postgres://prover:secret@db:6432/proofs?sslmode=disable", want: Addr{HostPort: "db:6432"}},
		{name: "postgresql url default port", in: "postgresql://prover@db/proofs", want: Addr{HostPort: "db:5432"}},
		{name: "postgres ipv6 default port", in: "postgres://prover@[::1]/proofs", want: Addr{HostPort: "[::1]:5432"}},

		{name: "empty", in: "", wantErr: "empty address"},
		{name: "blank", in: "   ", wantErr: "empty address"},
		{name: "bad CID word", in: "vsock://parent:4222", wantErr: `bad CID "parent"`},
		{name: "bad CID negative", in: "vsock://-1:4222", wantErr: `bad CID "-1"`},
		{name: "bad CID too large", in: "vsock://4294967296:4222", wantErr: `bad CID "4294967296"`},
		{name: "bad CID is the wildcard number", in: "vsock://4294967295:4222", wantErr: `bad CID "4294967295"`},
		{name: "bad vsock port word", in: "vsock://3:nats", wantErr: `bad port "nats"`},
		{name: "bad vsock port too large", in: "vsock://3:4294967296", wantErr: `bad port "4294967296"`},
		{name: "bad vsock port is the wildcard", in: "vsock://3:4294967295", wantErr: `bad port "4294967295"`},
		{name: "bad tcp port", in: "db:99999", wantErr: `bad port "99999"`},
		{name: "bad tcp port word", in: "db:postgres", wantErr: `bad port "postgres"`},
		{name: "missing vsock port", in: "vsock://3", wantErr: "missing port"},
		{name: "missing vsock port after colon", in: "vsock://3:", wantErr: "missing port"},
		{name: "missing tcp port", in: "localhost", wantErr: "missing port"},
		{name: "missing tcp port after colon", in: "localhost:", wantErr: "missing port"},
		{name: "missing tcp scheme port", in: "tcp://localhost", wantErr: "missing port"},
		{name: "vsock with path", in: "vsock://3:4222/x", wantErr: "only CID:PORT"},
		{name: "unknown scheme", in: "http://nats:4222", wantErr: `unknown scheme "http"`},
		{name: "unknown scheme unix", in: "unix:///run/nats.sock", wantErr: `unknown scheme "unix"`},
		{name: "several postgres hosts", in: "postgres://u@db1:5432,db2:5432/proofs", wantErr: "several hosts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseAddr(tt.in)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("ParseAddr(%q) = %+v, want an error containing %q", tt.in, got, tt.wantErr)
				}
				if !errors.Is(err, ErrInvalidAddr) {
					t.Errorf("ParseAddr(%q) error %v does not wrap ErrInvalidAddr", tt.in, err)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("ParseAddr(%q) error = %q, want it to contain %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseAddr(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("ParseAddr(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			// String gives back an address that parses to the same value.
			again, err := ParseAddr(got.String())
			if err != nil || again != got {
				t.Fatalf("ParseAddr(%q.String() = %q) = %+v, %v; want %+v", tt.in, got.String(), again, err, got)
			}
		})
	}
}

func TestAddrString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   Addr
		want string
	}{
		{name: "vsock", in: Addr{Vsock: true, CID: 3, Port: 4222}, want: "vsock://3:4222"},
		{name: "vsock any", in: Addr{Vsock: true, CID: AnyCID, Port: 8443}, want: "vsock://ANY:8443"},
		{name: "tcp", in: Addr{HostPort: "db:5432"}, want: "db:5432"},
		{name: "zero", in: Addr{}, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.in.String(); got != tt.want {
				t.Fatalf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}
