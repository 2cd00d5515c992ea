package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// The frontend's defaults the checks hold it to (prover-api's flags).
const (
	defaultSessionsPerSource = 64
	defaultConnsPerSource    = 64
	// memoryLimit is the frontend Deployment's memory limit in deploy/k8s.
	memoryLimit = 1 << 30
	// socketTarget is the target footprint of an idle WebSocket.
	socketTarget = 10 << 10
)

// report is the run's outcome.
type report struct {
	Quick     bool        `json:"quick"`
	NoFile    uint64      `json:"open_file_limit"`
	Settings  loadConfig  `json:"settings"`
	Load      *loadResult `json:"load"`
	Memory    memReport   `json:"memory"`
	CPUSecond float64     `json:"prover_api_cpu_s"`
	Refused   map[string]float64
	Closed    map[string]float64
	Samples   []sample `json:"samples"`
	Legit     latency  `json:"legit_latency_ms"`
	Checks    []check  `json:"checks"`
	Failed    []string `json:"failed,omitempty"`
}

type memReport struct {
	Idle         int64   `json:"idle_rss_bytes"`
	BeforeSocks  int64   `json:"before_sockets_rss_bytes"`
	PeakSockets  int64   `json:"peak_rss_bytes"`
	PeakOpen     float64 `json:"peak_websockets_open"`
	PerSocket    float64 `json:"bytes_per_idle_websocket"`
	After        int64   `json:"after_rss_bytes"`
	SettleS      float64 `json:"settle_s"`
	SessionsOpen float64 `json:"sessions_open_before_sockets"`
}

type latency struct {
	P50, P90, P99, Max float64
}

type check struct {
	What string `json:"what"`
	OK   bool   `json:"ok"`
	Got  string `json:"got"`
}

func newReport(quick bool, nofile uint64, sz sizes, load *loadResult, samples []sample, idle, after memory,
	settle time.Duration, cpu time.Duration, metrics map[string]float64) *report {
	r := &report{Quick: quick, NoFile: nofile, Settings: sz.loadConfig, Load: load, Samples: samples,
		CPUSecond: cpu.Seconds(), Refused: map[string]float64{}, Closed: map[string]float64{}}
	for k, v := range metrics {
		if l, ok := strings.CutPrefix(k, `prover_api_refused_total{reason="`); ok {
			r.Refused[strings.TrimSuffix(l, `"}`)] = v
		}
		if l, ok := strings.CutPrefix(k, `prover_api_websockets_closed_total{reason="`); ok {
			r.Closed[strings.TrimSuffix(l, `"}`)] = v
		}
	}
	socks := load.Phases[len(load.Phases)-1]
	r.Memory = memReport{Idle: idle.rss, BeforeSocks: rssAt(samples, socks.Start), After: after.rss, SettleS: settle.Seconds()}
	for _, s := range samples {
		if s.At.Before(socks.Start) {
			r.Memory.SessionsOpen = s.Sessions
			continue
		}
		if s.At.After(socks.End) {
			break
		}
		r.Memory.PeakSockets = max(r.Memory.PeakSockets, s.RSS)
		r.Memory.PeakOpen = max(r.Memory.PeakOpen, s.WebSockets)
	}
	if r.Memory.PeakOpen > 0 {
		r.Memory.PerSocket = float64(r.Memory.PeakSockets-r.Memory.BeforeSocks) / r.Memory.PeakOpen
	}
	l := load.Legit.LatencyMS
	r.Legit = latency{P50: quantile(l, .5), P90: quantile(l, .9), P99: quantile(l, .99), Max: quantile(l, 1)}
	r.check(sz)
	return r
}

func (r *report) add(ok bool, what, got string, args ...any) {
	c := check{What: what, OK: ok, Got: fmt.Sprintf(got, args...)}
	r.Checks = append(r.Checks, c)
	if !ok {
		r.Failed = append(r.Failed, c.What+": "+c.Got)
	}
}

