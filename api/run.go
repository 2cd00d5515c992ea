package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/openpassport/prover-fleet/api/internal/config"
	"github.com/openpassport/prover-fleet/api/metrics"
	"github.com/openpassport/prover-fleet/api/server"
	"github.com/openpassport/prover-fleet/internal/admin"
	"github.com/openpassport/prover-fleet/internal/connect"
	"github.com/openpassport/prover-fleet/shared/attest"
	"github.com/openpassport/prover-fleet/shared/circuitdir"
	"github.com/openpassport/prover-fleet/shared/job"
	"github.com/openpassport/prover-fleet/shared/jobqueue"
	"github.com/openpassport/prover-fleet/shared/store"
	"github.com/openpassport/prover-fleet/shared/vsockdial"
)

// run connects to Postgres and NATS (through their targets when set, e.g.
// vsock://3:5432 inside an enclave), serves until ctx is done, then shuts
// down in order: stop accepting and finish calls in flight, then drain
// NATS, then close the pool. The listeners (JSON-RPC, the Socket.IO status
// relay, admin) take host:port or vsock://:PORT.
func run(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	key, err := job.LoadKeyFile(cfg.JobKeyFile)
	if err != nil {
		return err
	}
	sealer, err := job.NewSealer(key)
	clear(key)
	if err != nil {
		return err
	}

	zkeyNames, err := circuitdir.LoadZkeyMap(cfg.ZkeyMapFile)
	if err != nil {
		return err
	}
	attester, closeAttester, err := newAttester(cfg, log)
	if err != nil {
		return err
	}
	defer closeAttester()

	pool, err := connect.Postgres(ctx, connect.PostgresConfig{URL: cfg.DatabaseURL, Target: cfg.DatabaseTarget})
	if err != nil {
		return err
	}
	defer pool.Close()
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = pool.Ping(pingCtx)
	cancel()
	if err != nil {
		return fmt.Errorf("postgres %s: %w", connect.Redacted(cfg.DatabaseURL), err)
	}

	nc, js, err := connect.NATS(connect.NATSConfig{URL: cfg.NATSURL, Target: cfg.NATSTarget, Name: "prover-api", Logger: log})
	if err != nil {
		return err
	}
	defer connect.Drain(nc, log)
	qcfg := jobqueue.DefaultConfig()
	publisher, err := jobqueue.NewPublisher(js, qcfg)
	if err != nil {
		return err
	}
	if err := jobqueue.Check(ctx, js, qcfg.Stream, cfg.Families); err != nil {
		log.Warn("job stream not set up yet (run proverctl migrate); submits fail until it is", "err", err)
	}

	m := metrics.New()
	st, events := store.New(pool), jobqueue.NewEvents(nc)
	srv, err := server.New(server.Deps{
		Store:    st,
		Queue:    m.WrapQueue(publisher),
		Events:   events,
		Attester: attester,
		Sealer:   sealer,
		Logger:   log,
		Observer: m,
	}, server.Config{
		Families:      cfg.Families,
		CircuitFolder: cfg.CircuitFolder,
		ZkeyFolder:    cfg.ZkeyFolder,
		ZkeyNames:     zkeyNames,
		SessionTTL:    cfg.SessionTTL,
		MaxSessions:   cfg.MaxSessions,

		MaxSessionsPerSource:    off(cfg.MaxSessionsPerSource),
		SessionShare:            off(cfg.SessionShare),
		MaxConnections:          off(cfg.MaxConnections),
		MaxConnectionsPerSource: off(cfg.MaxConnectionsPerSource),
		HelloRate:               offRate(cfg.HelloRate),
		HelloBurst:              cfg.HelloBurst,
		TrustedProxies:          cfg.TrustedProxies,
		ProxyProtocol:           cfg.ProxyProtocol,
		PingInterval:            cfg.PingInterval,
		PongTimeout:             cfg.PongTimeout,
		IdleTimeout:             cfg.IdleTimeout,
		ReadTimeout:             cfg.ReadTimeout,
		WriteTimeout:            cfg.WriteTimeout,
	})
	if err != nil {
		return err
	}
	m.Watch(srv)
	checkFileLimit(cfg.MaxConnections, log)
	var (
		rl  *server.Relay
		sln net.Listener
	)
	if cfg.StatusAddress != "" {
		recheck := cfg.StatusRecheck
		if recheck == 0 {
			recheck = -1 // never
		}
		rl, err = server.NewRelay(server.RelayDeps{
			Rows:     st,
			Events:   events,
			Connect:  server.ListenerConnect(pool), // the pool's dialer: --database-target too
			Logger:   log,
			Observer: m,
		}, server.RelayConfig{
			MaxConnections:   cfg.StatusMaxConnections,
			MaxSubscriptions: cfg.StatusMaxSubscriptions,
			Linger:           cfg.StatusLinger,
			MaxWait:          cfg.StatusMaxWait,
			Recheck:          recheck,
		})
		if err != nil {
			return err
		}
		if sln, err = vsockdial.Listen(cfg.StatusAddress); err != nil {
			return fmt.Errorf("--status-address: %w", err)
		}
	}
	ln, err := vsockdial.Listen(cfg.ServerAddress)
	if err != nil {
		if sln != nil {
			_ = sln.Close()
		}
		return fmt.Errorf("--server-address: %w", err)
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return srv.Serve(gctx, ln) })
	if rl != nil {
		// The relay's connections count with the frontend's: one global
		// cap (one process's file descriptors) and one per-source cap,
		// and trusted proxies' PROXY headers are read the same way.
		g.Go(func() error { return rl.Serve(gctx, srv.Listener(sln)) })
	}
	if cfg.AdminAddress != "" {
		checks := []admin.Check{
			{Name: "postgres", Probe: pool.Ping},
			{Name: "nats", Probe: func(context.Context) error {
				if !nc.IsConnected() {
					return errors.New("not connected")
				}
				return nil
			}},
			{Name: "jetstream", Probe: func(ctx context.Context) error {
				return jobqueue.Check(ctx, js, qcfg.Stream, cfg.Families)
			}},
		}
		h := admin.Handler(admin.Config{Checks: func() []admin.Check { return checks }, Metrics: m.Handler(), Timeout: 2 * time.Second, Profiling: cfg.AdminProfiling})
		g.Go(func() error {
			ln, err := vsockdial.Listen(cfg.AdminAddress)
			if err != nil {
				return fmt.Errorf("admin: %w", err)
			}
			log.Info("admin serving", "address", ln.Addr().String())
			return admin.Serve(gctx, ln, h)
		})
	}
	return g.Wait()
}

