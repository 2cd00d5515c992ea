// Package wtns reads and writes circom witness files (.wtns).
//
// Layout (iden3 binary container, magic "wtns", version 1 or 2):
//
//	section 1 (header): n8 uint32, prime n8 bytes LE, nWitness uint32
//	section 2 (values): nWitness field elements, n8 bytes each, little-endian,
//	                    in normal (not Montgomery) form
//
// Only witnesses over the BN254 (bn128) scalar field are accepted. Every
// section size is checked against the header and the file size before any
// allocation, so a hostile or truncated file gives an error, never a panic
// or a huge allocation.
package wtns

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/consensys/gnark-crypto/ecc/bn254/fr"

	"github.com/openpassport/prover-fleet/shared/groth16/internal/binfile"
)

var (
	// ErrMalformed means the file is not a well-formed .wtns file.
	ErrMalformed = errors.New("wtns: malformed file")
	// ErrWrongField means the witness is over another field than BN254's
	// scalar field (for example a circuit compiled with another --prime).
	ErrWrongField = errors.New("wtns: witness is not over the BN254 scalar field")
)

const (
	sectionHeader = 1
	sectionValues = 2
	n8            = fr.Bytes
)

// Read parses a .wtns file of the given size from r and returns the witness
// as field elements (wire 0 is the constant one).
func Read(ctx context.Context, r io.ReaderAt, size int64) ([]fr.Element, error) {
	f, err := binfile.Open(r, size, "wtns", 2)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	hs, err := f.Section(sectionHeader)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if hs.Size < 4 || hs.Size > 4+64+4 {
		return nil, fmt.Errorf("%w: header section is %d bytes", ErrMalformed, hs.Size)
	}
	hb, err := f.ReadAll(hs)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	d := binfile.NewDecoder(hb)
	fieldSize := d.Uint32()
	if d.Err == nil && fieldSize != n8 {
		return nil, fmt.Errorf("%w: field elements are %d bytes, want %d", ErrWrongField, fieldSize, n8)
	}
	prime := d.Bytes(n8)
	nWitness := d.Uint32()
	if d.Err != nil {
		return nil, fmt.Errorf("%w: header: %w", ErrMalformed, d.Err)
	}
	if d.Remaining() != 0 {
		return nil, fmt.Errorf("%w: header section has %d trailing bytes", ErrMalformed, d.Remaining())
	}
	if !bytes.Equal(prime, binfile.LittleEndian(fr.Modulus(), n8)) {
		return nil, ErrWrongField
	}
	if nWitness == 0 {
		return nil, fmt.Errorf("%w: witness has no values", ErrMalformed)
	}
	vs, err := f.SectionOfSize(sectionValues, int64(nWitness)*n8)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make([]fr.Element, nWitness)
	err = f.ForEachRecord(vs, n8, func(first int, batch []byte) error {
		for i := 0; i < len(batch)/n8; i++ {
			e, err := fr.LittleEndian.Element((*[n8]byte)(batch[i*n8 : (i+1)*n8]))
			if err != nil {
				return fmt.Errorf("%w: value %d is not below the field modulus", ErrMalformed, first+i)
			}
			out[first+i] = e
		}
		return ctx.Err()
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ReadFile reads a .wtns file from disk.
func ReadFile(ctx context.Context, path string) ([]fr.Element, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, err
	}
	w, err := Read(ctx, fh, st.Size())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return w, nil
}

// Write writes witness as a version 2 .wtns file, as circom's generators do.
func Write(w io.Writer, witness []fr.Element) error {
	if len(witness) == 0 || uint64(len(witness)) > 1<<32-1 {
		return fmt.Errorf("wtns: cannot write a witness of %d values", len(witness))
	}
	bw := bufio.NewWriter(w)
	if err := binfile.WriteHeader(bw, "wtns", 2, 2); err != nil {
		return err
	}
	if err := binfile.WriteSectionHeader(bw, sectionHeader, 4+n8+4); err != nil {
		return err
	}
	var u4 [4]byte
	putU32(u4[:], n8)
	bw.Write(u4[:])
	bw.Write(binfile.LittleEndian(fr.Modulus(), n8))
	putU32(u4[:], uint32(len(witness)))
	bw.Write(u4[:])
	if err := binfile.WriteSectionHeader(bw, sectionValues, uint64(len(witness))*n8); err != nil {
		return err
	}
	var b [n8]byte
	for i := range witness {
		fr.LittleEndian.PutElement(&b, witness[i])
		if _, err := bw.Write(b[:]); err != nil {
			return err
		}
	}
	return bw.Flush()
}

func putU32(b []byte, v uint32) {
	b[0], b[1], b[2], b[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
}
