package main

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/openpassport/prover-fleet/e2e/faults/internal/audit"
)

// outcome is one scenario's result.
type outcome struct {
	scenario  *scenario
	err       error // the suite could not run it
	result    audit.Result
	orphans   []string
	leftovers []string
	timeline  []string
	logs      string
}

// problems lists why the scenario fails (none: it passes).
func (o outcome) problems() []string {
	if o.err != nil {
		return []string{"could not run: " + o.err.Error()}
	}
	r := o.result
	var p []string
	add := func(n int, what string) {
		if n > 0 {
			p = append(p, fmt.Sprintf("%d %s", n, what))
		}
	}
	add(len(r.Stuck), "stuck")
	add(len(r.Lost), "lost")
	add(len(r.Double), "recorded twice")
	add(len(r.Invalid), "invalid proofs")
	add(r.Refused, "refused for good")
	add(len(o.orphans), "orphan processes")
	add(len(o.leftovers), "leftover private files")
	if r.Accepted > 0 && 2*r.Proved < r.Accepted {
		// Failures with a reason are allowed, but a run that proves less
		// than half of what it accepted says more about the machine than
		// about the fault.
		p = append(p, fmt.Sprintf("only %d of %d accepted requests proved", r.Proved, r.Accepted))
	}
	return p
}

func (o outcome) passed() bool { return len(o.problems()) == 0 }

func dur(d time.Duration) string {
	if d < 0 {
		return "never"
	}
	return d.Round(100 * time.Millisecond).String()
}

// print writes the scenario's block.
func (o outcome) print(w io.Writer) {
	for _, t := range o.timeline {
		fmt.Fprintf(w, "  %s\n", t)
	}
	if o.err != nil {
		fmt.Fprintf(w, "  ERROR: %v\n", o.err)
		return
	}
	r := o.result
	fmt.Fprintf(w, "  sent %d, accepted %d (%s), refused for good %d\n", r.Sent, r.Accepted, counts(r.Accepts), r.Refused)
	fmt.Fprintf(w, "  proved %d (every proof checked with the native verifier), failed %d", r.Proved, total(r.Failed))
	if len(r.Failed) > 0 {
		fmt.Fprintf(w, ": %s", counts(r.Failed))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  stuck %d, lost %d, recorded twice %d, invalid proofs %d, rows the app was never told of %d\n",
		len(r.Stuck), len(r.Lost), len(r.Double), len(r.Invalid), r.Unasked)
	fmt.Fprintf(w, "  orphan processes %d, leftover private files %d\n", len(o.orphans), len(o.leftovers))
	fmt.Fprintf(w, "  recovery %s (every request recorded or accepted before the fault's end terminal), first proof %s after it\n",
		dur(r.Recovery), dur(r.FirstProofAfter))
	if len(r.Errors) > 0 {
		fmt.Fprintf(w, "  the app's failed attempts: %s\n", counts(r.Errors))
	}
	for _, list := range []struct {
		name string
		ids  []string
		max  int
	}{{"stuck", r.Stuck, 5}, {"lost", r.Lost, 5}, {"recorded twice", r.Double, 5}, {"invalid", r.Invalid, 5},
		{"orphan", o.orphans, 30}, {"leftover", o.leftovers, 30}} {
		for i, id := range list.ids {
			if i == list.max {
				fmt.Fprintf(w, "    %s: … %d more\n", list.name, len(list.ids)-list.max)
				break
			}
			fmt.Fprintf(w, "    %s: %s\n", list.name, id)
		}
	}
	if p := o.problems(); len(p) > 0 {
		fmt.Fprintf(w, "  FAIL: %s (logs: %s)\n", strings.Join(p, ", "), o.logs)
	} else {
		fmt.Fprintf(w, "  PASS\n")
	}
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// counts formats a tally, largest first.
func counts(m map[string]int) string {
	type kv struct {
		k string
		v int
	}
	var all []kv
	for k, v := range m {
		all = append(all, kv{k, v})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].v > all[j].v || all[i].v == all[j].v && all[i].k < all[j].k })
	var parts []string
	for _, e := range all {
		parts = append(parts, fmt.Sprintf("%q ×%d", e.k, e.v))
	}
	return strings.Join(parts, ", ")
}

// table renders the summary as a markdown table.
func table(results []outcome) string {
	var b strings.Builder
	b.WriteString("| scenario | accepted | proved | failed | stuck | lost | twice | orphans | leftovers | recovery | result |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, o := range results {
		if o.err != nil {
			msg := strings.Join(strings.Fields(o.err.Error()), " ")
			fmt.Fprintf(&b, "| %s | | | | | | | | | | error: %s |\n", o.scenario.name, msg)
			continue
		}
		r := o.result
		res := "pass"
		if !o.passed() {
			res = "**FAIL**: " + strings.Join(o.problems(), ", ")
		}
		fmt.Fprintf(&b, "| %s | %d/%d | %d | %d | %d | %d | %d | %d | %d | %s | %s |\n", o.scenario.name,
			r.Accepted, r.Sent, r.Proved, total(r.Failed), len(r.Stuck), len(r.Lost), len(r.Double),
			len(o.orphans), len(o.leftovers), dur(r.Recovery), res)
	}
	return b.String()
}

// printSummary prints the table and says whether every scenario passed.
func printSummary(w io.Writer, results []outcome) bool {
	fmt.Fprintf(w, "\nSummary\n\n%s\n", table(results))
	passed := true
	for _, o := range results {
		passed = passed && o.passed()
	}
	if passed {
		fmt.Fprintln(w, "PASS: every accepted request ended terminal; nothing stuck, lost, recorded twice or left behind.")
	} else {
		fmt.Fprintln(w, "FAIL")
	}
	return passed
}

// writeReport writes the markdown report: settings, table, blocks.
func writeReport(path string, cfg config, results []outcome) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# Fault suite report\n\nSize %s: %d requests of %s over %s per scenario, %d workers, outage %s, AckWait %s, the app retries after %s.\n\n",
		cfg.name, cfg.requests, circuitName, cfg.duration, cfg.workers, cfg.outage, cfg.ackWait, cfg.retryDelay)
	b.WriteString(table(results))
	for _, o := range results {
		fmt.Fprintf(&b, "\n## %s\n\n%s\n\n```\n", o.scenario.name, o.scenario.what)
		o.print(&b)
		b.WriteString("```\n")
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}
