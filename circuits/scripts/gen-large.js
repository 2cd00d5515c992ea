#!/usr/bin/env node
// gen-large.js — the large demo circuits: their main files and valid inputs.
//
//   node circuits/scripts/gen-large.js list                       names in the catalogue
//   node circuits/scripts/gen-large.js main NAME [--out FILE]     the circuit's main .circom
//   node circuits/scripts/gen-large.js inputs NAME [--seed N] [--bad] [--out FILE]
//   node circuits/scripts/gen-large.js info NAME                  parameters and predicted size (JSON)
//
// NAME is a catalogue name (below) or a JSON object of parameters:
//   '{"sig":"rsa","n":32,"k":4,"bits":120,"nSigs":1,"depth":3,"nChunks":8}'
// LARGE_CATALOGUE=FILE replaces the catalogue with FILE's JSON object of the same shape
// (the tests build tiny circuits this way).
//
// Every circuit is an instance of LargeDoc in circuits/large/large.circom: hashing of
// nChunks·31 data bytes, nSigs signatures by one signer key (RSA-shaped: s^65537 mod N over
// k limbs of n bits, N of `bits` bits; or Schnorr-shaped on Baby Jubjub), a Merkle path of
// `depth` and date comparisons. A catalogue entry gives everything but nChunks, which is
// chosen from the constraint model below so that constraints + public signals + 1 fill the
// 2^power Groth16 domain as closely as the 488-constraint chunk step allows, never above it.
// The build (scripts/build-large-circuits.sh) checks the compiled count against the model.
//
// Inputs are deterministic per seed. The signatures are made here: RSA-shaped ones by
// picking s below a random modulus N and writing m = s^65537 mod N into the data bytes
// (no private key is needed for that shape), Schnorr-shaped ones with a random key d:
// A = d·B8, R = r·B8, S = r + e·d mod l. With --bad one signed byte is changed, so the
// witness generator must reject the input. Needs only node (no packages).
'use strict';

const fs = require('fs');

// The catalogue. power: the Groth16 domain 2^power the circuit fills.
const BUILTIN = {
  // register family: an RSA-4096-shaped passport signature (35 limbs of 120 bits), depth-20
  // registry path, the rest hashing.
  register_large_a_20: { power: 20, sig: 'rsa', n: 120, k: 35, bits: 4096, nSigs: 1, depth: 20 },
  // register family: eight Schnorr-shaped signatures on Baby Jubjub (an ECDSA/EdDSA-shaped
  // document), depth-20 registry path, the rest hashing.
  register_large_b_20: { power: 20, sig: 'schnorr', nSigs: 8, depth: 20 },
  // dsc family: two RSA-4096-shaped signatures (the CSCA over the DSC certificate), depth-12
  // CSCA registry path, the rest hashing.
  dsc_large_a_20: { power: 20, sig: 'rsa', n: 120, k: 35, bits: 4096, nSigs: 2, depth: 12 },
  // dsc family: four RSA-2048-shaped signatures (32 limbs of 64 bits), depth 12.
  dsc_large_b_20: { power: 20, sig: 'rsa', n: 64, k: 32, bits: 2048, nSigs: 4, depth: 12 },
  // register family at 2^22: as register_large_a_20 with more hashing. Compiled with --O1:
  // circom2 is WebAssembly (at most 4 GiB of memory) and --O2's simplification does not fit
  // at this size. --O1 keeps the linear constraints, so the model is a measurement: the
  // compiled count at calib.nChunks plus O1_CHUNK per further chunk (checked by the build).
  register_large_22: {
    power: 22, sig: 'rsa', n: 120, k: 35, bits: 4096, nSigs: 1, depth: 20,
    opt: 1, calib: { nChunks: 17, constraints: 338693 },
  },
};

const CATALOGUE = process.env.LARGE_CATALOGUE
  ? JSON.parse(fs.readFileSync(process.env.LARGE_CATALOGUE, 'utf8'))
  : BUILTIN;

const N_PUBLIC = 4; // root, nullifier, commitment, currentDate

