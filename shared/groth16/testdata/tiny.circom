pragma circom 2.0.0;

// Tiny circuit for the groth16 package tests.
// y = (p[n-1] + 3) * b + a where p[0] = a*a and p[i] = p[i-1]*a + i.
// a is private, b is public, y is the public output.
template Tiny(n) {
    signal input a;
    signal input b;
    signal output y;
    signal p[n];
    p[0] <== a * a;
    for (var i = 1; i < n; i++) {
        p[i] <== p[i-1] * a + i;
    }
    y <== (p[n-1] + 3) * b + a;
}

component main {public [b]} = Tiny(4);
