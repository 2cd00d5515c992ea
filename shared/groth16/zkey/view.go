package zkey

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"runtime"
	"sync/atomic"
	"unsafe"

	"github.com/consensys/gnark-crypto/ecc/bn254"
	"github.com/consensys/gnark-crypto/ecc/bn254/fr"

	"github.com/openpassport/prover-fleet/shared/groth16/internal/mmap"
)

// CoefRecordSize is the size of one coefficient record in section 4:
// matrix, constraint and signal (uint32 each), then the value (32 bytes).
const CoefRecordSize = coefSize

// View is a Groth16 key used in place from the bytes of a whole .zkey file,
// typically a read-only memory mapping of it: nothing of the bulk is copied.
//
// snarkjs stores a base-field coordinate as four little-endian 64-bit limbs
// in Montgomery form, which is exactly gnark-crypto's in-memory fp.Element,
// and a G1 point as x then y (G2: x.a0, x.a1, y.a0, y.a1), exactly
// bn254.G1Affine (G2Affine); the all-zero point at infinity is gnark's
// too. So on little-endian machines that load unaligned words (amd64,
// arm64: the sections of a .zkey are only 4-byte aligned) A, B1, B2, C and
// H are the file's bytes seen as points. Elsewhere they are decoded copies
// (InPlace reports which).
//
// Parse checks the container, the header (header points on the curve and
// in the subgroup, as Read does), and every section's size; it does not
// look at the bulk points (CheckPoints does, reading them all) nor at the
// coefficient records (the prover checks their indices when it indexes
// them).
type View struct {
	Header
	IC []bn254.G1Affine // decoded copy, NPublic+1 points

	A, B1, C, H []bn254.G1Affine
	B2          []bn254.G2Affine

	// Coefs is section 4's records as stored: CoefRecordSize bytes each,
	// see DecodeCoef.
	Coefs []byte
	// InPlace says that the points above alias the bytes given to Parse.
	InPlace bool
}

// inPlaceOK says whether this machine can read the file's points as
// gnark-crypto points directly: little-endian, unaligned loads allowed.
const inPlaceOK = runtime.GOARCH == "amd64" || runtime.GOARCH == "arm64"

// Parse returns a View of the .zkey in b. The view's points and Coefs alias
// b (see View.InPlace), which must stay valid and unchanged while they are
// used.
func Parse(b []byte) (*View, error) {
	v := &View{}
	l, err := locate(bytes.NewReader(b), int64(len(b)), &v.Header)
	if err != nil {
		return nil, err
	}
	bytesOf := func(id uint32) []byte {
		s := l.secs[id]
		return b[s.Offset : s.Offset+s.Size]
	}
	if v.IC, err = readG1s(l.f, l.secs[secIC]); err != nil {
		return nil, fmt.Errorf("section IC: %w", err)
	}
	v.InPlace = inPlaceOK
	v.A = g1sOf(bytesOf(secA))
	v.B1 = g1sOf(bytesOf(secB1))
	v.B2 = g2sOf(bytesOf(secB2))
	v.C = g1sOf(bytesOf(secC))
	v.H = g1sOf(bytesOf(secH))
	v.Coefs = b[l.coefs.Offset : l.coefs.Offset+l.coefs.Size]
	return v, nil
}

func g1sOf(b []byte) []bn254.G1Affine {
	n := len(b) / g1Size
	if n == 0 {
		return nil
	}
	if inPlaceOK {
		return unsafe.Slice((*bn254.G1Affine)(unsafe.Pointer(&b[0])), n)
	}
	out := make([]bn254.G1Affine, n)
	for i := range out {
		decodeG1(&out[i], b[i*g1Size:(i+1)*g1Size]) // checked by CheckPoints
	}
	return out
}

func g2sOf(b []byte) []bn254.G2Affine {
	n := len(b) / g2Size
	if n == 0 {
		return nil
	}
	if inPlaceOK {
		return unsafe.Slice((*bn254.G2Affine)(unsafe.Pointer(&b[0])), n)
	}
	out := make([]bn254.G2Affine, n)
	for i := range out {
		decodeG2(&out[i], b[i*g2Size:(i+1)*g2Size])
	}
	return out
}