// Constraint model (non-linear constraints after circom --O2, which removes every linear
// one; entries compiled with --O1 use a measured model, see register_large_22). Exact: the tests compile circuits at tiny sizes and compare, and the build compares
// the compiled count of every catalogue circuit.
const POSEIDON = { 2: 240, 3: 261 }; // circomlib Poseidon(nInputs)
const CONST_SBOX = 3; // a Poseidon input that is a constant saves one S-box (x^5: 3 constraints)
const CHUNK = 31 * 8 + POSEIDON[2]; // range checks of 31 bytes + one chain step
const SCHNORR = 3346; // Num2Bits(253), EscalarMulFix(253), Num2Bits(254), EscalarMulAny(254), BabyAdd
const BABYCHECK = 3;
const nbits = (x) => { let b = 0; while ((1n << BigInt(b)) <= BigInt(x)) b++; return b; };
function bigMulModCost(n, k) {
  const nt = 2 * k - 1;
  return 2 * k * n + 2 * nt + (nt - 1) * (n + nbits(2 * k) + 2);
}
// PoseidonChain(m) from lib.circom: the first step absorbs the constant m, an odd m pads
// with the constant 0.
function chainCost(m) {
  return Math.ceil(m / 2) * POSEIDON[3] - CONST_SBOX - (m % 2 ? CONST_SBOX : 0);
}
// --O1: a chunk is 491 non-linear and 306 linear constraints (measured).
const O1_CHUNK = 797;

function predict(p) {
  if (p.opt === 1) return p.calib.constraints + (p.nChunks - p.calib.nChunks) * O1_CHUNK;
  let sig;
  if (p.sig === 'rsa') {
    const per = 2 * p.n < 253 ? 2 : 1;
    sig = p.k * p.n + p.nSigs * (p.k * p.n + 17 * bigMulModCost(p.n, p.k)) + chainCost(Math.ceil(p.k / per));
  } else {
    sig = p.nSigs * SCHNORR + BABYCHECK + POSEIDON[2];
  }
  const hashing = p.nChunks * CHUNK - CONST_SBOX; // the chain starts from the constant nBytes
  const dates = 3 * 32 + 2 * 33 - 2;
  const merkle = POSEIDON[3] + p.depth + p.depth * (1 + POSEIDON[2]);
  const outputs = 2 * POSEIDON[2];
  return hashing + sig + dates + merkle + outputs;
}

function params(name) {
  let p;
  if (name.startsWith('{')) {
    p = JSON.parse(name);
  } else if (Object.hasOwn(CATALOGUE, name)) {
    p = { ...CATALOGUE[name] };
  } else {
    throw new Error(`unknown circuit ${name}; the catalogue has ${Object.keys(CATALOGUE).join(', ')}`);
  }
  check(p);
  p.sigKind = p.sig === 'rsa' ? 0 : 1;
  if (p.sig !== 'rsa') { p.n = 0; p.k = 0; }
  if (p.nChunks === undefined) {
    const limit = 2 ** p.power - N_PUBLIC - 1;
    const fixed = predict({ ...p, nChunks: 0 });
    p.nChunks = Math.floor((limit - fixed) / (p.opt === 1 ? O1_CHUNK : CHUNK));
    if (p.nChunks < minChunks(p)) throw new Error(`${name}: 2^${p.power} is too small for its fixed part`);
  }
  if (p.nChunks < minChunks(p)) throw new Error(`nChunks must be at least ${minChunks(p)}`);
  p.constraints = predict(p);
  return p;
}

