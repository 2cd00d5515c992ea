package frontend

import (
	"fmt"
	"os"
	"strings"

	"github.com/google/pprof/profile"

	"github.com/openpassport/prover-fleet/bench/internal/stats"
)

// CPUBreakdown is where prover-api's CPU went during a measured window,
// from its CPU profile, per pair. Each sample counts in the first of these
// its stack matches: the cryptography (Go's crypto packages: key
// generation, ECDH, the attester's signature, AES-GCM, random numbers),
// socket reads and writes (the syscalls: on loopback the sender's write
// also runs the receiver's TCP path), the garbage collector and
// allocation, the Postgres client (pgx), the NATS client, encoding/json,
// and the rest (WebSocket and HTTP framing, the JSON-RPC server, the
// session table, validation, timers, the scheduler).
type CPUBreakdown struct {
	SampledPerPairMS float64 `json:"sampled_cpu_per_pair_ms"`
	CryptoMS         float64 `json:"crypto_per_pair_ms"`
	SocketIOMS       float64 `json:"socket_io_per_pair_ms"`
	GCMS             float64 `json:"gc_and_allocation_per_pair_ms"`
	PostgresMS       float64 `json:"postgres_client_per_pair_ms"`
	NATSMS           float64 `json:"nats_client_per_pair_ms"`
	JSONMS           float64 `json:"json_per_pair_ms"`
	OtherMS          float64 `json:"other_per_pair_ms"`
	// Floor is (CryptoMS + SocketIOMS) ÷ the server crypto per pair: the
	// ratio the frontend would show if everything else it does cost
	// nothing, on this machine under this load.
	Floor float64 `json:"floor_ratio"`
}

// breakdownCategories are matched in order against a sample's functions.
var breakdownCategories = []struct {
	name  string
	match func(fn string) bool
}{
	{"crypto", func(fn string) bool { return strings.HasPrefix(fn, "crypto/") }},
	{"socket", func(fn string) bool { return fn == "syscall.read" || fn == "syscall.write" || fn == "syscall.writev" }},
	{"gc", func(fn string) bool {
		return strings.HasPrefix(fn, "runtime.gc") || fn == "runtime.mallocgc" || strings.HasPrefix(fn, "runtime.bgsweep") || strings.HasPrefix(fn, "runtime.bgscavenge")
	}},
	{"postgres", func(fn string) bool { return strings.HasPrefix(fn, "github.com/jackc/") }},
	{"nats", func(fn string) bool { return strings.HasPrefix(fn, "github.com/nats-io/") }},
	{"json", func(fn string) bool { return strings.HasPrefix(fn, "encoding/json.") }},
}

// breakdown reads a CPU profile and splits its samples over pairs.
func breakdown(path string, pairs int, serverCryptoMS float64) (*CPUBreakdown, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	p, err := profile.Parse(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	idx := -1
	for i, st := range p.SampleType {
		if st.Type == "cpu" && st.Unit == "nanoseconds" {
			idx = i
		}
	}
	if idx < 0 {
		return nil, fmt.Errorf("%s: not a CPU profile", path)
	}
	var total int64
	by := map[string]int64{}
	for _, s := range p.Sample {
		v := s.Value[idx]
		total += v
		cat := "other"
	find:
		for _, c := range breakdownCategories {
			for _, loc := range s.Location {
				for _, ln := range loc.Line {
					if ln.Function != nil && c.match(ln.Function.Name) {
						cat = c.name
						break find
					}
				}
			}
		}
		by[cat] += v
	}
	if pairs <= 0 || total == 0 {
		return nil, fmt.Errorf("%s: no samples or no pairs", path)
	}
	per := func(ns int64) float64 { return stats.Round(float64(ns)/1e6/float64(pairs), 4) }
	b := &CPUBreakdown{
		SampledPerPairMS: per(total), CryptoMS: per(by["crypto"]), SocketIOMS: per(by["socket"]),
		GCMS: per(by["gc"]), PostgresMS: per(by["postgres"]), NATSMS: per(by["nats"]),
		JSONMS: per(by["json"]), OtherMS: per(by["other"]),
	}
	if serverCryptoMS > 0 {
		b.Floor = stats.Round((b.CryptoMS+b.SocketIOMS)/serverCryptoMS, 3)
	}
	return b, nil
}
