package groth16

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/consensys/gnark-crypto/ecc/bn254/fr"

	"github.com/openpassport/prover-fleet/shared/groth16/zkey"
)

// chainKeyFile writes a development key for a chain circuit of n
// constraints to a file and returns its path, bytes and a witness.
func chainKeyFile(t *testing.T, n int, seed string) (string, []byte, []fr.Element) {
	t.Helper()
	sys, w := chainCircuit(n)
	k, _, err := DevSetup(t.Context(), sys, []byte(seed))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := zkey.Write(&buf, k); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "chain.zkey")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, buf.Bytes(), w
}

// sectionOffsets maps a container's section ids to their payload offsets.
func sectionOffsets(b []byte) map[uint32]int {
	out := map[uint32]int{}
	for pos := 12; pos+12 <= len(b); {
		id := binary.LittleEndian.Uint32(b[pos:])
		size := int(binary.LittleEndian.Uint64(b[pos+4:]))
		out[id] = pos + 12
		pos += 12 + size
	}
	return out
}

// TestLoadProvingKeyInPlace checks that a loaded key proves from its file
// mapping, holds only small buffers on the heap, and reports its memory.
func TestLoadProvingKeyInPlace(t *testing.T) {
	t.Parallel()
	path, data, w := chainKeyFile(t, 2000, "in place")
	pk, err := LoadProvingKey(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer pk.Close()
	m := pk.Memory()
	if m.Mapped != int64(len(data)) {
		t.Fatalf("Mapped = %d, the file is %d bytes", m.Mapped, len(data))
	}
	// The heap: header, verifying key (its precomputed lines are most of
	// it) and the coefficient index; no point of the bulk.
	if m.Heap <= 0 || m.Heap > 64<<10 {
		t.Fatalf("Heap = %d bytes, want a few KiB", m.Heap)
	}
	if m.Tables != 0 || m.Total() != m.Mapped+m.Heap {
		t.Fatalf("memory %+v", m)
	}
	if pm := pk.ProveMemory(); pm < int64(3*pk.DomainSize()*fr.Bytes) {
		t.Fatalf("ProveMemory = %d, less than the three FFT buffers", pm)
	}
	for range 2 {
		proof, public, err := Prove(t.Context(), pk, w)
		if err != nil {
			t.Fatal(err)
		}
		if err := pk.VerifyingKey().Verify(proof, public); err != nil {
			t.Fatal(err)
		}
	}
	if err := pk.Validate(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// TestLoadProvingKeyCorrupt checks what a damaged file gives: an error at
// load for anything in the header, the section table or the coefficients;
// for a bulk point (not read at load), ErrKeyCorrupt from the first proof,
// not ErrUnsatisfied (the witness is fine).
func TestLoadProvingKeyCorrupt(t *testing.T) {
	t.Parallel()
	_, orig, w := chainKeyFile(t, 300, "corrupt")
	sec := sectionOffsets(orig)
	const rec = zkey.CoefRecordSize
	f := func(fn func([]byte)) []byte { c := bytes.Clone(orig); fn(c); return c }
	le32 := func(off int, v uint32) []byte {
		return f(func(b []byte) { binary.LittleEndian.PutUint32(b[off:], v) })
	}
	tests := []struct {
		name    string
		data    []byte
		atLoad  bool // refused by LoadProvingKey
		wantErr error
	}{
		{"empty", nil, true, zkey.ErrMalformed},
		{"header only", orig[:12], true, zkey.ErrMalformed},
		{"truncated in the header", orig[:500], true, zkey.ErrMalformed},
		{"truncated in the coefficients", orig[:sec[4]+100], true, zkey.ErrMalformed},
		{"truncated in H", orig[:sec[9]+64*10+7], true, zkey.ErrMalformed},
		{"truncated by one byte", orig[:len(orig)-1], true, zkey.ErrMalformed},
		{"coefficient matrix 2", le32(sec[4]+4+5*rec, 2), true, zkey.ErrMalformed},
		{"coefficient signal out of range", le32(sec[4]+4+7*rec+8, 1<<30), true, zkey.ErrMalformed},
		{"coefficient constraint outside the domain", le32(sec[4]+4+7*rec+4, 1<<20), true, zkey.ErrMalformed},
		{"coefficient not canonical", f(func(b []byte) { copy(b[sec[4]+4+3*rec+12:], bytes.Repeat([]byte{0xff}, 32)) }), true, zkey.ErrMalformed},
		{"A point off the curve", f(func(b []byte) { b[sec[5]+3*64+9] ^= 4 }), false, ErrKeyCorrupt},
		{"B2 point off the curve", f(func(b []byte) { b[sec[7]+3*128+70] ^= 4 }), false, ErrKeyCorrupt},
		{"H point not canonical", f(func(b []byte) { copy(b[sec[9]+64*5:], bytes.Repeat([]byte{0xff}, 32)) }), false, ErrKeyCorrupt},
	}
	dir := t.TempDir()
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(dir, string(rune('a'+i))+".zkey")
			if err := os.WriteFile(path, tt.data, 0o644); err != nil {
				t.Fatal(err)
			}
			pk, err := LoadProvingKey(t.Context(), path)
			if tt.atLoad {
				if !errors.Is(err, tt.wantErr) || pk != nil {
					t.Fatalf("LoadProvingKey: err = %v, want %v", err, tt.wantErr)
				}
				t.Log(err)
				return
			}
			if err != nil {
				t.Fatalf("LoadProvingKey: %v (bulk points are checked later)", err)
			}
			defer pk.Close()
			_, _, err = Prove(t.Context(), pk, w)
			if !errors.Is(err, tt.wantErr) || errors.Is(err, ErrUnsatisfied) {
				t.Fatalf("Prove: err = %v, want %v", err, tt.wantErr)
			}
			t.Log(err)
			if err := pk.Validate(t.Context()); !errors.Is(err, ErrKeyCorrupt) {
				t.Fatalf("Validate: err = %v, want ErrKeyCorrupt", err)
			}
		})
	}
}