function check(p) {
  const int = (v, lo, hi) => Number.isInteger(v) && v >= lo && v <= hi;
  const bad = (what) => { throw new Error(`bad parameters ${JSON.stringify(p)}: ${what}`); };
  if (p.sig !== 'rsa' && p.sig !== 'schnorr') bad('sig must be "rsa" or "schnorr"');
  if (!int(p.nSigs, 1, 1000)) bad('nSigs must be 1..1000');
  if (!int(p.depth, 1, 64)) bad('depth must be 1..64');
  if (p.nChunks !== undefined && !int(p.nChunks, 1, 1e7)) bad('nChunks must be a positive integer');
  if (p.opt !== undefined && p.opt !== 1 && p.opt !== 2) bad('opt must be 1 or 2 (circom --O1 or --O2)');
  if (p.opt === 1 && !(p.calib && int(p.calib.nChunks, 1, 1e7) && int(p.calib.constraints, 1, 2 ** 28))) {
    bad('opt 1 needs calib: {nChunks, constraints} measured with circom2 --O1');
  }
  if (p.nChunks === undefined && !int(p.power, 8, 27)) bad('power must be 8..27 (or give nChunks)');
  if (p.sig === 'rsa') {
    if (!int(p.k, 2, 64)) bad('k must be 2..64');
    if (!int(p.n, 8, 248) || p.n % 8 !== 0) bad('n must be a multiple of 8');
    if (2 * p.n + 1 + nbits(2 * p.k) >= 252) bad('2n + 1 + bits(2k) must stay below 252 (carries)');
    if (!int(p.bits, 8, p.n * p.k)) bad('bits must be 8..n·k');
  }
}

function minChunks(p) {
  return p.sig === 'rsa' ? Math.ceil((p.nSigs * p.k * p.n / 8) / 31) : p.nSigs;
}

function mainSource(p) {
  return [
    'pragma circom 2.1.6;',
    '',
    '// Generated by circuits/scripts/gen-large.js; do not edit.',
    `// ${JSON.stringify(p)}`,
    'include "large.circom";',
    '',
    `component main {public [currentDate]} = LargeDoc(${p.nChunks}, ${p.depth}, ${p.sigKind}, ${p.nSigs}, ${p.n}, ${p.k});`,
    '',
  ].join('\n');
}

// xorshift128+ over BigInt, as gen-inputs.js.
function rng(seed) {
  const M = (1n << 64n) - 1n;
  let s0 = (BigInt(seed) * 0x9e3779b97f4a7c15n + 0x7654321n) & M;
  let s1 = (s0 ^ 0xdeadbeefcafebaben) * 0xbf58476d1ce4e5b9n & M;
  if (s0 === 0n && s1 === 0n) s1 = 1n;
  const next = () => {
    let x = s0;
    const y = s1;
    s0 = y;
    x ^= (x << 23n) & M;
    s1 = x ^ y ^ (x >> 17n) ^ (y >> 26n);
    return (s1 + y) & M;
  };
  return {
    bits(n) {
      let v = 0n;
      for (let got = 0; got < n; got += 64) v = (v << 64n) | next();
      return v & ((1n << BigInt(n)) - 1n);
    },
    below(m) { // uniform-ish in [0, m)
      return this.bits(nbits(m) + 64) % m;
    },
    int(lo, hi) { return lo + Number(next() % BigInt(hi - lo + 1)); },
  };
}

const dec = (v) => BigInt(v).toString(10);
const ymd = (y, m, d) => y * 10000 + m * 100 + d;

function modpow(b, e, m) {
  let r = 1n;
  b %= m;
  while (e > 0n) {
    if (e & 1n) r = r * b % m;
    b = b * b % m;
    e >>= 1n;
  }
  return r;
}

function limbs(x, n, k) {
  const out = [];
  const mask = (1n << BigInt(n)) - 1n;
  for (let i = 0; i < k; i++) {
    out.push(x & mask);
    x >>= BigInt(n);
  }
  if (x !== 0n) throw new Error('value does not fit in the limbs');
  return out;
}

// Baby Jubjub (circomlib babyjub.circom): a·x² + y² = 1 + d·x²·y² over the BN254 scalar field.
const P = 21888242871839275222246405745257275088548364400416034343698204186575808495617n;
const BJ = {
  a: 168700n,
  d: 168696n,
  l: 2736030358979909402780800718157159386076813972158567259200215660948447373041n,
  B8: [5299619240641551281634865583518297030282874472190772894086521144482721001553n,
    16950150798460657717958625567821834550301663161624707787222815936182638968203n],
};
const mod = (x) => ((x % P) + P) % P;
const inv = (x) => modpow(mod(x), P - 2n, P);
function bjAdd([x1, y1], [x2, y2]) {
  const t = mod(BJ.d * x1 * x2 % P * y1 % P * y2);
  return [mod((x1 * y2 + y1 * x2) % P * inv(1n + t)), mod((y1 * y2 - BJ.a * x1 * x2) % P * inv(1n - t))];
}
function bjMul(s, pt) {
  let r = [0n, 1n];
  let q = pt;
  while (s > 0n) {
    if (s & 1n) r = bjAdd(r, q);
    q = bjAdd(q, q);
    s >>= 1n;
  }
  return r;
}

