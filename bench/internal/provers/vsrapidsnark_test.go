package provers

import (
	"testing"
	"time"

	"github.com/openpassport/prover-fleet/bench/internal/circuits"
)

func TestVsRapidsnark(t *testing.T) {
	t.Parallel()
	s := func(ms ...int) []time.Duration {
		var out []time.Duration
		for _, m := range ms {
			out = append(out, time.Duration(m)*time.Millisecond)
		}
		return out
	}
	r := &Result{Circuits: []CircuitResult{
		{Circuit: "no_rapidsnark", Runs: []Run{{Prover: NativeCold, walls: s(10), PeakRSS: 1}}},
		{
			Circuit: "register_demo", Size: circuits.Size{Constraints: 100540}, ZkeyBytes: 100 << 20,
			Runs: []Run{
				{Prover: Snarkjs, walls: s(9000)},
				{Prover: Rapidsnark, walls: s(1600, 1500, 1700), PeakRSS: 100 << 20, CPUms: 3000},
				{Prover: NativeCold, walls: s(700, 800, 750), PeakRSS: 110 << 20, CPUms: 1300},
				{Prover: NativeWarm, walls: s(700, 700, 700), PeakRSS: 100 << 20, CPUms: 1200},
				{Prover: NativeWarmTables, walls: s(900, 900, 900), PeakRSS: 300 << 20, CPUms: 1100, TableBytes: 250 << 20},
			},
		},
	}}
	rows := r.VsRapidsnark()
	if len(rows) != 3 {
		t.Fatalf("%d rows, want 3 (none without rapidsnark): %+v", len(rows), rows)
	}
	cold, warm, tables := rows[0], rows[1], rows[2]
	if cold.Mode != ModeCommand || cold.OursS != 0.75 || cold.RapidsnarkS != 1.6 || cold.TimeRatio != 0.469 ||
		cold.RSSRatio != 1.1 || cold.OursRSSMiB != 110 || cold.Rounds != 3 || cold.CPURatio != 0.433 || !cold.Met {
		t.Fatalf("command row %+v", cold)
	}
	// Rounds 700/1600, 800/1500, 750/1700: the median of the ratios.
	if cold.PairedTimeRatio != 0.441 {
		t.Fatalf("paired ratio %v, want 0.441", cold.PairedTimeRatio)
	}
	if warm.Mode != ModeWarm || warm.Target != "" || warm.Met {
		t.Fatalf("warm row %+v: no target without tables", warm)
	}
	if tables.Mode != ModeWarmTables || tables.TablesOverZkey != 2.5 || tables.Met {
		t.Fatalf("tables row %+v: 0.56× with tables of 2.5× the zkey misses the target", tables)
	}
}
