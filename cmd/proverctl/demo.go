package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/openpassport/prover-fleet/api/client"
	"github.com/openpassport/prover-fleet/api/protocol"
	"github.com/openpassport/prover-fleet/internal/devfleet"
	"github.com/openpassport/prover-fleet/internal/relayclient"
	"github.com/openpassport/prover-fleet/shared/circuitdir"
	"github.com/openpassport/prover-fleet/shared/family"
	"github.com/openpassport/prover-fleet/shared/groth16"
	"github.com/openpassport/prover-fleet/shared/groth16/r1cs"
	"github.com/openpassport/prover-fleet/shared/status"
)

// demoCase is one request the demo sends, as the app would.
type demoCase struct {
	circuit      string
	typ          family.ProofType
	endpointType string
	endpoint     string
}

func demoCases() []demoCase {
	return []demoCase{
		{circuit: "register_demo", typ: family.ProofType("register")},
		{circuit: "dsc_demo", typ: family.ProofType("dsc")},
		{circuit: "disclose_demo", typ: family.ProofType("disclose"), endpointType: "staging_https", endpoint: "https://demo.example/verify"},
	}
}

// demoResult is what the demo learned about one request.
type demoResult struct {
	c           demoCase
	constraints int // 0: unknown
	row         *row
	uuid        string
	status      protocol.Status
	verified    bool
	err         error
	stages      map[string]float64 // the worker's own timings, seconds
}

func runDemo(ctx context.Context, args []string, std stdio) error {
	var (
		ff        fleetFlags
		inputsDir string
		timeout   time.Duration
	)
	f := newFlags("demo", "", "Starts the whole fleet (random ports, temporary state), then acts as the app: for each demo\n"+
		"circuit it runs the real protocol (hello, verify the development attestation, encrypt, submit),\n"+
		"follows the request live on the Socket.IO status relay, verifies the proof with the native verifier\n"+
		"against <zkeys>/<name>.vkey.json, writes status 4 as the downstream verifier would and waits for the\n"+
		"relay to deliver it, and prints a summary. Everything it started is stopped and removed. Exit status 1\n"+
		"if any proof failed.", std)
	ff.register(f, "warn")
	f.StringVar(&inputsDir, "inputs-dir", "circuits/inputs", "folder of the sample inputs <name>.json")
	f.bind("inputs-dir", "PROVER_INPUTS")
	f.DurationVar(&timeout, "timeout", 10*time.Minute, "give up (and fail) after this long")
	f.bind("timeout", "PROVERCTL_DEMO_TIMEOUT")
	if err := f.parse(args, std); err != nil {
		return err
	}
	if f.NArg() > 0 {
		return usagef("demo takes no arguments, got %q", f.Args())
	}
	cfg, err := ff.config(std.err)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	cases := demoCases()
	inputs, err := demoPreflight(cases, ff.circuits, ff.zkeys, inputsDir)
	if err != nil {
		return err
	}

	started := time.Now()
	fmt.Fprintf(std.out, "Starting the fleet (embedded NATS JetStream, %s, frontend, status relay, a worker pool per family)...\n", dbNote(cfg))
	fleet, err := devfleet.Start(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() {
		// Stop whatever happens, even after a timeout or Ctrl-C.
		stopCtx, c := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer c()
		_ = fleet.Stop(stopCtx)
	}()
	fmt.Fprintf(std.out, "Fleet up in %s: frontend %s, status relay %s (Socket.IO, path /), metrics %s\n  %s\n\n",
		fmtDur(time.Since(started)), fleet.WSURL(), fleet.StatusURL(), fleet.MetricsURL(), describeProver(fleet.Config()))
	opts, err := fleet.ClientOptions()
	if err != nil {
		return err
	}
	fmt.Fprintf(std.out, "Attestation: %s (root %s)\n\n", describeAttester(fleet), fleet.RootPEMPath())

	before, err := workerTimings(fleet.Gatherer())
	if err != nil {
		return err
	}
	fmt.Fprintf(std.out, "Each request goes pending (handshake done, queued) › witness (generated) › proof (proved and checked\n"+
		"by the worker) › verified; each step shows how long it took to reach. As the app does, this client follows\n"+
		"each request on the status relay (Socket.IO, subscribe(uuid), status events): the relay's events are shown\n"+
		"as \"relay N\". At status 2 it checks the proof natively and, standing in for the downstream verifier, writes\n"+
		"status 4 into the proofs table; the relay's status 4 (from Postgres, the app's success) marks it verified.\n\n")
	tty := isTerminal(std.out)
	b := newBoard(std.out, tty)
	results := make([]*demoResult, len(cases))
	for i, c := range cases {
		results[i] = &demoResult{c: c, constraints: countConstraints(ctx, ff.circuits, c.circuit),
			row: b.add(fmt.Sprintf("%s (%s)", c.circuit, c.typ.Family()))}
	}
	drawCtx, stopDraw := context.WithCancel(ctx)
	drawn := make(chan struct{})
	go func() { defer close(drawn); b.run(drawCtx) }()

	var wg sync.WaitGroup
	for i, r := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.err = demoOne(ctx, fleet, opts, ff.zkeys, inputs[i], r)
			if r.err != nil {
				r.row.fail(r.err.Error())
			}
		}()
	}
	wg.Wait()
	stopDraw()
	<-drawn
	b.finish()

	after, err := workerTimings(fleet.Gatherer())
	if err != nil {
		return err
	}
	for _, r := range results {
		fam := string(r.c.typ.Family())
		r.stages = map[string]float64{}
		for k, v := range after[fam] {
			r.stages[k] = v - before[fam][k]
		}
	}
	fmt.Fprintln(std.out)
	printSummary(std, results)

	stopCtx, c := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer c()
	stopStart := time.Now()
	if err := fleet.Stop(stopCtx); err != nil {
		return fmt.Errorf("stopping the fleet: %w", err)
	}
	fmt.Fprintf(std.out, "\nFleet stopped in %s; its temporary state, NATS store and throwaway database are removed.\n", fmtDur(time.Since(stopStart)))

	var failed []string
	for _, r := range results {
		if r.err != nil || !r.verified {
			failed = append(failed, r.c.circuit)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d demo proofs failed: %s", len(failed), len(results), strings.Join(failed, ", "))
	}
	fmt.Fprintf(std.out, "All %d proofs generated by the fleet and verified. Total %s.\n", len(results), fmtDur(time.Since(started)))
	return nil
}

