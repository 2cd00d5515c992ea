package zkey

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	"os"
	"reflect"
	"testing"

	"github.com/consensys/gnark-crypto/ecc/bn254/fp"
	"github.com/consensys/gnark-crypto/ecc/bn254/fr"
)

const (
	snarkjsKey = "../testdata/tiny_snarkjs.zkey"
	devKey     = "../testdata/tiny_dev.zkey"
	plonkKey   = "../testdata/tiny_plonk.zkey"
)

func readTestdata(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func limbsBig(l [4]uint64) *big.Int {
	b := make([]byte, 32)
	for i := range 4 {
		binary.BigEndian.PutUint64(b[24-8*i:], l[i])
	}
	return new(big.Int).SetBytes(b)
}

func TestModuli(t *testing.T) {
	t.Parallel()
	if limbsBig(fpModulus()).Cmp(fp.Modulus()) != 0 {
		t.Error("fpModulus differs from gnark-crypto's")
	}
	if limbsBig(frModulus()).Cmp(fr.Modulus()) != 0 {
		t.Error("frModulus differs from gnark-crypto's")
	}
}

func TestReadSnarkjsKey(t *testing.T) {
	t.Parallel()
	k, err := ReadFile(t.Context(), snarkjsKey)
	if err != nil {
		t.Fatal(err)
	}
	// tiny.r1cs: 8 wires, 2 public signals, 5 constraints; snarkjs adds 3
	// public-input constraints, so the domain is 8.
	if k.NVars != 8 || k.NPublic != 2 || k.DomainSize != 8 {
		t.Fatalf("nVars, nPublic, domainSize = %d, %d, %d; want 8, 2, 8", k.NVars, k.NPublic, k.DomainSize)
	}
	if len(k.IC) != 3 || len(k.A) != 8 || len(k.B1) != 8 || len(k.B2) != 8 || len(k.C) != 5 || len(k.H) != 8 {
		t.Fatalf("section lengths IC %d A %d B1 %d B2 %d C %d H %d", len(k.IC), len(k.A), len(k.B1), len(k.B2), len(k.C), len(k.H))
	}
	// The last three coefficients are snarkjs's "wire_s in A" rows, with
	// value one.
	n := len(k.Coefs)
	for s := range 3 {
		c := k.Coefs[n-3+s]
		if c.Matrix != MatrixA || c.Constraint != uint32(5+s) || c.Signal != uint32(s) || !c.Value.IsOne() {
			t.Errorf("public-input coefficient %d = %+v", s, c)
		}
	}
	for _, p := range append(append([]interface{ IsOnCurve() bool }{}, &k.Alpha1, &k.Beta1, &k.Delta1), &k.Beta2, &k.Gamma2, &k.Delta2) {
		if !p.IsOnCurve() {
			t.Error("header point not on curve")
		}
	}
}

func TestWriteRoundTrip(t *testing.T) {
	t.Parallel()
	for _, path := range []string{snarkjsKey, devKey} {
		t.Run(path, func(t *testing.T) {
			t.Parallel()
			k, err := ReadFile(t.Context(), path)
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if err := Write(&buf, k); err != nil {
				t.Fatal(err)
			}
			k2, err := Read(t.Context(), bytes.NewReader(buf.Bytes()), int64(buf.Len()))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(k, k2) {
				t.Fatal("round trip changed the key")
			}
			if path == devKey && !bytes.Equal(buf.Bytes(), readTestdata(t, devKey)) {
				t.Fatal("rewriting the dev key changed its bytes")
			}
		})
	}
}

func TestRejectsPlonk(t *testing.T) {
	t.Parallel()
	_, err := ReadFile(t.Context(), plonkKey)
	if !errors.Is(err, ErrUnsupportedProtocol) {
		t.Fatalf("err = %v, want ErrUnsupportedProtocol", err)
	}
	t.Log(err)
}

// sections maps section id to payload offset in a container.
func sections(t *testing.T, b []byte) map[uint32]int {
	t.Helper()
	out := map[uint32]int{}
	for pos := 12; pos+12 <= len(b); {
		id := binary.LittleEndian.Uint32(b[pos:])
		size := int(binary.LittleEndian.Uint64(b[pos+4:]))
		out[id] = pos + 12
		pos += 12 + size
	}
	return out
}

type rejectCase struct {
	name string
	data []byte
	want error
}

// rejectCases are corruptions of the snarkjs key and the error each gives.
func rejectCases(t *testing.T) []rejectCase {
	orig := readTestdata(t, snarkjsKey)
	sec := sections(t, orig)
	f := func(fn func([]byte)) []byte { c := append([]byte(nil), orig...); fn(c); return c }
	le32 := func(off int, v uint32) func([]byte) {
		return func(b []byte) { binary.LittleEndian.PutUint32(b[off:], v) }
	}
	h := sec[secHeader]
	// Offsets inside the Groth16 header.
	nVarsOff := h + 4 + 32 + 4 + 32
	alphaOff := nVarsOff + 12
	beta2Off := alphaOff + 2*g1Size
	return []rejectCase{
		{"empty", nil, ErrMalformed},
		{"garbage", bytes.Repeat([]byte("zkey"), 100), ErrMalformed},
		{"truncated to 100 bytes", orig[:100], ErrMalformed},
		{"truncated by one byte", orig[:len(orig)-1], ErrMalformed},
		{"truncated half", orig[:len(orig)/2], ErrMalformed},
		{"r1cs magic", f(func(b []byte) { copy(b, "r1cs") }), ErrMalformed},
		{"version 3", f(le32(4, 3)), ErrMalformed},
		{"plonk protocol id", f(le32(sec[secProtocol], ProtocolPlonk)), ErrUnsupportedProtocol},
		{"fflonk protocol id", f(le32(sec[secProtocol], ProtocolFflonk)), ErrUnsupportedProtocol},
		{"unknown protocol id", f(le32(sec[secProtocol], 77)), ErrUnsupportedProtocol},
		{"other base field", f(func(b []byte) { b[h+4] ^= 1 }), ErrUnsupportedCurve},
		{"other scalar field", f(func(b []byte) { b[h+4+32+4] ^= 1 }), ErrUnsupportedCurve},
		{"huge nVars", f(le32(nVarsOff, 1<<31)), ErrMalformed},
		{"nPublic above nVars", f(le32(nVarsOff+4, 9)), ErrMalformed},
		{"domain not a power of two", f(le32(nVarsOff+8, 12)), ErrMalformed},
		{"domain too large", f(le32(nVarsOff+8, 1<<28)), ErrMalformed},
		{"alpha coordinate not canonical", f(func(b []byte) { copy(b[alphaOff:], bytes.Repeat([]byte{0xff}, 32)) }), ErrMalformed},
		{"alpha not on curve", f(func(b []byte) { b[alphaOff] ^= 1 }), ErrMalformed},
		{"beta2 not on curve", f(func(b []byte) { b[beta2Off] ^= 1 }), ErrMalformed},
		{"A point not on curve", f(func(b []byte) { b[sec[secA]+g1Size] ^= 1 }), ErrMalformed},
		{"B2 point not on curve", f(func(b []byte) { b[sec[secB2]+g2Size] ^= 1 }), ErrMalformed},
		{"H coordinate not canonical", f(func(b []byte) { copy(b[sec[secH]+32:], bytes.Repeat([]byte{0xff}, 32)) }), ErrMalformed},
		{"coefficient count lies", f(le32(sec[secCoefs], 1<<20)), ErrMalformed},
		{"coefficient matrix 2", f(le32(sec[secCoefs]+4, 2)), ErrMalformed},
		{"coefficient constraint outside domain", f(le32(sec[secCoefs]+8, 8)), ErrMalformed},
		{"coefficient signal out of range", f(le32(sec[secCoefs]+12, 8)), ErrMalformed},
		{"coefficient not canonical", f(func(b []byte) { copy(b[sec[secCoefs]+16:], bytes.Repeat([]byte{0xff}, 32)) }), ErrMalformed},
		{"H section missing", f(le32(sec[secH]-12, 99)), ErrMalformed},
		{"IC section duplicated", f(le32(sec[secA]-12, secIC)), ErrMalformed},
	}
}

func TestReadRejects(t *testing.T) {
	t.Parallel()
	for _, tt := range rejectCases(t) {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			k, err := Read(t.Context(), bytes.NewReader(tt.data), int64(len(tt.data)))
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if k != nil {
				t.Fatal("returned a key with an error")
			}
		})
	}
}