// CheckPoints checks that every point of A, B1, B2, C and H has canonical
// coordinates and is on the curve (B2 is not checked for subgroup
// membership, as in Read), reading all of them on every CPU (each goroutine under mmap.Guard, so
// a mapping whose file was truncated gives an error wrapping mmap.ErrFault).
// It returns an error wrapping ErrMalformed that names the first bad point found.
func (v *View) CheckPoints(ctx context.Context) error {
	for _, s := range []struct {
		name string
		g1   []bn254.G1Affine
		g2   []bn254.G2Affine
	}{{"A", v.A, nil}, {"B1", v.B1, nil}, {"B2", nil, v.B2}, {"C", v.C, nil}, {"H", v.H, nil}} {
		if err := ctx.Err(); err != nil {
			return err
		}
		bad := int64(-1)
		check := func(n int, ok func(int) bool) error {
			var first atomic.Int64
			first.Store(-1)
			err := mmap.GuardParallel(runtime.GOMAXPROCS(0), n, func(start, end int) error {
				for i := start; i < end; i++ {
					if !ok(i) {
						first.CompareAndSwap(-1, int64(i))
						return nil
					}
				}
				return nil
			})
			bad = first.Load()
			return err
		}
		var err error
		if s.g2 != nil {
			err = check(len(s.g2), func(i int) bool { return canonicalG2(&s.g2[i]) && s.g2[i].IsOnCurve() })
		} else {
			err = check(len(s.g1), func(i int) bool { return canonicalG1(&s.g1[i]) && s.g1[i].IsOnCurve() })
		}
		if err != nil {
			return err
		}
		if bad >= 0 {
			return fmt.Errorf("%w: section %s: point %d is not canonical or not on the curve", ErrMalformed, s.name, bad)
		}
	}
	return nil
}

func below(z *[4]uint64, m [4]uint64) bool {
	for i := 3; i >= 0; i-- {
		if z[i] != m[i] {
			return z[i] < m[i]
		}
	}
	return false
}

func canonicalG1(p *bn254.G1Affine) bool {
	return below((*[4]uint64)(&p.X), fpModulus()) && below((*[4]uint64)(&p.Y), fpModulus())
}

func canonicalG2(p *bn254.G2Affine) bool {
	m := fpModulus()
	return below((*[4]uint64)(&p.X.A0), m) && below((*[4]uint64)(&p.X.A1), m) &&
		below((*[4]uint64)(&p.Y.A0), m) && below((*[4]uint64)(&p.Y.A1), m)
}

// DecodeCoef reads one coefficient record. raw is the value as stored: the
// limbs of value·R² mod r (R = 2^256), which a Montgomery multiplication by
// a witness value in normal (not Montgomery) form turns into the product in
// Montgomery form. ok is false when raw is not below r.
func DecodeCoef(rec []byte) (matrix, constraint, signal uint32, raw fr.Element, ok bool) {
	_ = rec[CoefRecordSize-1]
	matrix = binary.LittleEndian.Uint32(rec[0:4])
	constraint = binary.LittleEndian.Uint32(rec[4:8])
	signal = binary.LittleEndian.Uint32(rec[8:12])
	ok = limbsFromLE((*[4]uint64)(&raw), rec[12:], frModulus())
	return
}

// EncodeCoefs returns cs as section 4's records (without the count), the
// form View.Coefs has.
func EncodeCoefs(cs []Coef) []byte {
	out := make([]byte, len(cs)*CoefRecordSize)
	rv := rFactor()
	for i := range cs {
		encodeCoef(out[i*CoefRecordSize:(i+1)*CoefRecordSize], &cs[i], &rv)
	}
	return out
}

// rFactor is the element whose value is R: multiplying a Montgomery element
// by it gives the limbs of value·R², the file's form.
func rFactor() fr.Element {
	var r fr.Element
	r.Inverse(&fr.Element{1, 0, 0, 0}) // (R^-1)^-1
	return r
}

func encodeCoef(b []byte, c *Coef, rv *fr.Element) {
	binary.LittleEndian.PutUint32(b[0:], c.Matrix)
	binary.LittleEndian.PutUint32(b[4:], c.Constraint)
	binary.LittleEndian.PutUint32(b[8:], c.Signal)
	var v fr.Element
	v.Mul(&c.Value, rv) // internal form is value*R^2
	putLimbs(b[12:], (*[4]uint64)(&v))
}
