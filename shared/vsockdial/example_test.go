package vsockdial_test

import (
	"fmt"

	"github.com/openpassport/prover-fleet/shared/vsockdial"
)

// The same flag accepts a vsock endpoint on the parent instance or an
// ordinary address.
func ExampleParseAddr() {
	for _, s := range []string{
		"vsock://3:4222",
		"vsock://:8443",
		"nats://nats.internal",
		"postgres://prover@db.internal/proofs?sslmode=verify-full",
		"vsock://parent:4222",
	} {
		a, err := vsockdial.ParseAddr(s)
		if err != nil {
			fmt.Println("error:", err)
			continue
		}
		fmt.Printf("%-58s vsock=%-5t %s\n", s, a.Vsock, a)
	}
	// Output:
	// vsock://3:4222                                             vsock=true  vsock://3:4222
	// vsock://:8443                                              vsock=true  vsock://ANY:8443
	// nats://nats.internal                                       vsock=false nats.internal:4222
	// postgres://prover@db.internal/proofs?sslmode=verify-full   vsock=false db.internal:5432
	// error: vsockdial: address "vsock://parent:4222": bad CID "parent" (want a decimal context ID below 4294967295, or ANY): invalid address
}

// Inside an enclave the worker keeps its ordinary server URLs and sends the
// bytes over vsock to proxies on the parent instance (CID 3).
func ExampleDialer() {
	natsDialer, err := vsockdial.NewDialer(vsockdial.Config{Target: "vsock://3:4222"})
	if err != nil {
		fmt.Println(err)
		return
	}
	// nc, err := nats.Connect("tls://nats.prover.internal:4222", natsDialer.NATSOptions()...)
	fmt.Println("nats via", natsDialer.Target(), "with", len(natsDialer.NATSOptions()), "options")

	pgDialer, err := vsockdial.NewDialer(vsockdial.Config{Target: "vsock://3:5432"})
	if err != nil {
		fmt.Println(err)
		return
	}
	// cfg, err := pgxpool.ParseConfig("postgres://prover@db.prover.internal:5432/proofs?sslmode=verify-full")
	// pgDialer.ConfigurePgx(cfg)
	fmt.Println("postgres via", pgDialer.Target())

	// Outside an enclave: no target, plain TCP to whatever the URL names.
	tcp, _ := vsockdial.NewDialer(vsockdial.Config{})
	fmt.Println("no target:", tcp.Target().IsZero())
	// Output:
	// nats via vsock://3:4222 with 3 options
	// postgres via vsock://3:5432
	// no target: true
}