func (r *report) check(sz sizes) {
	lg := r.Load.Legit
	r.add(lg.Attempts > 0 && lg.OK == lg.Attempts, "the legitimate client is served throughout",
		"%d of %d hello+submit succeeded", lg.OK, lg.Attempts)
	for _, f := range r.Load.Floods {
		r.add(f.MaxServedPerSource <= defaultSessionsPerSource, "flood from "+f.Name+": no source beyond its share",
			"at most %d hellos served to one source (cap %d), %d served of %d", f.MaxServedPerSource, defaultSessionsPerSource, f.Served, f.Sent)
		r.add(f.Errors == 0, "flood from "+f.Name+": every hello answered", "%d without a JSON-RPC answer", f.Errors)
	}
	maxSessions := 0.0
	for _, s := range r.Samples {
		maxSessions = max(maxSessions, s.Sessions)
	}
	r.add(maxSessions < float64(sz.flags.maxSessions), "the session table never fills",
		"at most %.0f of %d sessions open", maxSessions, sz.flags.maxSessions)
	for _, g := range []struct {
		name  string
		s     socketResult
		slack float64
	}{
		{"idle WebSockets", r.Load.Idle, max(5, r.Load.Idle.DeadlineS/4)},
		{"WebSockets that never answer a ping", r.Load.NoPong, 5},
	} {
		r.add(g.s.Opened > 0 && g.s.StillOpen == 0 && g.s.ClosedByServer == g.s.Opened, g.name+": all closed by the frontend",
			"%d opened, %d closed by the frontend, %d still open (%d refused at dial)", g.s.Opened, g.s.ClosedByServer, g.s.StillOpen, g.s.Refused)
		if g.s.MaxHeldS > 0 {
			r.add(g.s.MaxHeldS <= g.s.DeadlineS+g.slack, g.name+": none held past its deadline",
				"longest %.1f s, deadline %.0f s (+%.0f s slack)", g.s.MaxHeldS, g.s.DeadlineS, g.slack)
		}
	}
	one := r.Load.One
	r.add(one.MaxOpen <= defaultConnsPerSource && one.Refused > 0 && one.Accepted+one.Refused == one.Attempted,
		"one source opening many WebSockets gets its share",
		"at most %d open at once (cap %d); %d accepted, %d refused of %d", one.MaxOpen, defaultConnsPerSource, one.Accepted, one.Refused, one.Attempted)
	sl := r.Load.Slow
	r.add(sl.Dropped == sl.Clients, "clients that never read are dropped", "%d of %d dropped (the last after %.1f s)", sl.Dropped, sl.Clients, sl.MaxSeconds)
	m := r.Memory
	r.add(m.PeakSockets < memoryLimit, "memory bounded", "peak %s with %.0f WebSockets open (limit %s)", mib(m.PeakSockets), m.PeakOpen, mib(memoryLimit))
	r.add(m.After <= m.BeforeSocks+m.BeforeSocks/4, "memory back down after",
		"%s after %.0f s, %s before the sockets (+25%% allowed)", mib(m.After), m.SettleS, mib(m.BeforeSocks))
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func (r *report) write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), b, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "results.md"), []byte(r.markdown()), 0o644)
}