func dbNote(cfg devfleet.Config) string {
	if cfg.DatabaseURL != "" {
		return "DATABASE_URL"
	}
	return "throwaway PostgreSQL"
}

// demoPreflight checks that everything the demo needs is built, and reads
// the sample inputs.
func demoPreflight(cases []demoCase, circuits, zkeys, inputsDir string) ([]json.RawMessage, error) {
	var missing []string
	inputs := make([]json.RawMessage, len(cases))
	l := circuitdir.Layout{CircuitDir: circuits, ZkeyDir: zkeys}
	for i, c := range cases {
		native, wasm := l.Generator(c.circuit), l.Wasm(c.circuit)
		if !isFile(native) && !isFile(wasm) {
			missing = append(missing, native)
		}
		for _, p := range []string{l.Zkey(c.circuit), l.VKey(c.circuit)} {
			if !isFile(p) {
				missing = append(missing, p)
			}
		}
		p := filepath.Join(inputsDir, c.circuit+".json")
		data, err := os.ReadFile(p)
		switch {
		case err != nil:
			missing = append(missing, p)
		case !json.Valid(data):
			return nil, fmt.Errorf("sample input %s is not JSON", p)
		default:
			inputs[i] = data
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("the demo circuits are not built: missing %s\n(run `make circuits keys`, or `make demo`, which builds them)", strings.Join(missing, ", "))
	}
	return inputs, nil
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// countConstraints reads the circuit's .r1cs beside its witness generator,
// if it is there (0 otherwise).
func countConstraints(ctx context.Context, circuits, name string) int {
	sys, err := r1cs.ReadFile(ctx, circuitdir.Layout{CircuitDir: circuits}.R1CS(name))
	if err != nil {
		return 0
	}
	return len(sys.Constraints)
}

// demoOne sends one request over its own WebSocket (as the app does),
// follows it on the status relay (as the app does), verifies the proof
// natively at status 2 and, as the downstream verifier would, writes the
// verdict into the proofs table; the relay's 4 ends it.
func demoOne(ctx context.Context, fleet *devfleet.Fleet, opts client.Options, zkeys string, inputs json.RawMessage, r *demoResult) error {
	c, err := client.Dial(ctx, fleet.WSURL(), opts)
	if err != nil {
		return err
	}
	defer c.Close()
	id, err := c.Submit(ctx, client.Request{
		Type: r.c.typ, Circuit: r.c.circuit, Inputs: inputs, Onchain: true,
		EndpointType: r.c.endpointType, Endpoint: r.c.endpoint,
	}, r.row.progress())
	if err != nil {
		return fmt.Errorf("submit: %w", err)
	}
	r.uuid = id
	rc, err := relayclient.Dial(ctx, fleet.StatusURL(), relayclient.Options{})
	if err != nil {
		return fmt.Errorf("status relay: %w", err)
	}
	defer rc.Close()
	if err := rc.Subscribe(id); err != nil {
		return fmt.Errorf("status relay: %w", err)
	}
	for {
		ev, err := rc.Next(ctx)
		if err != nil {
			return fmt.Errorf("status relay: %w", err)
		}
		m := ev.Message
		if ev.Name != "status" || m.UUID != id {
			return fmt.Errorf("status relay: unexpected %s event %+v", ev.Name, m)
		}
		r.row.relayed(m.Status, ev.At)
		switch m.Status {
		case status.ProofGenerated:
			st, err := c.Status(ctx, id)
			if err != nil {
				return fmt.Errorf("status: %w", err)
			}
			r.status = st
			verdict, reason := status.Verified, ""
			verr := verifyProof(circuitdir.Layout{ZkeyDir: zkeys}.VKey(r.c.circuit), st)
			if verr != nil {
				verdict, reason = status.VerificationFailed, "INVALID_PROOF"
			}
			if _, err := fleet.Pool().Exec(ctx, `UPDATE proofs SET status = $2, reason = NULLIF($3, '')
				WHERE request_id = $1 AND status = 2`, id, int16(verdict), reason); err != nil {
				return fmt.Errorf("write the verdict: %w", err)
			}
			if verr != nil {
				return verr
			}
		case status.Verified:
			r.verified = true
			r.row.reach(stageVerified, ev.At, id)
			return nil
		case status.Failed, status.VerificationFailed:
			msg := fmt.Sprintf("status %d", m.Status)
			if m.ErrorCode != "" {
				msg += " " + m.ErrorCode
			}
			if m.Reason != "" {
				msg += ": " + m.Reason
			}
			return errors.New(msg)
		}
	}
}

// verifyProof checks a reported proof with the native verifier.
func verifyProof(vkeyPath string, st protocol.Status) error {
	data, err := os.ReadFile(vkeyPath)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	vk, err := groth16.ParseVerifyingKey(data)
	if err != nil {
		return fmt.Errorf("verify: %s: %w", vkeyPath, err)
	}
	public, err := json.Marshal(st.PublicInputs)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	if len(st.Proof) == 0 || st.PublicInputs == nil {
		return errors.New("verify: status 2 without a proof or public inputs")
	}
	if err := vk.VerifyJSON(st.Proof, public); err != nil {
		return fmt.Errorf("proof does not verify: %w", err)
	}
	return nil
}

// workerTimings sums the workers' own stage timings per family, in seconds:
// queue_wait, witness, prove, verify (all results, all pools).
func workerTimings(g prometheus.Gatherer) (map[string]map[string]float64, error) {
	mfs, err := g.Gather()
	if err != nil {
		return nil, fmt.Errorf("read metrics: %w", err)
	}
	out := map[string]map[string]float64{}
	add := func(fam, key string, v float64) {
		if out[fam] == nil {
			out[fam] = map[string]float64{}
		}
		out[fam][key] += v
	}
	for _, mf := range mfs {
		switch mf.GetName() {
		case "prover_worker_queue_wait_seconds", "prover_worker_stage_seconds":
		default:
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			key := "queue_wait"
			if mf.GetName() == "prover_worker_stage_seconds" {
				key = labels["stage"]
			}
			add(labels["family"], key, m.GetHistogram().GetSampleSum())
		}
	}
	return out, nil
}

func printSummary(std stdio, results []*demoResult) {
	header := []string{"circuit", "family", "constraints", "queue wait", "witness", "prove", "verify", "total", "verified"}
	table := [][]string{header}
	for _, r := range results {
		constraints := "?"
		if r.constraints > 0 {
			constraints = strconv.Itoa(r.constraints)
		}
		total := "-"
		if p := r.row.at(stageProof); !p.IsZero() {
			total = fmtDur(p.Sub(r.row.begun))
		}
		verified := "yes"
		if !r.verified {
			verified = "NO"
		}
		table = append(table, []string{r.c.circuit, string(r.c.typ.Family()), constraints,
			secs(r.stages["queue_wait"]), secs(r.stages["witness"]), secs(r.stages["prove"]), secs(r.stages["verify"]),
			total, verified})
	}
	widths := make([]int, len(header))
	for _, line := range table {
		for i, cell := range line {
			widths[i] = max(widths[i], len(cell))
		}
	}
	for n, line := range table {
		var sb strings.Builder
		for i, cell := range line {
			if i < 2 { // names left, numbers right
				fmt.Fprintf(&sb, "  %-*s", widths[i], cell)
			} else {
				fmt.Fprintf(&sb, "  %*s", widths[i], cell)
			}
		}
		fmt.Fprintln(std.out, strings.TrimRight(sb.String(), " "))
		if n == 0 {
			total := 0
			for _, w := range widths {
				total += w + 2
			}
			fmt.Fprintln(std.out, "  "+strings.Repeat("-", total-2))
		}
	}
	fmt.Fprintln(std.out, "\nqueue wait, witness, prove, verify: the worker's own measurements (prover_worker_* metrics; verify is")
	fmt.Fprintln(std.out, "its check of the proof before it reports status 2); total: what the app saw, from its hello to the")
	fmt.Fprintln(std.out, "proof; verified: this client's native verifier accepted the proof against <zkeys>/<circuit>.vkey.json,")
	fmt.Fprintln(std.out, "and the status 4 it wrote reached it through the relay.")
	for _, r := range results {
		if r.err != nil {
			fmt.Fprintf(std.out, "%s failed: %v\n", r.c.circuit, r.err)
		}
	}
}

func secs(s float64) string {
	if s <= 0 {
		return "-"
	}
	return fmtDur(time.Duration(s * float64(time.Second)))
}
