package frontend

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/openpassport/prover-fleet/api/server"
	"github.com/openpassport/prover-fleet/internal/devfleet"
	"github.com/openpassport/prover-fleet/shared/jobqueue"
)

// startQueueFleet starts a fleet without workers whose queue keeps every
// submit (no workers take them), and returns it with its stop function.
func startQueueFleet(ctx context.Context, circuitDir, zkeyDir, databaseURL string, front server.Config, logger *slog.Logger) (*devfleet.Fleet, func(), error) {
	q := jobqueue.DefaultConfig()
	// Every submit stays queued (no workers take them): a full run
	// enqueues about 150,000 jobs of a few KB. JetStream refuses a stream
	// whose MaxBytes exceeds what it may store (by default three quarters
	// of the free disk), so the limit is not set far above need: 32 GiB
	// failed once the disk had less than about 43 GiB free.
	q.MaxMsgs, q.MaxBytes = 5_000_000, 4<<30
	fleet, err := devfleet.Start(ctx, devfleet.Config{
		CircuitDir: circuitDir, ZkeyDir: zkeyDir, DatabaseURL: databaseURL, NoWorkers: true, Queue: q,
		Frontend: front,
		Logger:   logger,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("frontend: %w", err)
	}
	stop := func() {
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		_ = fleet.Stop(stopCtx)
	}
	return fleet, stop, nil
}

// requestPlaintext is the decrypted submit of the benchmarks' request: the
// app's payload for proofType and circuit with inputs (the crypto baselines
// encrypt and decrypt exactly this).
func requestPlaintext(proofType, circuit string, inputs []byte) ([]byte, error) {
	return json.Marshal(map[string]any{
		"type": proofType, "onchain": true, "endpointType": "staging_https", "endpoint": "https://bench.example/verify",
		"userDefinedData": "", "selfDefinedData": "", "version": 1,
		"circuit": map[string]string{"name": circuit, "inputs": string(inputs)},
	})
}
