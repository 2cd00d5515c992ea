// Package machine describes where a benchmark ran: CPU, cores, memory,
// kernel, Go version, the commit of the working tree, the date and the
// versions of the external tools the benchmarks use.
package machine

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Info is the machine and software a run used.
type Info struct {
	CPUModel    string `json:"cpu_model"`
	Cores       int    `json:"cores"`
	MemoryBytes int64  `json:"memory_bytes"`
	Kernel      string `json:"kernel"`
	GoVersion   string `json:"go_version"`
	Commit      string `json:"commit"`
	// Dirty: the working tree had uncommitted changes (anywhere in it).
	Dirty bool              `json:"dirty"`
	Date  string            `json:"date"`
	Tools map[string]string `json:"tools,omitempty"`
	// LoadAvgStart and LoadAvgEnd are /proc/loadavg's 1, 5 and 15 minute
	// averages when the run started and ended: other work on the machine
	// shows here.
	LoadAvgStart string `json:"load_avg_start"`
	LoadAvgEnd   string `json:"load_avg_end,omitempty"`
	Hostname     string `json:"-"`
}

// Describe collects Info. tools maps a tool's name to a command that
// prints its version (first line kept; "unavailable" when it fails).
func Describe(ctx context.Context, tools map[string][]string) Info {
	in := Info{
		CPUModel:  cpuModel(),
		Cores:     runtime.NumCPU(),
		GoVersion: runtime.Version(),
		Date:      time.Now().UTC().Format(time.RFC3339),
	}
	in.MemoryBytes = memTotal()
	in.LoadAvgStart = LoadAvg()
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		in.Kernel = strings.TrimSpace(string(b))
	}
	in.Commit = firstLine(output(ctx, "git", "rev-parse", "HEAD"))
	in.Dirty = strings.TrimSpace(output(ctx, "git", "status", "--porcelain")) != ""
	in.Hostname, _ = os.Hostname()
	if len(tools) > 0 {
		in.Tools = map[string]string{}
		for name, argv := range tools {
			v := firstLine(output(ctx, argv[0], argv[1:]...))
			if v == "" {
				v = "unavailable"
			}
			in.Tools[name] = v
		}
	}
	return in
}

func output(ctx context.Context, name string, args ...string) string {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return ""
	}
	return out.String()
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

func memTotal() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

// LoadAvg is the 1, 5 and 15 minute load averages from /proc/loadavg.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