// off maps a flag's "0: no limit" to the server's -1 (its 0 is "the
// default").
func off(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

func offRate(r float64) float64 {
	if r == 0 {
		return -1
	}
	return r
}

// checkFileLimit warns when the process may not open as many descriptors
// as --max-connections asks for (Go raises the soft limit to the hard one
// at start; connections beyond the limit would fail in accept instead of
// being answered 503).
func checkFileLimit(maxConns int, log *slog.Logger) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return
	}
	const reserve = 512 // Postgres, NATS, listeners, files
	if maxConns > 0 && lim.Cur < uint64(maxConns+reserve) {
		log.Warn("the open-file limit is below --max-connections plus a reserve: raise it (ulimit -n, LimitNOFILE=) or lower --max-connections",
			"limit", lim.Cur, "max_connections", maxConns, "reserve", reserve)
	}
}

// newAttester makes the attester --attester names, and its closer.
func newAttester(cfg config.Config, log *slog.Logger) (attest.Attester, func(), error) {
	switch config.CanonicalAttester(cfg.Attester) {
	case config.AttesterGCP:
		g, err := attest.NewGCP(attest.GCPConfig{Socket: cfg.LauncherSocket})
		if err != nil {
			return nil, nil, err
		}
		return g, func() { _ = g.Close() }, nil
	case config.AttesterDevGCP:
		dev, err := attest.NewDevGCP(attest.DevGCPConfig{Dir: cfg.DevAttestDir})
		if err != nil {
			return nil, nil, err
		}
		log.Warn("development attester: tokens are signed by a development root and prove nothing",
			"root_pem", filepath.Join(cfg.DevAttestDir, attest.DevGCPRootCertFile), "image_digest", dev.ImageDigest())
		return dev, func() {}, nil
	case config.AttesterDevNitro:
		dev, err := attest.NewDev(attest.DevConfig{Dir: cfg.DevAttestDir, ModuleID: "prover-api-dev"})
		if err != nil {
			return nil, nil, err
		}
		log.Warn("development attester: documents are signed by a development root and prove nothing",
			"root_pem", filepath.Join(cfg.DevAttestDir, attest.DevRootCertFile), "pcr0", hex.EncodeToString(dev.PCR0()))
		return dev, func() {}, nil
	}
	nsm, err := attest.NewNSM(attest.NSMConfig{})
	if err != nil {
		return nil, nil, err
	}
	return nsm, func() { _ = nsm.Close() }, nil
}
