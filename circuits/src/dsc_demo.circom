pragma circom 2.1.6;

// dsc_demo: stands in for the dsc family (dsc_<hash>_<sig>_<key> and dsc_id variants).
//
// Proves that a Document Signing Certificate (an RSA-4096 public key as 35 limbs of 120
// bits, the layout the real circuits use, plus its validity period) is a leaf of the
// certificate registry's Poseidon Merkle tree of depth `depth`, and that the certificate
// is valid on `currentDate` (notBefore <= currentDate < notAfter). Every limb is range
// checked. The leaf is Poseidon(keyHash, notBefore, notAfter), keyHash a Poseidon chain
// over the limbs packed two per field element. Outputs the registry `root` the leaf belongs
// to (the verifier compares it with the published registry root) and the `dscLeaf`.
//
// Public signals (snarkjs order): root, dscLeaf, currentDate.

include "lib.circom";

template DscDemo(depth, n, k) {
    // private
    signal input dscPubkey[k];      // modulus limbs, little endian, each < 2^n
    signal input notBefore;         // YYYYMMDD
    signal input notAfter;          // YYYYMMDD
    signal input leafIndex;         // position in the registry tree, < 2^depth
    signal input pathElements[depth];
    // public
    signal input currentDate;       // YYYYMMDD

    signal output root;
    signal output dscLeaf;

    for (var i = 0; i < k; i++) {
        RangeCheck(n)(dscPubkey[i]);
    }
    RangeCheck(32)(notBefore);
    RangeCheck(32)(notAfter);
    RangeCheck(32)(currentDate);

    signal started <== LessEqThan(32)([notBefore, currentDate]);
    started === 1;
    signal notExpired <== LessThan(32)([currentDate, notAfter]);
    notExpired === 1;

    // Two 120-bit limbs fit in one field element (240 < 253 bits): pack, then hash.
    var nPacked = (k + 1) \ 2;
    signal packed[nPacked];
    for (var i = 0; i < nPacked; i++) {
        packed[i] <== (2 * i + 1 < k) ? dscPubkey[2 * i] + dscPubkey[2 * i + 1] * (1 << n) : dscPubkey[2 * i];
    }
    signal keyHash <== PoseidonChain(nPacked)(packed);
    dscLeaf <== Poseidon(3)([keyHash, notBefore, notAfter]);

    // Merkle inclusion: bit i of leafIndex says whether the node at level i is a right child.
    signal isRight[depth] <== Num2Bits(depth)(leafIndex);
    signal node[depth + 1];
    signal swap[depth];
    node[0] <== dscLeaf;
    for (var i = 0; i < depth; i++) {
        swap[i] <== isRight[i] * (pathElements[i] - node[i]);
        node[i + 1] <== Poseidon(2)([node[i] + swap[i], pathElements[i] - swap[i]]);
    }
    root <== node[depth];
}

component main {public [currentDate]} = DscDemo(20, 120, 35);