// TestKeyFileChangedWhileMapped truncates, or rewrites in place, the file
// of a loaded key: Prove, Validate and Warm then fail with ErrKeyChanged
// instead of the SIGBUS a read past the end of a truncated mapping raises.
func TestKeyFileChangedWhileMapped(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, path string, orig []byte)
	}{
		{"truncated to a page", func(t *testing.T, path string, _ []byte) {
			if err := os.Truncate(path, 4096); err != nil {
				t.Fatal(err)
			}
		}},
		{"truncated to nothing", func(t *testing.T, path string, _ []byte) {
			if err := os.Truncate(path, 0); err != nil {
				t.Fatal(err)
			}
		}},
		{"rewritten in place with another key", func(t *testing.T, path string, orig []byte) {
			_, other, _ := chainKeyFile(t, 3000, "another seed")
			if len(other) != len(orig) {
				t.Fatalf("the other key is %d bytes, not %d", len(other), len(orig))
			}
			if err := os.WriteFile(path, other, 0o644); err != nil { // O_TRUNC, same inode
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path, orig, w := chainKeyFile(t, 3000, "changed")
			pk, err := LoadProvingKey(t.Context(), path)
			if err != nil {
				t.Fatal(err)
			}
			defer pk.Close()
			if _, _, err := Prove(t.Context(), pk, w); err != nil {
				t.Fatal(err)
			}
			tc.change(t, path, orig)
			_, _, err = Prove(t.Context(), pk, w)
			if !errors.Is(err, ErrKeyChanged) {
				t.Fatalf("Prove: err = %v, want ErrKeyChanged", err)
			}
			t.Log(err)
			if tc.name != "rewritten in place with another key" {
				if err := pk.Validate(t.Context()); !errors.Is(err, ErrKeyChanged) {
					t.Fatalf("Validate: err = %v, want ErrKeyChanged", err)
				}
				if _, err := pk.Warm(t.Context(), 1<<30); !errors.Is(err, ErrKeyChanged) {
					t.Fatalf("Warm: err = %v, want ErrKeyChanged", err)
				}
			}
			// A key loaded again from the new file works (or is refused).
			if tc.name == "rewritten in place with another key" {
				pk2, err := LoadProvingKey(t.Context(), path)
				if err != nil {
					t.Fatal(err)
				}
				defer pk2.Close()
				if _, _, err := Prove(t.Context(), pk2, w); err != nil {
					t.Fatal(err)
				}
			} else if _, err := LoadProvingKey(t.Context(), path); err == nil {
				t.Fatal("a truncated file loaded")
			}
		})
	}
}

// TestCloseProvingKey closes a key while proofs run: those that started
// finish, later ones get ErrClosed, and the key holds nothing.
func TestCloseProvingKey(t *testing.T) {
	t.Parallel()
	path, _, w := chainKeyFile(t, 2000, "close")
	pk, err := LoadProvingKey(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pk.Warm(t.Context(), 1<<20); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			_, _, err := Prove(t.Context(), pk, w)
			if err != nil && !errors.Is(err, ErrClosed) {
				errs <- err
			}
		})
	}
	if err := pk.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if _, _, err := Prove(t.Context(), pk, w); !errors.Is(err, ErrClosed) {
		t.Fatalf("Prove after Close: err = %v, want ErrClosed", err)
	}
	if _, err := pk.Warm(t.Context(), 1<<20); !errors.Is(err, ErrClosed) {
		t.Fatalf("Warm after Close: err = %v, want ErrClosed", err)
	}
	if m := pk.Memory(); m != (Memory{}) {
		t.Fatalf("a closed key holds %+v", m)
	}
	if err := pk.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
}

// TestSnarkjsVerifiesMappedProofs proves with a mapped key, cold and with
// window tables, and checks both proofs with snarkjs.
func TestSnarkjsVerifiesMappedProofs(t *testing.T) {
	snarkjs(t)
	t.Parallel()
	sys, w := chainCircuit(2000)
	k, vk, err := DevSetup(t.Context(), sys, []byte("snarkjs mapped"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var buf bytes.Buffer
	if err := zkey.Write(&buf, k); err != nil {
		t.Fatal(err)
	}
	vkJSON, err := vk.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "chain.zkey"), buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "chain.vkey.json"), vkJSON, 0o644); err != nil {
		t.Fatal(err)
	}
	pk, err := LoadProvingKey(t.Context(), filepath.Join(dir, "chain.zkey"))
	if err != nil {
		t.Fatal(err)
	}
	defer pk.Close()
	for _, mode := range []string{"cold", "tables"} {
		if mode == "tables" {
			if _, err := pk.Warm(t.Context(), 2*pk.Memory().Mapped); err != nil {
				t.Fatal(err)
			}
		}
		proof, public, err := Prove(t.Context(), pk, w)
		if err != nil {
			t.Fatal(err)
		}
		writeJSON(t, filepath.Join(dir, mode+".proof.json"), proof)
		writeJSON(t, filepath.Join(dir, mode+".public.json"), public)
		if !snarkjsVerify(t, dir, "chain.vkey.json", mode+".public.json", mode+".proof.json") {
			t.Fatalf("snarkjs rejects the %s proof", mode)
		}
	}
}
