package groth16

import (
	"context"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	"math/bits"

	"github.com/consensys/gnark-crypto/ecc/bn254"
	"github.com/consensys/gnark-crypto/ecc/bn254/fr"
	"github.com/consensys/gnark-crypto/parallel"

	"github.com/openpassport/prover-fleet/shared/groth16/r1cs"
	"github.com/openpassport/prover-fleet/shared/groth16/zkey"
)

// DevSetupWarning is printed by cmd/zkeygen and belongs in every place a
// development key is described.
const DevSetupWarning = "DEVELOPMENT KEY: the toxic waste (tau, alpha, beta, gamma, delta) is derived from the seed; " +
	"anyone who knows the seed can forge proofs for this circuit. Never use it in production."

// setupChunk is how many scalars of a fixed-base batch (setupmul.go) share
// one field inversion per window.
const setupChunk = 512

// ErrCircuitTooLarge means the circuit needs a larger domain than supported.
var ErrCircuitTooLarge = errors.New("groth16: circuit too large")

// DevSetup makes a Groth16 proving key and its verifying key for sys, with
// every secret derived deterministically from seed.
//
// DEVELOPMENT ONLY: see DevSetupWarning. Anyone with the seed can forge
// proofs. Production keys come from a ceremony (snarkjs powers of tau and
// zkey contributions).
//
// The key is laid out exactly as snarkjs's "groth16 setup" (zkey_new.js)
// lays one out, so snarkjs and rapidsnark prove with it: the domain is the
// smallest power of two above constraints+nPublic, nPublic+1 extra
// constraints "wire_i · 0 = 0" put every public wire (and wire 0) into A,
// coefficients are listed per constraint (A terms then B terms, extras
// last), and H is the odd-index Lagrange basis of the doubled domain over
// delta. Only the MPC transcript (section 10) differs: it records no
// contributions.
func DevSetup(ctx context.Context, sys *r1cs.System, seed []byte) (*zkey.Key, *VerifyingKey, error) {
	nVars, nPub, nCons := int(sys.NWires), sys.NPublic(), len(sys.Constraints)
	if nVars < nPub+1 {
		return nil, nil, fmt.Errorf("groth16: %d wires cannot hold %d public signals", nVars, nPub)
	}
	// snarkjs: cirPower = log2(nConstraints + nPubInputs + nOutputs) + 1,
	// log2 being the index of the highest set bit (0 for 0).
	power := 1
	if m := uint64(nCons + nPub); m > 0 {
		power = bits.Len64(m) // floor(log2 m) + 1
	}
	if power > 27 {
		return nil, nil, fmt.Errorf("%w: %d constraints need a 2^%d domain, the maximum is 2^27", ErrCircuitTooLarge, nCons, power)
	}
	n := 1 << power

	tau, alpha, beta, gamma, delta, err := toxicWaste(seed, uint64(n))
	if err != nil {
		return nil, nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}

	// Lagrange basis of the n domain at tau, for the rows in use.
	omega, err := fr.Generator(uint64(n))
	if err != nil {
		return nil, nil, err
	}
	lag := lagrangeAt(tau, omega, n, nCons+nPub+1, 0, 1)

	// u_i(tau), v_i(tau), w_i(tau) per wire, and the coefficient list.
	u := make([]fr.Element, nVars)
	v := make([]fr.Element, nVars)
	w := make([]fr.Element, nVars)
	k := &zkey.Key{}
	nCoefs := nPub + 1
	for i := range sys.Constraints {
		nCoefs += len(sys.Constraints[i].A) + len(sys.Constraints[i].B)
	}
	k.Coefs = make([]zkey.Coef, 0, nCoefs)
	var t fr.Element
	for ci := range sys.Constraints {
		con := &sys.Constraints[ci]
		for _, term := range con.A {
			t.Mul(&term.Coeff, &lag[ci])
			u[term.Wire].Add(&u[term.Wire], &t)
			k.Coefs = append(k.Coefs, zkey.Coef{Matrix: zkey.MatrixA, Constraint: uint32(ci), Signal: term.Wire, Value: term.Coeff})
		}
		for _, term := range con.B {
			t.Mul(&term.Coeff, &lag[ci])
			v[term.Wire].Add(&v[term.Wire], &t)
			k.Coefs = append(k.Coefs, zkey.Coef{Matrix: zkey.MatrixB, Constraint: uint32(ci), Signal: term.Wire, Value: term.Coeff})
		}
		for _, term := range con.C {
			t.Mul(&term.Coeff, &lag[ci])
			w[term.Wire].Add(&w[term.Wire], &t)
		}
	}
	var one fr.Element
	one.SetOne()
	for s := 0; s <= nPub; s++ {
		u[s].Add(&u[s], &lag[nCons+s])
		k.Coefs = append(k.Coefs, zkey.Coef{Matrix: zkey.MatrixA, Constraint: uint32(nCons + s), Signal: uint32(s), Value: one})
	}

	// IC_i = (beta·u_i + alpha·v_i + w_i)/gamma for public wires,
	// C_i  = (beta·u_i + alpha·v_i + w_i)/delta for the others.
	var gammaInv, deltaInv fr.Element
	gammaInv.Inverse(&gamma)
	deltaInv.Inverse(&delta)
	lin := make([]fr.Element, nVars)
	parallel.Execute(nVars, func(lo, hi int) {
		var x fr.Element
		for i := lo; i < hi; i++ {
			lin[i].Mul(&beta, &u[i])
			x.Mul(&alpha, &v[i])
			lin[i].Add(&lin[i], &x).Add(&lin[i], &w[i])
			if i <= nPub {
				lin[i].Mul(&lin[i], &gammaInv)
			} else {
				lin[i].Mul(&lin[i], &deltaInv)
			}
		}
	})
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}

	// Fixed-base products, one table per group: A = u·G1, B1 = v·G1,
	// B2 = v·G2, IC/C = lin·G1, H = h·G1. The scalars are computed as late
	// and dropped as early as the order allows (the peak memory at 2^22).
	_, _, g1, g2 := bn254.Generators()
	t1 := newSetupTableG1(&g1, 3*nVars+n)
	k.NVars, k.NPublic, k.DomainSize = uint32(nVars), uint32(nPub), uint32(n)
	k.A = make([]bn254.G1Affine, nVars)
	t1.mul(u, k.A)
	k.B1 = make([]bn254.G1Affine, nVars)
	t1.mul(v, k.B1)
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	k.B2 = make([]bn254.G2Affine, nVars)
	newSetupTableG2(&g2, nVars).mul(v, k.B2)
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	linPts := make([]bn254.G1Affine, nVars)
	t1.mul(lin, linPts)
	k.IC = linPts[: nPub+1 : nPub+1]
	k.C = linPts[nPub+1:]

	// H_j = L_{2j+1}(tau)/delta over the 2n domain.
	omega2, err := fr.Generator(uint64(2 * n))
	if err != nil {
		return nil, nil, err
	}
	h := lagrangeAt(tau, omega2, 2*n, n, 1, 2)
	parallel.Execute(n, func(lo, hi int) {
		for j := lo; j < hi; j++ {
			h[j].Mul(&h[j], &deltaInv)
		}
	})
	k.H = make([]bn254.G1Affine, n)
	t1.mul(h, k.H)
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	small1 := make([]bn254.G1Affine, 3)
	t1.mul([]fr.Element{alpha, beta, delta}, small1)
	k.Alpha1, k.Beta1, k.Delta1 = small1[0], small1[1], small1[2]
	small2 := make([]bn254.G2Affine, 3)
	newSetupTableG2(&g2, 3).mul([]fr.Element{beta, gamma, delta}, small2)
	k.Beta2, k.Gamma2, k.Delta2 = small2[0], small2[1], small2[2]

	vk, err := NewVerifyingKey(k.Alpha1, k.Beta2, k.Gamma2, k.Delta2, k.IC)
	if err != nil {
		return nil, nil, err
	}
	return k, vk, nil
}

