package proc

import (
	"os"
	"testing"
)

func TestParseVmHWM(t *testing.T) {
	for _, tc := range []struct {
		name, status string
		want         int64
	}{
		{"typical", "Name:\tzkprove\nVmPeak:\t  20000 kB\nVmHWM:\t   12345 kB\nVmRSS:\t 100 kB\n", 12345 * 1024},
		{"spaces", "Name:\tx\nVmHWM:      7 kB\n", 7 * 1024},
		{"zombie: no memory lines", "Name:\tx\nState:\tZ (zombie)\n", 0},
		{"cut off mid-number", "Name:\tx\nVmHWM:\t   123", 0},
		{"not a number", "Name:\tx\nVmHWM:\t  kB\n", 0},
		{"only at a line start", "Name:\tVmHWM: 5 kB\nVmHWM:\t 9 kB\n", 9 * 1024},
		{"empty", "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseVmHWM([]byte(tc.status)); got != tc.want {
				t.Errorf("parseVmHWM = %d, want %d", got, tc.want)
			}
		})
	}
}

// The watcher reads this process's own status file the way it reads a
// child's: its figure must match the file's, and stopping returns it.
func TestWatchPeakRSSSelf(t *testing.T) {
	stop := watchPeakRSS(os.Getpid())
	got := stop()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	want := parseVmHWM(data)
	if got <= 0 || got > want {
		t.Fatalf("watchPeakRSS(self) = %d, status file says VmHWM %d", got, want)
	}
	if stop := watchPeakRSS(1 << 30); stop() != 0 {
		t.Error("a missing process has a peak")
	}
}
