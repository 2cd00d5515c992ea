package service

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// keyLog logs what the key cache does (keycache.Observer). Called with the
// cache's lock held: it only logs.
type keyLog struct{ log *slog.Logger }

func (k keyLog) Acquired(string, bool) {}

func (k keyLog) Loaded(circuit string, bytes int64, took time.Duration, err error) {
	if err != nil {
		k.log.Error("proving key not loaded", "circuit", circuit, "duration_ms", took.Milliseconds(), "err", err)
		return
	}
	k.log.Info("proving key loaded", "circuit", circuit, "mib", bytes>>20, "duration_ms", took.Milliseconds())
}

func (k keyLog) Evicted(circuit string, bytes int64, reason string) {
	k.log.Info("proving key evicted", "circuit", circuit, "mib", bytes>>20, "reason", reason)
}

func (k keyLog) Oversize(circuit string, bytes, budget int64) {
	k.log.Warn("proving key larger than the key cache budget: it proves alone, every other key evicted",
		"circuit", circuit, "mib", bytes>>20, "budget_mib", budget>>20)
}

func (k keyLog) TablesBuilt(circuit string, bytes int64, took time.Duration, err error) {
	switch {
	case errors.Is(err, context.Canceled):
		k.log.Debug("window table build stopped", "circuit", circuit, "duration_ms", took.Milliseconds())
	case err != nil:
		k.log.Warn("window tables not built", "circuit", circuit, "err", err)
	default:
		k.log.Info("window tables built", "circuit", circuit, "mib", bytes>>20, "duration_ms", took.Milliseconds())
	}
}

func (k keyLog) TablesDropped(circuit string, bytes int64) {
	k.log.Info("window tables dropped to make room", "circuit", circuit, "mib", bytes>>20)
}