function inputs(p, seed, bad) {
  const r = rng(seed);
  const nBytes = p.nChunks * 31;
  const data = [];
  for (let i = 0; i < nBytes; i++) data.push(r.bits(8));
  const packed = (c) => {
    let v = 0n;
    for (let j = 30; j >= 0; j--) v = (v << 8n) | data[c * 31 + j];
    return v;
  };
  let signerKey;
  const signatures = [];
  if (p.sig === 'rsa') {
    const N = r.bits(p.bits) | (1n << BigInt(p.bits - 1)) | 1n;
    signerKey = limbs(N, p.n, p.k);
    const B = p.n / 8;
    for (let s = 0; s < p.nSigs; s++) {
      const sig = r.below(N);
      let m = modpow(sig, 65537n, N);
      const ml = limbs(m, p.n, p.k);
      for (let i = 0; i < p.k; i++) {
        for (let j = 0; j < B; j++) data[(s * p.k + i) * B + j] = (ml[i] >> BigInt(8 * j)) & 255n;
      }
      signatures.push(limbs(sig, p.n, p.k));
    }
  } else {
    const d = 1n + r.below(BJ.l - 1n);
    const A = bjMul(d, BJ.B8);
    signerKey = A;
    for (let s = 0; s < p.nSigs; s++) {
      const k = 1n + r.below(BJ.l - 1n);
      const R = bjMul(k, BJ.B8);
      const S = (k + packed(s) * d) % BJ.l;
      signatures.push([R[0], R[1], S]);
    }
  }
  if (bad) data[0] ^= 1n; // a signed byte changes: the signature no longer matches
  const currentDate = ymd(2025, r.int(1, 12), r.int(1, 28));
  const pathElements = [];
  for (let i = 0; i < p.depth; i++) pathElements.push(r.bits(248));
  return {
    dataGroups: data.map(dec),
    secret: dec(r.bits(248)),
    signerKey: signerKey.map(dec),
    signatures: signatures.map((s) => s.map(dec)),
    notBefore: dec(currentDate - r.int(1, 5) * 10000),
    notAfter: dec(currentDate + r.int(1, 10) * 10000),
    leafIndex: dec(r.bits(p.depth)),
    pathElements: pathElements.map(dec),
    currentDate: dec(currentDate),
  };
}

function usage() {
  console.error('usage: gen-large.js list | main NAME [--out FILE] | inputs NAME [--seed N] [--bad] [--out FILE] | info NAME');
  process.exit(2);
}

function main(argv) {
  const cmd = argv[0];
  if (cmd === 'list') {
    console.log(Object.keys(CATALOGUE).join('\n'));
    return;
  }
  const name = argv[1];
  if (!name || !['main', 'inputs', 'info'].includes(cmd)) usage();
  let seed = 1, bad = false, out = null;
  for (let i = 2; i < argv.length; i++) {
    if (argv[i] === '--seed') seed = Number(argv[++i]);
    else if (argv[i] === '--bad') bad = true;
    else if (argv[i] === '--out') out = argv[++i];
    else usage();
  }
  if (!Number.isInteger(seed) || seed < 0) usage();
  const p = params(name);
  let text;
  if (cmd === 'main') text = mainSource(p);
  else if (cmd === 'info') text = JSON.stringify({ ...p, nPublic: N_PUBLIC, limit: p.power ? 2 ** p.power - N_PUBLIC - 1 : null }) + '\n';
  else text = JSON.stringify(inputs(p, seed, bad)) + '\n';
  if (out) fs.writeFileSync(out, text);
  else process.stdout.write(text);
}

try {
  main(process.argv.slice(2));
} catch (e) {
  console.error('gen-large.js: ' + e.message);
  process.exit(1);
}
