package frontend

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/pprof/profile"
)

// A profile whose stacks are known: each sample lands in the first
// category its stack contains, and the floor is (crypto + socket) ÷ the
// server crypto.
func TestBreakdown(t *testing.T) {
	t.Parallel()
	var (
		fns  []*profile.Function
		locs = map[string]*profile.Location{}
	)
	loc := func(name string) *profile.Location {
		if l, ok := locs[name]; ok {
			return l
		}
		f := &profile.Function{ID: uint64(len(fns) + 1), Name: name}
		fns = append(fns, f)
		l := &profile.Location{ID: uint64(len(locs) + 1), Line: []profile.Line{{Function: f}}}
		locs[name] = l
		return l
	}
	const ms = int64(1e6)
	stacks := []struct {
		frames []string // leaf first
		ns     int64
	}{
		{[]string{"crypto/internal/fips140/nistec/fiat.p384Mul", "crypto/ecdsa.SignASN1", "github.com/x/attest.(*Dev).Attest", "rpc.dispatch"}, 300 * ms},
		{[]string{"internal/runtime/syscall/linux.Syscall6", "syscall.write", "github.com/gorilla/websocket.(*Conn).WriteMessage"}, 80 * ms},
		// An allocation inside the crypto counts as crypto (first match).
		{[]string{"runtime.mallocgc", "crypto/ecdh.(*PrivateKey).ECDH"}, 20 * ms},
		{[]string{"runtime.mallocgc", "encoding/json.Unmarshal"}, 10 * ms},
		{[]string{"runtime.gcBgMarkWorker"}, 40 * ms},
		// A socket write by the Postgres client is socket I/O.
		{[]string{"syscall.write", "github.com/jackc/pgx/v5.(*Conn).Query"}, 10 * ms},
		{[]string{"github.com/jackc/pgx/v5.(*Conn).Query"}, 30 * ms},
		{[]string{"github.com/nats-io/nats%2ego.(*Conn).publish"}, 20 * ms},
		{[]string{"encoding/json.checkValid", "rpc.parseMessage"}, 50 * ms},
		{[]string{"runtime.schedule"}, 40 * ms},
	}
	p := &profile.Profile{
		SampleType: []*profile.ValueType{{Type: "samples", Unit: "count"}, {Type: "cpu", Unit: "nanoseconds"}},
		PeriodType: &profile.ValueType{Type: "cpu", Unit: "nanoseconds"},
		Period:     10 * ms,
	}
	for _, s := range stacks {
		var ls []*profile.Location
		for _, f := range s.frames {
			ls = append(ls, loc(f))
		}
		p.Sample = append(p.Sample, &profile.Sample{Location: ls, Value: []int64{s.ns / (10 * ms), s.ns}})
	}
	for _, l := range locs {
		p.Location = append(p.Location, l)
	}
	p.Function = fns
	path := filepath.Join(t.TempDir(), "cpu.prof")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Write(f); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	// 10 pairs, server crypto 20 ms per pair.
	b, err := breakdown(path, 10, 20)
	if err != nil {
		t.Fatal(err)
	}
	want := CPUBreakdown{
		SampledPerPairMS: 60, CryptoMS: 32, SocketIOMS: 9, GCMS: 5, PostgresMS: 3, NATSMS: 2, JSONMS: 5, OtherMS: 4,
		Floor: 2.05,
	}
	if *b != want {
		t.Fatalf("breakdown\n got %+v\nwant %+v", *b, want)
	}
	if _, err := breakdown(path, 0, 20); err == nil {
		t.Fatal("no pairs: no error")
	}
	if _, err := breakdown(filepath.Join(t.TempDir(), "missing.prof"), 10, 20); err == nil {
		t.Fatal("missing profile: no error")
	}
}
