package zkey

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"unsafe"

	"github.com/consensys/gnark-crypto/ecc/bn254"
)

// TestLayoutMatchesGnark pins what Parse relies on to use the file's bytes
// as points: gnark-crypto's affine points are the file's records, field
// elements four 64-bit limbs.
func TestLayoutMatchesGnark(t *testing.T) {
	t.Parallel()
	if unsafe.Sizeof(bn254.G1Affine{}) != g1Size || unsafe.Sizeof(bn254.G2Affine{}) != g2Size {
		t.Fatalf("G1Affine is %d bytes, G2Affine %d; the file's points are %d and %d",
			unsafe.Sizeof(bn254.G1Affine{}), unsafe.Sizeof(bn254.G2Affine{}), g1Size, g2Size)
	}
	var p bn254.G2Affine
	if unsafe.Offsetof(p.X) != 0 || unsafe.Offsetof(p.Y) != 2*n8 || unsafe.Offsetof(p.X.A1) != n8 {
		t.Fatal("G2Affine's fields are not x.a0, x.a1, y.a0, y.a1")
	}
}

func TestParseMatchesRead(t *testing.T) {
	t.Parallel()
	for _, path := range []string{snarkjsKey, devKey} {
		t.Run(path, func(t *testing.T) {
			t.Parallel()
			b := readTestdata(t, path)
			k, err := Read(t.Context(), bytes.NewReader(b), int64(len(b)))
			if err != nil {
				t.Fatal(err)
			}
			v, err := Parse(b)
			if err != nil {
				t.Fatal(err)
			}
			if v.Header != k.Header || !reflect.DeepEqual(v.IC, k.IC) {
				t.Fatal("header or IC differ from Read's")
			}
			for _, s := range []struct {
				name      string
				got, want any
			}{{"A", v.A, k.A}, {"B1", v.B1, k.B1}, {"B2", v.B2, k.B2}, {"C", v.C, k.C}, {"H", v.H, k.H}} {
				if !reflect.DeepEqual(s.got, s.want) {
					t.Errorf("section %s differs from Read's", s.name)
				}
			}
			if !bytes.Equal(v.Coefs, EncodeCoefs(k.Coefs)) {
				t.Error("coefficient records differ from Read's, encoded again")
			}
			for i := range len(v.Coefs) / CoefRecordSize {
				m, c, s, _, err := v.Header.CheckCoef(i, v.Coefs[i*CoefRecordSize:(i+1)*CoefRecordSize])
				if err != nil || m != k.Coefs[i].Matrix || c != k.Coefs[i].Constraint || s != k.Coefs[i].Signal {
					t.Fatalf("coefficient %d: %d %d %d %v, Read has %+v", i, m, c, s, err, k.Coefs[i])
				}
			}
			if v.InPlace != inPlaceOK {
				t.Fatalf("InPlace = %v on this machine", v.InPlace)
			}
			if v.InPlace && unsafe.Pointer(&v.H[0]) != unsafe.Pointer(&b[sections(t, b)[secH]]) {
				t.Fatal("H is not the file's bytes")
			}
			if err := v.CheckPoints(t.Context()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestParseRejects runs TestReadRejects' corruptions through Parse and
// the checks it leaves to its callers (CheckPoints, CheckCoef): together
// they refuse everything Read refuses, with the same errors.
func TestParseRejects(t *testing.T) {
	t.Parallel()
	for _, tt := range rejectCases(t) {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v, err := Parse(tt.data)
			if err == nil {
				err = v.CheckPoints(t.Context())
			}
			if err == nil {
				for i := range len(v.Coefs) / CoefRecordSize {
					if _, _, _, _, err = v.Header.CheckCoef(i, v.Coefs[i*CoefRecordSize:(i+1)*CoefRecordSize]); err != nil {
						break
					}
				}
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}
