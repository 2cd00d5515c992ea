package server_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/openpassport/prover-fleet/api/server"
	"github.com/openpassport/prover-fleet/shared/attest"
	"github.com/openpassport/prover-fleet/shared/job"
	"github.com/openpassport/prover-fleet/shared/jobqueue"
	"github.com/openpassport/prover-fleet/shared/store"
)

// Embedding the frontend in-process, as `proverctl dev` and the demo do:
// the caller owns the connections and the stream setup.
func Example_embed() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pool.Close()
	nc, err := nats.Connect(os.Getenv("NATS_URL"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer nc.Drain()
	js, _ := jetstream.New(nc)
	qcfg := jobqueue.DefaultConfig()
	publisher, _ := jobqueue.NewPublisher(js, qcfg)
	dev, _ := attest.NewDev(attest.DevConfig{Dir: filepath.Join(os.TempDir(), "dev-attest"), ModuleID: "demo"})
	sealer, _ := job.NewSealer(job.NewKey()) // the workers need the same key

	srv, err := server.New(server.Deps{
		Store:    store.New(pool),
		Queue:    publisher,
		Events:   jobqueue.NewEvents(nc),
		Attester: dev,
		Sealer:   sealer,
		Logger:   slog.Default(),
	}, server.Config{CircuitFolder: "circuits/build", ZkeyFolder: "zkeys"})
	if err != nil {
		fmt.Println(err)
		return
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	fmt.Println("app URL: ws://" + ln.Addr().String() + "/")
	// Clients verify attestations against the development root.
	_, _ = attest.NewVerifier(attest.VerifierConfig{
		Roots: []*x509.Certificate{dev.RootCert()}, AllowedPCR0: [][]byte{dev.PCR0()}, MaxAge: time.Minute})
	_ = srv.Serve(ctx, ln) // returns once ctx is done and the frontend has shut down
}
