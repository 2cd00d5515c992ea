pragma circom 2.1.6;

// register_demo: stands in for the register family (register_<hashes>_<sig> and the
// _id/_aadhaar/_kyc variants) in size and input shape; it does not verify a passport
// signature.
//
// The passport's data groups (`dataGroups`, bytes) are range checked, packed 31 bytes
// (little endian) into one field element, and the packed elements are absorbed one at a
// time into a Poseidon(2) hash chain seeded with the byte length. The holder binds the
// resulting document digest to a private `secret`:
//   commitment = Poseidon(secret, attestationId, digest)   (goes into the identity tree)
//   nullifier  = Poseidon(digest, attestationId)           (one registration per document)
// `attestationId` must be 1 (passport), 2 (EU ID card) or 3 (Aadhaar).
//
// SIZE: `main` at the bottom is the one place to change. RegisterDemo(nChunks) takes
// nChunks * 31 data-group bytes and has about 488 * nChunks + 500 constraints
// (8 per byte for the range check, ~240 per Poseidon(2)). Keep the Groth16 domain
// (constraints + public signals + 1) <= 2^17 = 131072, i.e. nChunks <= ~267.
// The input generator (circuits/scripts/gen-inputs.js) reads nChunks from this file.
//
// Public signals (snarkjs order): nullifier, commitment, attestationId.

include "lib.circom";

template RegisterDemo(nChunks) {
    var W = 31; // bytes per field element (31 * 8 = 248 bits < the bn128 field)
    var nBytes = nChunks * W;

    // private
    signal input dataGroups[nBytes];
    signal input secret;
    // public
    signal input attestationId;

    signal output nullifier;
    signal output commitment;

    // attestationId in {1, 2, 3}
    signal t <== (attestationId - 1) * (attestationId - 2);
    t * (attestationId - 3) === 0;

    for (var i = 0; i < nBytes; i++) {
        RangeCheck(8)(dataGroups[i]);
    }

    signal chain[nChunks + 1];
    chain[0] <== nBytes;
    for (var c = 0; c < nChunks; c++) {
        var packed = 0;
        for (var j = 0; j < W; j++) {
            packed += dataGroups[c * W + j] * (256 ** j);
        }
        chain[c + 1] <== Poseidon(2)([chain[c], packed]);
    }

    nullifier <== Poseidon(2)([chain[nChunks], attestationId]);
    commitment <== Poseidon(3)([secret, attestationId, chain[nChunks]]);
}

component main {public [attestationId]} = RegisterDemo(205);
