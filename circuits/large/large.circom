pragma circom 2.1.6;

// Templates of the large demo circuits (circuits/README.md, "Large circuits"). A circuit
// is one instance of LargeDoc, written by circuits/scripts/gen-large.js with parameters
// that bring it just under a power of two constraints. Written for this project; only
// circomlib (Poseidon, bit decomposition, comparators, Baby Jubjub arithmetic) is used as
// a library.
//
// Shape (the register_demo pattern at real size, plus a signature):
//   * hashing: dataGroups bytes are range checked, packed 31 per field element and absorbed
//     into a Poseidon(2) chain (the document digest);
//   * a signature over parts of those bytes by the signer's key, either
//       RSA-shaped: s^65537 mod N == the message limbs, by big-integer modular
//       multiplications (sigKind 0), or
//       Schnorr/EdDSA-shaped on Baby Jubjub: S·B8 == R + e·A with e a packed chunk of the
//       data (sigKind 1, scalar multiplications from circomlib);
//   * a Merkle path: leaf = Poseidon(keyHash, notBefore, notAfter) is in a Poseidon tree of
//     the given depth (the registry of signer keys);
//   * comparisons: notBefore <= currentDate < notAfter.
//
// These are stand-ins: they have the size and the kind of work of the app's circuits, not
// their meaning, and are not sound signature verifiers (e.g. RSA padding is not checked and
// the intermediate remainders are not checked to be below the modulus).

include "circomlib/circuits/poseidon.circom";
include "circomlib/circuits/bitify.circom";
include "circomlib/circuits/comparators.circom";
include "circomlib/circuits/babyjub.circom";
include "circomlib/circuits/escalarmulany.circom";
include "circomlib/circuits/escalarmulfix.circom";
include "circomlib/circuits/binsum.circom"; // nbits(x): the number of bits of x
include "lib.circom";

// Largest k BigMulQR supports (limbs of a big integer).
function maxLimbs() { return 64; }

// BigMulQR(n, k, a, b, m): witness hint for a·b = q·m + r with a, b, m given as k limbs of
// n bits (little endian). Returns [q, r] as 2k and k limbs: schoolbook product, then binary
// long division. A quotient longer than k limbs (a·b >= m·2^(n·k), only when a or b is not
// below m) makes BigMulMod's constraints fail, as they should.
function BigMulQR(n, k, a, b, m) {
    var out[2][128];
    var prod[128];
    var mm[65];
    var rem[65];
    var mask = (1 << n) - 1;
    for (var i = 0; i < 2 * k; i++) {
        prod[i] = 0;
        out[0][i] = 0;
    }
    for (var i = 0; i < k; i++) {
        for (var j = 0; j < k; j++) {
            prod[i + j] += a[i] * b[j];
        }
        mm[i] = m[i];
    }
    mm[k] = 0;
    var carry = 0;
    for (var i = 0; i < 2 * k; i++) {
        var v = prod[i] + carry;
        prod[i] = v & mask;
        carry = v >> n;
    }
    for (var j = 0; j <= k; j++) {
        rem[j] = 0;
    }
    for (var li = 2 * k - 1; li >= 0; li--) {
        for (var bi = n - 1; bi >= 0; bi--) {
            // rem = 2·rem + the next bit of the product
            var c = (prod[li] >> bi) & 1;
            for (var j = 0; j <= k; j++) {
                var v = rem[j] * 2 + c;
                rem[j] = v & mask;
                c = v >> n;
            }
            // rem >= m ?
            var ge = 1;
            var done = 0;
            for (var j = k; j >= 0; j--) {
                if (done == 0) {
                    if (rem[j] > mm[j]) {
                        done = 1;
                    } else if (rem[j] < mm[j]) {
                        ge = 0;
                        done = 1;
                    }
                }
            }
            if (ge == 1) {
                var borrow = 0;
                for (var j = 0; j <= k; j++) {
                    if (rem[j] >= mm[j] + borrow) {
                        rem[j] = rem[j] - mm[j] - borrow;
                        borrow = 0;
                    } else {
                        rem[j] = rem[j] + (1 << n) - mm[j] - borrow;
                        borrow = 1;
                    }
                }
                out[0][li] += 1 << bi;
            }
        }
    }
    for (var j = 0; j < k; j++) {
        out[1][j] = rem[j];
    }
    return out;
}

