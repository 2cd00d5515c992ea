package metrics_test

import (
	"fmt"
	"time"

	"github.com/openpassport/prover-fleet/api/metrics"
)

// A program that embeds the frontend records its calls through the Observer
// and serves the registry (Handler alone, or Gatherer beside others).
func Example() {
	m := metrics.New()
	m.Call("openpassport_hello", 0, 3*time.Millisecond) // server.Deps.Observer
	m.Call("openpassport_submit_request", -32600, time.Millisecond)
	m.Call("eth_call", -32601, time.Millisecond) // client-chosen names are bounded

	families, err := m.Gatherer().Gather()
	if err != nil {
		panic(err)
	}
	for _, mf := range families {
		if mf.GetName() != "prover_api_requests_total" {
			continue
		}
		for _, s := range mf.GetMetric() {
			labels := ""
			for _, l := range s.GetLabel() {
				labels += " " + l.GetName() + "=" + l.GetValue()
			}
			fmt.Printf("%s%s %v\n", mf.GetName(), labels, s.GetCounter().GetValue())
		}
	}
	// Output:
	// prover_api_requests_total method=openpassport_hello outcome=ok 1
	// prover_api_requests_total method=openpassport_submit_request outcome=-32600 1
	// prover_api_requests_total method=unknown outcome=-32601 1
}