func TestReadCancelled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := ReadFile(ctx, snarkjsKey); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestWriteRejectsInconsistentKey(t *testing.T) {
	t.Parallel()
	k, err := ReadFile(t.Context(), devKey)
	if err != nil {
		t.Fatal(err)
	}
	k.H = k.H[:3]
	if err := Write(&bytes.Buffer{}, k); err == nil {
		t.Fatal("Write accepted an H section shorter than the domain")
	}
}

// FuzzZkey checks that Read and Parse never panic, that what Read accepts
// Parse accepts with the same points, and that it survives a Write/Read
// round trip.
func FuzzZkey(f *testing.F) {
	for _, p := range []string{snarkjsKey, devKey, plonkKey} {
		b := readTestdata(f, p)
		f.Add(b)
		f.Add(b[:len(b)/3])
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := Read(t.Context(), bytes.NewReader(data), int64(len(data)))
		v, perr := Parse(data)
		if err != nil {
			if k != nil {
				t.Fatal("key returned with an error")
			}
			return
		}
		// What Read accepts, Parse accepts, with the same points.
		if perr != nil {
			t.Fatalf("Read accepted what Parse refused: %v", perr)
		}
		if v.Header != k.Header || !reflect.DeepEqual(v.A, k.A) || !reflect.DeepEqual(v.B2, k.B2) || !reflect.DeepEqual(v.H, k.H) {
			t.Fatal("Parse and Read disagree")
		}
		var buf bytes.Buffer
		if err := Write(&buf, k); err != nil {
			t.Fatal(err)
		}
		k2, err := Read(t.Context(), bytes.NewReader(buf.Bytes()), int64(buf.Len()))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(k, k2) {
			t.Fatal("round trip changed the key")
		}
	})
}

func ExampleReadFile() {
	k, err := ReadFile(context.Background(), "../testdata/tiny_snarkjs.zkey")
	if err != nil {
		panic(err)
	}
	fmt.Printf("%d wires, %d public signals, domain %d, %d A/B coefficients\n", k.NVars, k.NPublic, k.DomainSize, len(k.Coefs))

	_, err = ReadFile(context.Background(), "../testdata/tiny_plonk.zkey")
	fmt.Println(errors.Is(err, ErrUnsupportedProtocol))
	// Output:
	// 8 wires, 2 public signals, domain 8, 14 A/B coefficients
	// true
}
