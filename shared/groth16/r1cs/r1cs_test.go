package r1cs

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"reflect"
	"testing"

	"github.com/consensys/gnark-crypto/ecc/bn254/fr"

	"github.com/openpassport/prover-fleet/shared/groth16/wtns"
)

const (
	tinyR1CS = "../testdata/tiny.r1cs"
	tinyWtns = "../testdata/tiny.wtns"
)

func readTestdata(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func setup(t *testing.T) (*System, []fr.Element) {
	t.Helper()
	ctx := t.Context()
	s, err := ReadFile(ctx, tinyR1CS)
	if err != nil {
		t.Fatal(err)
	}
	w, err := wtns.ReadFile(ctx, tinyWtns)
	if err != nil {
		t.Fatal(err)
	}
	return s, w
}

func TestReadCircomSystem(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	// snarkjs r1cs info: 8 wires, 5 constraints, 1 private input, 1 public
	// input, 1 output, 8 labels.
	got := [...]uint64{uint64(s.NWires), uint64(s.NPubOut), uint64(s.NPubIn), uint64(s.NPrvIn), s.NLabels, uint64(len(s.Constraints))}
	want := [...]uint64{8, 1, 1, 1, 8, 5}
	if got != want {
		t.Fatalf("wires, outputs, public inputs, private inputs, labels, constraints = %v, want %v", got, want)
	}
	if s.NPublic() != 2 {
		t.Fatalf("NPublic = %d, want 2", s.NPublic())
	}
}

func TestIsSatisfied(t *testing.T) {
	t.Parallel()
	s, w := setup(t)
	if err := s.IsSatisfied(w); err != nil {
		t.Fatalf("circom's witness: %v", err)
	}
	for i := range w {
		t.Run(fmt.Sprintf("tamper wire %d", i), func(t *testing.T) {
			bad := append([]fr.Element(nil), w...)
			var one fr.Element
			one.SetOne()
			bad[i].Add(&bad[i], &one)
			if err := s.IsSatisfied(bad); !errors.Is(err, ErrUnsatisfied) {
				t.Fatalf("err = %v, want ErrUnsatisfied", err)
			}
		})
	}
	if err := s.IsSatisfied(w[:5]); !errors.Is(err, ErrWitnessSize) {
		t.Fatalf("short witness: err = %v, want ErrWitnessSize", err)
	}
}

func TestWriteRoundTrip(t *testing.T) {
	t.Parallel()
	s, w := setup(t)
	var buf bytes.Buffer
	if err := Write(&buf, s); err != nil {
		t.Fatal(err)
	}
	s2, err := Read(t.Context(), bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(s, s2) {
		t.Fatal("round trip changed the system")
	}
	if err := s2.IsSatisfied(w); err != nil {
		t.Fatal(err)
	}
	bad := *s
	bad.Constraints = []Constraint{{A: []Term{{Wire: 99}}}}
	if err := Write(&bytes.Buffer{}, &bad); err == nil {
		t.Fatal("Write accepted a wire outside the system")
	}
}

func TestReadRejects(t *testing.T) {
	t.Parallel()
	orig := readTestdata(t, tinyR1CS)
	f := func(b []byte, fn func([]byte)) []byte { c := append([]byte(nil), b...); fn(c); return c }
	le32 := func(off int, v uint32) func([]byte) {
		return func(b []byte) { binary.LittleEndian.PutUint32(b[off:], v) }
	}
	hdr := sectionOffset(t, orig, sectionHeader)
	cons := sectionOffset(t, orig, sectionConstraints)
	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"garbage", bytes.Repeat([]byte{0xa5}, 200), ErrMalformed},
		{"truncated", orig[:len(orig)-9], ErrMalformed},
		{"half", orig[:len(orig)/2], ErrMalformed},
		{"wtns magic", f(orig, func(b []byte) { copy(b, "wtns") }), ErrMalformed},
		{"version 2", f(orig, le32(4, 2)), ErrMalformed},
		{"other field size", f(orig, le32(hdr, 48)), ErrWrongField},
		{"other prime", f(orig, func(b []byte) { b[hdr+4] ^= 1 }), ErrWrongField},
		{"too few wires", f(orig, le32(hdr+36, 2)), ErrMalformed},
		{"no wire map", f(orig, le32(sectionOffset(t, orig, sectionWireMap)-12, 9)), ErrMalformed},
		{"too many constraints", f(orig, le32(hdr+36+4*4+8, 1<<30)), ErrMalformed},
		{"term count too large", f(orig, le32(cons, 1<<28)), ErrMalformed},
		{"wire out of range", f(orig, le32(cons+4, 1000)), ErrMalformed},
		{"coefficient not below modulus", f(orig, func(b []byte) { copy(b[cons+8:], bytes.Repeat([]byte{0xff}, 32)) }), ErrMalformed},
		{"custom gates", append(append([]byte(nil), f(orig, le32(8, 4))...), customGatesSection()...), ErrCustomGates},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := Read(t.Context(), bytes.NewReader(tt.data), int64(len(tt.data)))
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if s != nil {
				t.Fatal("returned a system with an error")
			}
		})
	}
}

// sectionOffset finds the payload offset of section id in a container.
func sectionOffset(t *testing.T, b []byte, id uint32) int {
	t.Helper()
	pos := 12
	for pos+12 <= len(b) {
		sid := binary.LittleEndian.Uint32(b[pos:])
		size := int(binary.LittleEndian.Uint64(b[pos+4:]))
		if sid == id {
			return pos + 12
		}
		pos += 12 + size
	}
	t.Fatalf("section %d not found", id)
	return 0
}

// customGatesSection is an (empty) custom-gates list section.
func customGatesSection() []byte {
	b := make([]byte, 16)
	binary.LittleEndian.PutUint32(b[0:], sectionCustomList)
	binary.LittleEndian.PutUint64(b[4:], 4)
	return b
}

// FuzzR1CS checks that Read never panics and that whatever it accepts
// survives a Write/Read round trip.
func FuzzR1CS(f *testing.F) {
	orig := readTestdata(f, tinyR1CS)
	f.Add(orig)
	f.Add(orig[:len(orig)-40])
	f.Add([]byte("r1cs\x01\x00\x00\x00\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Read(t.Context(), bytes.NewReader(data), int64(len(data)))
		if err != nil {
			if s != nil {
				t.Fatal("system returned with an error")
			}
			return
		}
		var buf bytes.Buffer
		if err := Write(&buf, s); err != nil {
			t.Fatal(err)
		}
		s2, err := Read(t.Context(), bytes.NewReader(buf.Bytes()), int64(buf.Len()))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(s, s2) {
			t.Fatal("round trip changed the system")
		}
	})
}

func ExampleSystem_IsSatisfied() {
	ctx := context.Background()
	s, err := ReadFile(ctx, "../testdata/tiny.r1cs")
	if err != nil {
		panic(err)
	}
	w, err := wtns.ReadFile(ctx, "../testdata/tiny.wtns")
	if err != nil {
		panic(err)
	}
	fmt.Println(len(s.Constraints), "constraints, satisfied:", s.IsSatisfied(w) == nil)
	w[3].SetUint64(8) // change the private input
	fmt.Println("tampered:", errors.Is(s.IsSatisfied(w), ErrUnsatisfied))
	// Output:
	// 5 constraints, satisfied: true
	// tampered: true
}