// toxicWaste derives the five setup secrets from seed: each is SHA-512 of a
// domain-separation tag, its name, a counter and the seed, reduced mod r
// (bias below 2^-250), retried until non-zero and, for tau, outside the 2n
// domain (so Lagrange denominators never vanish).
func toxicWaste(seed []byte, n uint64) (tau, alpha, beta, gamma, delta fr.Element, err error) {
	derive := func(name string, ok func(*fr.Element) bool) (fr.Element, error) {
		for ctr := uint32(0); ctr < 1000; ctr++ {
			hsh := sha512.New()
			hsh.Write([]byte("prover-fleet groth16 dev setup v1\x00"))
			hsh.Write([]byte(name))
			var c [5]byte
			binary.BigEndian.PutUint32(c[1:], ctr)
			hsh.Write(c[:])
			hsh.Write(seed)
			x := new(big.Int).SetBytes(hsh.Sum(nil))
			x.Mod(x, fr.Modulus())
			var e fr.Element
			e.SetBigInt(x)
			if !e.IsZero() && ok(&e) {
				return e, nil
			}
		}
		return fr.Element{}, fmt.Errorf("groth16: could not derive %s from the seed", name)
	}
	anyValue := func(*fr.Element) bool { return true }
	notInDomain := func(e *fr.Element) bool {
		var p fr.Element
		p.Exp(*e, new(big.Int).SetUint64(2*n))
		return !p.IsOne()
	}
	if tau, err = derive("tau", notInDomain); err != nil {
		return
	}
	if alpha, err = derive("alpha", anyValue); err != nil {
		return
	}
	if beta, err = derive("beta", anyValue); err != nil {
		return
	}
	if gamma, err = derive("gamma", anyValue); err != nil {
		return
	}
	delta, err = derive("delta", anyValue)
	return
}

// lagrangeAt returns L_k(tau) over the size-m domain generated by omega for
// k = first, first+step, ... (count values):
// L_k(tau) = (tau^m − 1)/m · omega^k / (tau − omega^k).
func lagrangeAt(tau, omega fr.Element, m, count, first, step int) []fr.Element {
	var zm, mInv fr.Element
	zm.Exp(tau, big.NewInt(int64(m)))
	zm.Sub(&zm, new(fr.Element).SetOne())
	mInv.SetUint64(uint64(m))
	mInv.Inverse(&mInv)
	zm.Mul(&zm, &mInv)

	num := make([]fr.Element, count) // omega^k
	den := make([]fr.Element, count) // tau − omega^k
	var stepPow fr.Element
	stepPow.Exp(omega, big.NewInt(int64(step)))
	parallel.Execute(count, func(lo, hi int) {
		var wk fr.Element
		wk.Exp(omega, big.NewInt(int64(first+lo*step)))
		for i := lo; i < hi; i++ {
			num[i] = wk
			den[i].Sub(&tau, &wk)
			wk.Mul(&wk, &stepPow)
		}
	})
	den = fr.BatchInvert(den)
	parallel.Execute(count, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			num[i].Mul(&num[i], &den[i]).Mul(&num[i], &zm)
		}
	})
	return num
}