// BigMulMod(n, k): r = a·b mod m for k-limb numbers (n-bit limbs, little endian).
// Constraints: q and r range checked (2kn), the product identity a(x)b(x) = t(x) + q(x)m(x)
// + r(x) at 2k-1 points (2(2k-1)), and t(2^n) = 0 by range-checked carries
// ((2k-2)(n + carryBits)).
template BigMulMod(n, k) {
    signal input a[k];
    signal input b[k];
    signal input m[k];
    signal output r[k];

    assert(k <= maxLimbs());
    assert(2 * n + 1 + nbits(2 * k) < 252);
    var qr[2][128] = BigMulQR(n, k, a, b, m);
    signal q[k];
    for (var i = 0; i < k; i++) {
        q[i] <-- qr[0][i];
        r[i] <-- qr[1][i];
        RangeCheck(n)(q[i]);
        RangeCheck(n)(r[i]);
    }

    // t = a·b - q·m - r as polynomials in x = 2^n (coefficients below 2k·2^(2n) in size).
    var nt = 2 * k - 1;
    signal t[nt];
    for (var j = 0; j < nt; j++) {
        var s = 0;
        for (var i = 0; i < k; i++) {
            if (j - i >= 0 && j - i < k) {
                s += a[i] * b[j - i] - q[i] * m[j - i];
            }
        }
        if (j < k) {
            s -= r[j];
        }
        t[j] <-- s;
    }
    // The identity holds at nt points, so it holds as polynomials.
    signal qm[nt];
    for (var x = 0; x < nt; x++) {
        var ax = 0; var bx = 0; var qx = 0; var mx = 0; var rx = 0; var tx = 0;
        var p = 1;
        for (var i = 0; i < nt; i++) {
            if (i < k) {
                ax += a[i] * p; bx += b[i] * p; qx += q[i] * p; mx += m[i] * p; rx += r[i] * p;
            }
            tx += t[i] * p;
            p *= x;
        }
        qm[x] <== qx * mx;
        ax * bx === tx + qm[x] + rx;
    }
    // t(2^n) = 0: carries c[j] = (t[j] + c[j-1]) / 2^n are whole and small, the last one
    // cancels the top coefficient.
    var cb = n + nbits(2 * k) + 2; // |c| < 2^(cb-1)
    var tv[128];
    for (var j = 0; j < nt; j++) {
        tv[j] = t[j];
    }
    var cv[128] = Carries(n, nt, tv);
    signal c[nt - 1];
    for (var j = 0; j < nt - 1; j++) {
        c[j] <-- cv[j];
        if (j == 0) {
            t[j] === c[j] * (1 << n);
        } else {
            t[j] + c[j - 1] === c[j] * (1 << n);
        }
        RangeCheck(cb)(c[j] + (1 << (cb - 1)));
    }
    t[nt - 1] + c[nt - 2] === 0;
}

// Carries(n, nt, t): c[j] = (t[j] + c[j-1]) / 2^n for signed t (exact when t(2^n) = 0).
function Carries(n, nt, t) {
    var c[128];
    var prev = 0;
    for (var j = 0; j < nt - 1; j++) {
        var v = t[j] + prev;
        if (v < 0) {
            c[j] = -((-v) \ (1 << n));
        } else {
            c[j] = v \ (1 << n);
        }
        prev = c[j];
    }
    return c;
}

// RsaShaped(n, k): s^65537 mod modulus == message, all as k limbs of n bits
// (16 modular squarings and one multiplication).
template RsaShaped(n, k) {
    signal input s[k];
    signal input modulus[k];
    signal input message[k];

    component sq[16];
    for (var i = 0; i < 16; i++) {
        sq[i] = BigMulMod(n, k);
        for (var j = 0; j < k; j++) {
            if (i == 0) {
                sq[i].a[j] <== s[j];
                sq[i].b[j] <== s[j];
            } else {
                sq[i].a[j] <== sq[i - 1].r[j];
                sq[i].b[j] <== sq[i - 1].r[j];
            }
            sq[i].m[j] <== modulus[j];
        }
    }
    component last = BigMulMod(n, k);
    for (var j = 0; j < k; j++) {
        last.a[j] <== sq[15].r[j];
        last.b[j] <== s[j];
        last.m[j] <== modulus[j];
    }
    for (var j = 0; j < k; j++) {
        last.r[j] === message[j];
    }
}

// SchnorrShaped(): S·B8 == R + e·A on Baby Jubjub (A, R points; e, S scalars below 2^253).
template SchnorrShaped() {
    signal input A[2];
    signal input R[2];
    signal input S;
    signal input e;

    var BASE8[2] = [
        5299619240641551281634865583518297030282874472190772894086521144482721001553,
        16950150798460657717958625567821834550301663161624707787222815936182638968203
    ];
    signal sBits[253] <== Num2Bits(253)(S);
    signal left[2] <== EscalarMulFix(253, BASE8)(sBits);
    signal eBits[254] <== Num2Bits(254)(e);
    signal eA[2] <== EscalarMulAny(254)(eBits, A);
    component add = BabyAdd();
    add.x1 <== R[0];
    add.y1 <== R[1];
    add.x2 <== eA[0];
    add.y2 <== eA[1];
    left[0] === add.xout;
    left[1] === add.yout;
}

