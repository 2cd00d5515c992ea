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

// TreeCPU is the CPU time (user + system) used so far by process root and
// all its descendants: the live ones' own time plus what each of them has
// collected from children it waited for. Postgres (a child of the
// benchmark), the witness generators and provers all count. Other work on
// the machine does not, which makes CPU time per job a measure that the
// machine's other load hardly moves.
func TreeCPU(root int) (time.Duration, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, fmt.Errorf("child: %w", err)
	}
	type proc struct {
		ppid  int
		ticks int64
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
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		// f[0] is field 3 (state): ppid is field 4, utime..cstime 14..17.
		if len(f) < 15 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		var ticks int64
		for _, k := range []int{11, 12, 13, 14} {
			v, _ := strconv.ParseInt(f[k], 10, 64)
			ticks += v
		}
		procs[pid] = proc{ppid: ppid, ticks: ticks}
	}
	if _, ok := procs[root]; !ok {
		return 0, fmt.Errorf("child: no process %d", root)
	}
	var total int64
	for pid, p := range procs {
		for q, hops := pid, 0; q > 0 && hops < 64; hops++ {
			if q == root {
				total += p.ticks
				break
			}
			q = procs[q].ppid
		}
	}
	return time.Duration(total) * clockTick, nil
}
