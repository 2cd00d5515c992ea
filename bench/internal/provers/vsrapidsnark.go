package provers

import (
	"fmt"
	"slices"
	"time"

	"github.com/openpassport/prover-fleet/bench/internal/report"
	"github.com/openpassport/prover-fleet/bench/internal/stats"
)

// Modes of VsRapidsnark rows.
const (
	ModeCommand     = "command"     // zkprove, a process per proof
	ModeWarm        = "warm"        // in process, key loaded, no tables
	ModeWarmTables  = "warm+tables" // in process, with window tables within the budget
	targetCommand   = "time ≤ 0.8×, peak RSS ≤ 1.2×"
	targetWarmTable = "time ≤ 0.5×, tables ≤ 2× the zkey"
)

// VsRapidsnark is one row of results.json's prover_vs_rapidsnark: one of our
// provers against rapidsnark on one circuit, both measured in the same
// rounds (issue 14's targets: command mode at most 0.8× rapidsnark's wall
// time and 1.2× its peak RSS; the warm prover at most 0.5× its time with
// tables costing at most twice the zkey).
type VsRapidsnark struct {
	Circuit          string  `json:"circuit"`
	Constraints      int     `json:"constraints"`
	Mode             string  `json:"mode"`
	OursS            float64 `json:"ours_s"`
	RapidsnarkS      float64 `json:"rapidsnark_s"`
	TimeRatio        float64 `json:"time_ratio"`
	OursRSSMiB       float64 `json:"ours_rss_mib"`
	RapidsnarkRSSMiB float64 `json:"rapidsnark_rss_mib"`
	RSSRatio         float64 `json:"rss_ratio"`
	// Rounds is how many times each ran, alternating; PairedTimeRatio the
	// median of the rounds' own ratios; CPURatio the ratio of CPU time per
	// proof (user + system), which other load on the machine moves less.
	Rounds          int     `json:"rounds"`
	PairedTimeRatio float64 `json:"paired_time_ratio"`
	CPURatio        float64 `json:"cpu_ratio"`
	// TablesOverZkey is the warm prover's tables over the zkey's size.
	TablesOverZkey float64 `json:"tables_over_zkey,omitempty"`
	// Target is the target for the mode ("" for the warm prover
	// without tables) and Met whether this row meets it.
	Target string `json:"target,omitempty"`
	Met    bool   `json:"met"`
}

// VsRapidsnark returns the rows for every circuit rapidsnark ran on (none
// without rapidsnark).
func (r *Result) VsRapidsnark() []VsRapidsnark {
	var out []VsRapidsnark
	for _, c := range r.Circuits {
		i := slices.IndexFunc(c.Runs, func(run Run) bool { return run.Prover == Rapidsnark })
		if i < 0 {
			continue
		}
		rs := c.Runs[i]
		rsMed := stats.Median(rs.walls)
		for _, run := range c.Runs {
			mode := map[string]string{NativeCold: ModeCommand, NativeWarm: ModeWarm, NativeWarmTables: ModeWarmTables}[run.Prover]
			if mode == "" || rsMed <= 0 {
				continue
			}
			med := stats.Median(run.walls)
			v := VsRapidsnark{
				Circuit: c.Circuit, Constraints: c.Size.Constraints, Mode: mode,
				OursS: seconds(med), RapidsnarkS: seconds(rsMed),
				TimeRatio:  stats.Round(float64(med)/float64(rsMed), 3),
				OursRSSMiB: mib(run.PeakRSS), RapidsnarkRSSMiB: mib(rs.PeakRSS),
				Rounds:          min(len(run.walls), len(rs.walls)),
				PairedTimeRatio: pairedRatio(run.walls, rs.walls),
			}
			if rs.PeakRSS > 0 {
				v.RSSRatio = stats.Round(float64(run.PeakRSS)/float64(rs.PeakRSS), 3)
			}
			if rs.CPUms > 0 {
				v.CPURatio = stats.Round(run.CPUms/rs.CPUms, 3)
			}
			switch mode {
			case ModeCommand:
				v.Target, v.Met = targetCommand, v.TimeRatio <= 0.8 && v.RSSRatio <= 1.2
			case ModeWarmTables:
				if c.ZkeyBytes > 0 {
					v.TablesOverZkey = stats.Round(float64(run.TableBytes)/float64(c.ZkeyBytes), 2)
				}
				v.Target, v.Met = targetWarmTable, v.TimeRatio <= 0.5 && v.TablesOverZkey <= 2
			}
			out = append(out, v)
		}
	}
	return out
}

// pairedRatio is the median over rounds of ours/theirs.
func pairedRatio(ours, theirs []time.Duration) float64 {
	n := min(len(ours), len(theirs))
	if n == 0 {
		return 0
	}
	rs := make([]float64, 0, n)
	for i := range n {
		if theirs[i] > 0 {
			rs = append(rs, float64(ours[i])/float64(theirs[i]))
		}
	}
	if len(rs) == 0 {
		return 0
	}
	slices.Sort(rs)
	m := rs[(len(rs)-1)/2]
	if len(rs)%2 == 0 {
		m = (m + rs[len(rs)/2]) / 2
	}
	return stats.Round(m, 3)
}

func seconds(d time.Duration) float64 { return stats.Round(d.Seconds(), 3) }

func mib(b int64) float64 { return stats.Round(float64(b)/(1<<20), 1) }

// vsRapidsnarkTable renders the rows.
func vsRapidsnarkTable(rows []VsRapidsnark) report.Table {
	t := report.Table{Header: []string{"circuit", "constraints", "mode", "rounds", "ours", "rapidsnark", "time ratio", "(paired)", "CPU ratio", "peak RSS ours / rapidsnark", "RSS ratio", "tables / zkey", "issue 14 target"}}
	for _, v := range rows {
		target, tables := "—", "—"
		if v.Target != "" {
			target = report.Target(v.Met, v.Target)
		}
		if v.TablesOverZkey > 0 {
			tables = report.F(v.TablesOverZkey, 2) + "×"
		}
		t.Row(v.Circuit, fmt.Sprint(v.Constraints), v.Mode, fmt.Sprint(v.Rounds),
			report.F(v.OursS, 3)+" s", report.F(v.RapidsnarkS, 3)+" s", report.F(v.TimeRatio, 3), report.F(v.PairedTimeRatio, 3),
			report.F(v.CPURatio, 3), report.F(v.OursRSSMiB, 0)+" / "+report.F(v.RapidsnarkRSSMiB, 0)+" MiB", report.F(v.RSSRatio, 2), tables, target)
	}
	return t
}