func (r *report) markdown() string {
	var b strings.Builder
	size := "full size"
	if r.Quick {
		size = "reduced size (-quick)"
	}
	s := r.Settings
	fmt.Fprintf(&b, "# Load and abuse (%s)\n\n", size)
	fmt.Fprintf(&b, "prover-api (defaults; --session-ttl 15m, --idle-timeout %s, --ping-interval %s, --pong-timeout %s), "+
		"Postgres, nats-server and the load generator as separate processes; open-file limit %d.\n\n",
		s.IdleTimeout, s.PingInterval, s.PongTimeout, r.NoFile)
	fmt.Fprintf(&b, "## Hello floods (HTTP POST, keep-alive)\n\n| flood | sources | sent | served | most served to one source | refused | no answer | seconds |\n|---|--:|--:|--:|--:|---|--:|--:|\n")
	for _, f := range r.Load.Floods {
		var refused []string
		for msg, n := range f.Refused {
			refused = append(refused, fmt.Sprintf("%d × %s", n, msg))
		}
		sort.Strings(refused)
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %s | %d | %.1f |\n", f.Name, f.Sources, f.Sent, f.Served, f.MaxServedPerSource,
			strings.Join(refused, "; "), f.Errors, f.Seconds)
	}
	for _, f := range r.Load.Floods {
		var per []string
		for _, p := range f.PerSource {
			per = append(per, fmt.Sprintf("%s %d served / %d refused", p.Source, p.Served, p.Refused))
		}
		fmt.Fprintf(&b, "\nPer source, %s (first sources): %s.\n", f.Name, strings.Join(per, "; "))
	}
	lg := r.Load.Legit
	fmt.Fprintf(&b, "\n## The legitimate client, throughout\n\nA fresh connection every %s (WebSocket, every third HTTP POST) from its own address: hello, full attestation check, ECDH, AES-GCM, submit.\n\n"+
		"| attempts | succeeded | latency p50 | p90 | p99 | max |\n|--:|--:|--:|--:|--:|--:|\n| %d | %d | %.1f ms | %.1f ms | %.1f ms | %.1f ms |\n",
		s.LegitEvery, lg.Attempts, lg.OK, r.Legit.P50, r.Legit.P90, r.Legit.P99, r.Legit.Max)
	for _, f := range lg.Failures {
		fmt.Fprintf(&b, "- failure: %s\n", f)
	}
	fmt.Fprintf(&b, "\n## WebSockets\n\n| group | opened | refused at dial | closed by the frontend | still open | how | longest held | deadline |\n|---|--:|--:|--:|--:|---|--:|--:|\n")
	for _, g := range []struct {
		name string
		s    socketResult
	}{{"idle (answer pings)", r.Load.Idle}, {"silent (never answer a ping)", r.Load.NoPong}} {
		var codes []string
		for c, n := range g.s.CloseCodes {
			codes = append(codes, fmt.Sprintf("%d × %s", n, c))
		}
		sort.Strings(codes)
		held := "—"
		if g.s.MaxHeldS > 0 {
			held = fmt.Sprintf("%.1f s", g.s.MaxHeldS)
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %s | %s | %.0f s |\n", g.name, g.s.Opened, g.s.Refused, g.s.ClosedByServer,
			g.s.StillOpen, strings.Join(codes, "; "), held, g.s.DeadlineS)
	}
	fmt.Fprintf(&b, "\nOne source opening %d WebSockets, 32 at a time: %d accepted (at most %d open at once), %d refused (HTTP 503, -32000). "+
		"%d slow readers (4 KiB receive window, sending without reading): %d dropped, the last after %.1f s and %d requests.\n",
		r.Load.One.Attempted, r.Load.One.Accepted, r.Load.One.MaxOpen, r.Load.One.Refused, r.Load.Slow.Clients, r.Load.Slow.Dropped, r.Load.Slow.MaxSeconds, r.Load.Slow.MaxRequests)
	fmt.Fprintf(&b, "\n## What the frontend counted (prover_api_* metrics)\n\n- refused: %s\n- WebSockets closed: %s\n- CPU time of prover-api during the load: %.1f s\n",
		kv(r.Refused), kv(r.Closed), r.CPUSecond)
	m := r.Memory
	fmt.Fprintf(&b, "\n## prover-api's resident memory\n\n| idle | after the floods (%.0f sessions open) | peak with %.0f WebSockets open | after (%.0f s) | per idle WebSocket (target ≤ 10 KiB) |\n|--:|--:|--:|--:|--:|\n| %s | %s | %s | %s | %.1f KiB |\n",
		m.SessionsOpen, m.PeakOpen, m.SettleS, mib(m.Idle), mib(m.BeforeSocks), mib(m.PeakSockets), mib(m.After), m.PerSocket/1024)
	fmt.Fprintf(&b, "\nPer idle WebSocket = (peak RSS − RSS before the sockets) ÷ the most WebSockets open at once (the frontend's own gauge).\n")
	switch {
	case m.PerSocket <= socketTarget:
	case r.Quick:
		// About a tenth of the sockets: the heap's growth and the
		// runtime's fixed costs weigh several times more per socket.
		fmt.Fprintf(&b, "Above the 10 KiB target at this reduced size, where fixed costs weigh more per socket; the full run (`make abuse`, 10,000 idle WebSockets) is the target's measure.\n")
	default:
		fmt.Fprintf(&b, "The per-socket target of 10 KiB is **missed**.\n")
	}
	fmt.Fprintf(&b, "\n## Checks\n\n")
	for _, c := range r.Checks {
		mark := "ok"
		if !c.OK {
			mark = "**FAILED**"
		}
		fmt.Fprintf(&b, "- %s — %s: %s\n", mark, c.What, c.Got)
	}
	return b.String()
}

func kv(m map[string]float64) string {
	var out []string
	for k, v := range m {
		if v > 0 {
			out = append(out, fmt.Sprintf("%s %.0f", k, v))
		}
	}
	sort.Strings(out)
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}