// LargeDoc: see the top of this file. sigKind 0: nSigs RSA-shaped signatures by one key
// of k limbs of n bits (n a multiple of 8), signature i over the n/8·k data bytes from byte
// i·(n/8)·k; sigKind 1: nSigs Schnorr-shaped signatures by one Baby Jubjub key, signature
// i over packed chunk i (n and k unused).
// Public signals (snarkjs order): root, nullifier, commitment, currentDate.
template LargeDoc(nChunks, depth, sigKind, nSigs, n, k) {
    var W = 31;
    var nBytes = nChunks * W;
    var nKey = sigKind == 0 ? k : 2;
    var nSigLimbs = sigKind == 0 ? k : 3; // RSA: s; Schnorr: Rx, Ry, S

    // private
    signal input dataGroups[nBytes];
    signal input secret;
    signal input signerKey[nKey];           // RSA modulus limbs, or Baby Jubjub point A
    signal input signatures[nSigs][nSigLimbs];
    signal input notBefore;                 // YYYYMMDD
    signal input notAfter;                  // YYYYMMDD
    signal input leafIndex;                 // < 2^depth
    signal input pathElements[depth];
    // public
    signal input currentDate;               // YYYYMMDD

    signal output root;
    signal output nullifier;
    signal output commitment;

    // Hashing: range check, pack, chain.
    for (var i = 0; i < nBytes; i++) {
        RangeCheck(8)(dataGroups[i]);
    }
    signal packed[nChunks];
    signal chain[nChunks + 1];
    chain[0] <== nBytes;
    for (var c = 0; c < nChunks; c++) {
        var p = 0;
        for (var j = 0; j < W; j++) {
            p += dataGroups[c * W + j] * (256 ** j);
        }
        packed[c] <== p;
        chain[c + 1] <== Poseidon(2)([chain[c], packed[c]]);
    }

    // Signatures.
    signal keyHash;
    if (sigKind == 0) {
        var B = n \ 8;
        assert(B * 8 == n);
        assert(nSigs * k * B <= nBytes);
        for (var i = 0; i < k; i++) {
            RangeCheck(n)(signerKey[i]);
        }
        component rsa[nSigs];
        for (var s = 0; s < nSigs; s++) {
            rsa[s] = RsaShaped(n, k);
            for (var i = 0; i < k; i++) {
                RangeCheck(n)(signatures[s][i]);
                rsa[s].s[i] <== signatures[s][i];
                rsa[s].modulus[i] <== signerKey[i];
                var msg = 0;
                for (var j = 0; j < B; j++) {
                    msg += dataGroups[(s * k + i) * B + j] * (256 ** j);
                }
                rsa[s].message[i] <== msg;
            }
        }
        // Two limbs per field element when they fit, then a Poseidon chain.
        var per = 2 * n < 253 ? 2 : 1;
        var nPacked = (k + per - 1) \ per;
        signal keyPacked[nPacked];
        for (var i = 0; i < nPacked; i++) {
            if (per == 2 && 2 * i + 1 < k) {
                keyPacked[i] <== signerKey[2 * i] + signerKey[2 * i + 1] * (1 << n);
            } else {
                keyPacked[i] <== signerKey[per * i];
            }
        }
        keyHash <== PoseidonChain(nPacked)(keyPacked);
    } else {
        assert(nSigs <= nChunks);
        BabyCheck()(signerKey[0], signerKey[1]);
        component sch[nSigs];
        for (var s = 0; s < nSigs; s++) {
            sch[s] = SchnorrShaped();
            sch[s].A[0] <== signerKey[0];
            sch[s].A[1] <== signerKey[1];
            sch[s].R[0] <== signatures[s][0];
            sch[s].R[1] <== signatures[s][1];
            sch[s].S <== signatures[s][2];
            sch[s].e <== packed[s];
        }
        keyHash <== Poseidon(2)([signerKey[0], signerKey[1]]);
    }

    // Comparisons: the signer's key is valid today.
    RangeCheck(32)(notBefore);
    RangeCheck(32)(notAfter);
    RangeCheck(32)(currentDate);
    signal started <== LessEqThan(32)([notBefore, currentDate]);
    started === 1;
    signal notExpired <== LessThan(32)([currentDate, notAfter]);
    notExpired === 1;

    // Merkle path of the key's leaf.
    signal leaf <== Poseidon(3)([keyHash, notBefore, notAfter]);
    signal isRight[depth] <== Num2Bits(depth)(leafIndex);
    signal node[depth + 1];
    signal swap[depth];
    node[0] <== leaf;
    for (var i = 0; i < depth; i++) {
        swap[i] <== isRight[i] * (pathElements[i] - node[i]);
        node[i + 1] <== Poseidon(2)([node[i] + swap[i], pathElements[i] - swap[i]]);
    }
    root <== node[depth];

    nullifier <== Poseidon(2)([chain[nChunks], keyHash]);
    commitment <== Poseidon(2)([secret, chain[nChunks]]);
}
