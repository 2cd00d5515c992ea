package circuitdir_test

import (
	"fmt"

	"github.com/openpassport/prover-fleet/shared/circuitdir"
)

func ExampleLayout() {
	l := circuitdir.Layout{CircuitDir: "circuits/build", ZkeyDir: "zkeys"}
	fmt.Println(l.Generator("dsc_demo"))
	fmt.Println(l.Zkey("dsc_demo"), l.VKey("dsc_demo"))
	fmt.Println(circuitdir.ValidName("dsc_demo"), circuitdir.ValidName("../etc"))
	// Output:
	// circuits/build/dsc_demo_cpp/dsc_demo
	// zkeys/dsc_demo.zkey zkeys/dsc_demo.vkey.json
	// true false
}
