package child

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of the times in /proc/<pid>/stat (USER_HZ, 100 on
// Linux).
const clockTick = 10 * time.Millisecond

// CPU is the CPU time (user + system) used so far by a process tree, split
// by where it was spent.
type CPU struct {
	// Self is the root process's own time: for the bench, the embedded
	// fleet (frontend, NATS server, workers' Go code) and the clients.
	Self time.Duration
	// Postgres is the time of every process under a child of the root
	// whose command is "postgres" (the throwaway server and its backends).
	Postgres time.Duration
	// Programs is everything else: the children the root has waited for
	// (witness generators, provers, verifiers) and those still running.
	Programs time.Duration
}

// Total is the whole tree's time.
func (c CPU) Total() time.Duration { return c.Self + c.Postgres + c.Programs }

// Sub is c − o, part by part.
func (c CPU) Sub(o CPU) CPU {
	return CPU{Self: c.Self - o.Self, Postgres: c.Postgres - o.Postgres, Programs: c.Programs - o.Programs}
}

// Add is c + o, part by part.
func (c CPU) Add(o CPU) CPU {
	return CPU{Self: c.Self + o.Self, Postgres: c.Postgres + o.Postgres, Programs: c.Programs + o.Programs}
}

// TreeCPU is the CPU time used so far by process root and all its
// descendants: the live ones' own time plus what each of them has collected
// from children it waited for. Postgres (a child of the benchmark), the
// witness generators and provers all count. Other work on the machine does
// not, which makes CPU time per job a measure that the machine's other load
// hardly moves.
func TreeCPU(root int) (CPU, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return CPU{}, fmt.Errorf("child: %w", err)
	}
	type proc struct {
		ppid        int
		comm        string
		own, reaped int64 // utime+stime, cutime+cstime
	}
	procs := map[int]proc{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // exited meanwhile
		}
		// The command name is in parentheses and may hold spaces.
		s := string(b)
		i, j := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if i < 0 || j < i {
			continue
		}
		f := strings.Fields(s[j+1:])
		// f[0] is field 3 (state): ppid is field 4, utime..cstime 14..17.
		if len(f) < 15 {
			continue
		}
		p := proc{comm: s[i+1 : j]}
		p.ppid, _ = strconv.Atoi(f[1])
		for k, v := range f[11:15] {
			n, _ := strconv.ParseInt(v, 10, 64)
			if k < 2 {
				p.own += n
			} else {
				p.reaped += n
			}
		}
		procs[pid] = p
	}
	r, ok := procs[root]
	if !ok {
		return CPU{}, fmt.Errorf("child: no process %d", root)
	}
	cpu := CPU{Self: time.Duration(r.own) * clockTick, Programs: time.Duration(r.reaped) * clockTick}
	for pid, p := range procs {
		if pid == root {
			continue
		}
		// Walk up to the root, remembering the root's child on the way.
		top := pid
		for q, hops := pid, 0; q > 0 && hops < 64; hops++ {
			if q == root {
				d := time.Duration(p.own+p.reaped) * clockTick
				if procs[top].comm == "postgres" {
					cpu.Postgres += d
				} else {
					cpu.Programs += d
				}
				break
			}
			top = q
			q = procs[q].ppid
		}
	}
	return cpu, nil
}

// ProcessCPU is one process's own CPU time so far (user + system), its
// reaped children not included.
func ProcessCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("child: %w", err)
	}
	s := string(b)
	j := strings.LastIndexByte(s, ')')
	if j < 0 {
		return 0, fmt.Errorf("child: /proc/%d/stat: no command", pid)
	}
	f := strings.Fields(s[j+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("child: /proc/%d/stat: too short", pid)
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	k, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+k) * clockTick, nil
}
