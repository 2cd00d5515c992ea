// Command rusage is the benchmark meter's helper (see child.Meter): it runs
// a program as its own child and reports the program's wall time, peak RSS
// and CPU time on file descriptor 3. It stays small on purpose: its own
// size is the floor of what it can measure.
//
//	rusage <program> <args...>   (fd 3 open for the report)
package main

import (
	"os"

	"github.com/openpassport/prover-fleet/bench/internal/child"
)

func main() { os.Exit(child.TrampolineMain(os.Args[1:])) }
