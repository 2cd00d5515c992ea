package wtns

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/consensys/gnark-crypto/ecc/bn254/fr"
)

const tinyWtns = "../testdata/tiny.wtns"

func readTestdata(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestReadCircomWitness(t *testing.T) {
	t.Parallel()
	w, err := ReadFile(t.Context(), tinyWtns)
	if err != nil {
		t.Fatal(err)
	}
	want := []uint64{1, 185643, 11, 7, 49, 344, 2410, 16873} // snarkjs wtns export json
	if len(w) != len(want) {
		t.Fatalf("got %d values, want %d", len(w), len(want))
	}
	for i := range want {
		var e fr.Element
		e.SetUint64(want[i])
		if !w[i].Equal(&e) {
			t.Errorf("value %d = %s, want %d", i, w[i].String(), want[i])
		}
	}
}

func TestWriteMatchesCircom(t *testing.T) {
	t.Parallel()
	orig := readTestdata(t, tinyWtns)
	w, err := Read(t.Context(), bytes.NewReader(orig), int64(len(orig)))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := Write(&buf, w); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), orig) {
		t.Fatalf("Write output differs from circom's file:\n got %x\nwant %x", buf.Bytes(), orig)
	}
}

// mutate returns a copy of b with f applied.
func mutate(b []byte, f func([]byte) []byte) []byte {
	return f(append([]byte(nil), b...))
}

func TestReadRejects(t *testing.T) {
	t.Parallel()
	orig := readTestdata(t, tinyWtns)
	// Layout: 12-byte file header; section 1 header at 12, payload at 24
	// (n8 at 24, prime at 28, nWitness at 60); section 2 header at 64,
	// payload at 76.
	le32 := func(b []byte, off int, v uint32) []byte { binary.LittleEndian.PutUint32(b[off:], v); return b }
	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"garbage", []byte("this is not a witness file at all"), ErrMalformed},
		{"truncated header", orig[:10], ErrMalformed},
		{"truncated in section 1", orig[:40], ErrMalformed},
		{"truncated values", orig[:len(orig)-1], ErrMalformed},
		{"bad magic", mutate(orig, func(b []byte) []byte { copy(b, "zkey"); return b }), ErrMalformed},
		{"version 3", mutate(orig, func(b []byte) []byte { return le32(b, 4, 3) }), ErrMalformed},
		{"huge section count", mutate(orig, func(b []byte) []byte { return le32(b, 8, 1<<31) }), ErrMalformed},
		{"section size past EOF", mutate(orig, func(b []byte) []byte { binary.LittleEndian.PutUint64(b[16:], 1<<40); return b }), ErrMalformed},
		{"nWitness larger than section", mutate(orig, func(b []byte) []byte { return le32(b, 60, 1<<30) }), ErrMalformed},
		{"zero values", mutate(orig, func(b []byte) []byte { return le32(b, 60, 0) }), ErrMalformed},
		{"other field size", mutate(orig, func(b []byte) []byte { return le32(b, 24, 48) }), ErrWrongField},
		{"other prime", mutate(orig, func(b []byte) []byte { b[28] ^= 1; return b }), ErrWrongField},
		{"value not below modulus", mutate(orig, func(b []byte) []byte {
			copy(b[76+32:], bytes.Repeat([]byte{0xff}, 32))
			return b
		}), ErrMalformed},
		{"values section missing", mutate(orig, func(b []byte) []byte { return le32(b, 64, 7) }), ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w, err := Read(t.Context(), bytes.NewReader(tt.data), int64(len(tt.data)))
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if w != nil {
				t.Fatal("returned a witness with an error")
			}
		})
	}
}

func TestReadFileMissing(t *testing.T) {
	t.Parallel()
	if _, err := ReadFile(t.Context(), t.TempDir()+"/none.wtns"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v, want not-exist", err)
	}
}

func TestReadCancelled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := ReadFile(ctx, tinyWtns); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

// FuzzWtns checks that Read never panics and that whatever it accepts
// survives a Write/Read round trip.
func FuzzWtns(f *testing.F) {
	orig := readTestdata(f, tinyWtns)
	f.Add(orig)
	f.Add(orig[:len(orig)/2])
	f.Add([]byte("wtns"))
	f.Fuzz(func(t *testing.T, data []byte) {
		w, err := Read(t.Context(), bytes.NewReader(data), int64(len(data)))
		if err != nil {
			if w != nil {
				t.Fatal("witness returned with an error")
			}
			return
		}
		var buf bytes.Buffer
		if err := Write(&buf, w); err != nil {
			t.Fatal(err)
		}
		w2, err := Read(t.Context(), bytes.NewReader(buf.Bytes()), int64(buf.Len()))
		if err != nil {
			t.Fatal(err)
		}
		if len(w2) != len(w) {
			t.Fatal("round trip changed the length")
		}
		for i := range w {
			if !w[i].Equal(&w2[i]) {
				t.Fatalf("round trip changed value %d", i)
			}
		}
	})
}

func ExampleReadFile() {
	w, err := ReadFile(context.Background(), "../testdata/tiny.wtns")
	if err != nil {
		panic(err)
	}
	fmt.Println(len(w), "values; wire 0 =", w[0].String(), "; public output =", w[1].String())
	// Output: 8 values; wire 0 = 1 ; public output = 185643
}
