package overhead

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"fmt"
	"runtime"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/openpassport/prover-fleet/api/client"
	"github.com/openpassport/prover-fleet/bench/internal/gcm"
	"github.com/openpassport/prover-fleet/shared/attest"
)

// rusageThread is Linux's RUSAGE_THREAD: the calling thread's own times.
const rusageThread = 1

// clientCrypto measures the CPU time of one job's client-side
// cryptography, the part of a fleet job that a phone does on its own cores
// but that this benchmark's clients do on the provers' cores: a fresh P-256
// key, the attestation check as the phases' clients make it (the same
// verifier, so the certificate chain is remembered after the first),
// ECDH with the attested key, and AES-256-GCM over a request of size
// plainLen. It gets one real hello answer from the fleet, then repeats the
// work n times on one locked OS thread and reads that thread's own CPU
// time, so that nothing else in this process counts.
func clientCrypto(ctx context.Context, cl *client.Client, v *attest.Verifier, plainLen, n int) (time.Duration, error) {
	priv, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return 0, err
	}
	pub := priv.PublicKey().Bytes()
	hello, err := cl.Hello(ctx, uuid.NewString(), pub)
	if err != nil {
		return 0, fmt.Errorf("overhead: client crypto: %w", err)
	}
	plain := make([]byte, plainLen)
	one := func() error {
		fresh, err := ecdh.P256().GenerateKey(rand.Reader)
		if err != nil {
			return err
		}
		_ = fresh.PublicKey().Bytes()
		doc, err := v.Verify(hello.Attestation, pub)
		if err != nil {
			return err
		}
		server, err := ecdh.P256().NewPublicKey(doc.PublicKey)
		if err != nil {
			return err
		}
		key, err := priv.ECDH(server)
		if err != nil {
			return err
		}
		_, _, err = gcm.Seal(key, plain)
		return err
	}
	if err := one(); err != nil { // the chain is remembered, as in the phases
		return 0, fmt.Errorf("overhead: client crypto: %w", err)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	t0, err := threadCPU()
	if err != nil {
		return 0, err
	}
	for range n {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		if err := one(); err != nil {
			return 0, fmt.Errorf("overhead: client crypto: %w", err)
		}
	}
	t1, err := threadCPU()
	if err != nil {
		return 0, err
	}
	return (t1 - t0) / time.Duration(n), nil
}

func threadCPU() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		return 0, fmt.Errorf("overhead: getrusage: %w", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}
