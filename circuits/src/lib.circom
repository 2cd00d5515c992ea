pragma circom 2.1.6;

// Small gadgets shared by the demo circuits. Included from the circuit sources as
// "lib.circom"; circomlib comes from circuits/node_modules via `circom2 -l`.

include "circomlib/circuits/poseidon.circom";
include "circomlib/circuits/bitify.circom";
include "circomlib/circuits/comparators.circom";

// RangeCheck(n): constrains in < 2^n.
template RangeCheck(n) {
    signal input in;
    component bits = Num2Bits(n);
    bits.in <== in;
}

// PoseidonChain(k): hash of k field elements by a sponge-like chain that absorbs two
// elements per Poseidon(3) call, seeded with k (so inputs of different lengths differ):
//   h0 = k;  h(i+1) = Poseidon(h(i), in[2i], in[2i+1])   (a missing last element is 0).
// Only small Poseidon widths on purpose: circom's C++ output for wide Poseidon (16 inputs)
// is ~20 MB per width and takes minutes to compile with g++ -O3.
template PoseidonChain(k) {
    signal input in[k];
    signal output out;

    var steps = (k + 1) \ 2;
    signal h[steps + 1];
    h[0] <== k;
    for (var i = 0; i < steps; i++) {
        var b = (2 * i + 1 < k) ? in[2 * i + 1] : 0;
        h[i + 1] <== Poseidon(3)([h[i], in[2 * i], b]);
    }
    out <== h[steps];
}

// AssertBool: in is 0 or 1.
template AssertBool() {
    signal input in;
    in * (in - 1) === 0;
}
