#!/usr/bin/env node
// gen-inputs.js — deterministic inputs for the demo circuits.
//
//   node circuits/scripts/gen-inputs.js <circuit> [--seed N] [--bad] [--out FILE]
//   node circuits/scripts/gen-inputs.js --all      (rewrites circuits/inputs/*.json)
//
// <circuit> is register_demo, dsc_demo or disclose_demo. The same seed always gives the
// same input; different seeds give different valid inputs (different secrets, data,
// dates...). With --bad the input is well formed (every signal present, right array
// sizes) but breaks one of the circuit's constraints, so the witness generator must
// exit non-zero:
//   disclose_demo: the holder is one day short of minimumAge,
//   dsc_demo:      the certificate expired the day before currentDate,
//   register_demo: attestationId is 4 (only 1, 2, 3 are allowed).
// All values are decimal strings, as the app sends them. Needs only node (no packages).
//
// The outputs of the circuits (commitments, nullifiers, Merkle root) are computed by the
// circuit itself, so no hash implementation is needed here.
'use strict';

const fs = require('fs');
const path = require('path');

const CIRCUITS_DIR = path.resolve(__dirname, '..');

// xorshift128+ over BigInt: small, deterministic, good enough for test data.
function rng(seed) {
  const M = (1n << 64n) - 1n;
  let s0 = (BigInt(seed) * 0x9e3779b97f4a7c15n + 0x1234567n) & M;
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
    bits(n) { // uniform in [0, 2^n)
      let v = 0n;
      for (let got = 0; got < n; got += 64) v = (v << 64n) | next();
      return v & ((1n << BigInt(n)) - 1n);
    },
    int(lo, hi) { // uniform-ish in [lo, hi]
      return lo + Number(next() % BigInt(hi - lo + 1));
    },
  };
}

const dec = (v) => BigInt(v).toString(10);
const ymd = (y, m, d) => y * 10000 + m * 100 + d;
// Field elements below 2^248 stay far below the bn128 scalar field modulus.
const fieldElem = (r) => dec(r.bits(248));

function disclose(seed, bad) {
  const r = rng(seed);
  const currentDate = ymd(2025, r.int(1, 12), r.int(1, 28));
  const minimumAge = [18, 21, 16][r.int(0, 2)];
  // Born at least minimumAge + 1 full years before this year: always old enough.
  let dateOfBirth = ymd(2025 - minimumAge - 1 - r.int(0, 50), r.int(1, 12), r.int(1, 28));
  if (bad) {
    // Turns minimumAge tomorrow: currentDate - dateOfBirth = minimumAge*10000 - 1 day.
    dateOfBirth = currentDate - minimumAge * 10000 + 1;
  }
  const forbidden = [408, 364, 760, 192]; // ISO 3166-1 numeric codes on a sample list
  const allowed = [276, 250, 380, 724, 528, 840, 124, 392, 36, 756];
  return {
    secret: fieldElem(r),
    dateOfBirth: dec(dateOfBirth),
    expiryDate: dec(ymd(2026 + r.int(0, 9), r.int(1, 12), r.int(1, 28))),
    nationality: dec(allowed[r.int(0, allowed.length - 1)]),
    documentNumber: dec(r.bits(64)),
    currentDate: dec(currentDate),
    minimumAge: dec(minimumAge),
    scope: fieldElem(r),
    discloseNationality: dec(r.int(0, 1)),
    forbiddenNationalities: forbidden.map(dec),
  };
}

function dsc(seed, bad) {
  const r = rng(seed);
  const depth = 20, n = 120, k = 35;
  const currentDate = ymd(2025, r.int(1, 12), r.int(1, 28));
  const dscPubkey = [];
  for (let i = 0; i < k; i++) dscPubkey.push(dec(r.bits(n)));
  dscPubkey[0] = dec(BigInt(dscPubkey[0]) | 1n);                  // an odd modulus
  dscPubkey[k - 1] = dec(BigInt(dscPubkey[k - 1]) | (1n << 15n));   // 4096 bits exactly
  let notBefore = currentDate - r.int(1, 5) * 10000;
  let notAfter = currentDate + r.int(1, 10) * 10000;
  if (bad) notAfter = currentDate - 1; // expired the day before
  const pathElements = [];
  for (let i = 0; i < depth; i++) pathElements.push(fieldElem(r));
  return {
    dscPubkey,
    notBefore: dec(notBefore),
    notAfter: dec(notAfter),
    leafIndex: dec(r.bits(depth)),
    pathElements,
    currentDate: dec(currentDate),
  };
}

// register_demo's size lives in one place: the `component main` line of its source.
function registerChunks() {
  const src = fs.readFileSync(path.join(CIRCUITS_DIR, 'src', 'register_demo.circom'), 'utf8');
  const m = src.match(/^component\s+main\b.*=\s*RegisterDemo\(\s*(\d+)\s*\)\s*;/m);
  if (!m) throw new Error('register_demo.circom: cannot find "component main ... = RegisterDemo(N);"');
  return Number(m[1]);
}

function register(seed, bad) {
  const r = rng(seed);
  const nBytes = registerChunks() * 31;
  const dataGroups = [];
  for (let i = 0; i < nBytes; i++) dataGroups.push(dec(r.bits(8)));
  return {
    dataGroups,
    secret: fieldElem(r),
    attestationId: dec(bad ? 4 : r.int(1, 3)),
  };
}

const GENERATORS = { register_demo: register, dsc_demo: dsc, disclose_demo: disclose };

function usage() {
  console.error('usage: gen-inputs.js <' + Object.keys(GENERATORS).join('|') +
    '> [--seed N] [--bad] [--out FILE]\n       gen-inputs.js --all');
  process.exit(2);
}

function write(file, obj) {
  fs.writeFileSync(file, JSON.stringify(obj, null, 1) + '\n');
}

function main(argv) {
  if (argv[0] === '--all') {
    // The committed samples: <name>.json (seed 1), <name>.alt.json (seed 2), <name>.bad.json.
    const dir = path.join(CIRCUITS_DIR, 'inputs');
    fs.mkdirSync(dir, { recursive: true });
    for (const [name, gen] of Object.entries(GENERATORS)) {
      write(path.join(dir, `${name}.json`), gen(1, false));
      write(path.join(dir, `${name}.alt.json`), gen(2, false));
      write(path.join(dir, `${name}.bad.json`), gen(1, true));
    }
    return;
  }
  const name = argv[0];
  const gen = GENERATORS[name];
  if (!gen) usage();
  let seed = 1, bad = false, out = null;
  for (let i = 1; i < argv.length; i++) {
    if (argv[i] === '--seed' && i + 1 < argv.length) seed = Number(argv[++i]);
    else if (argv[i] === '--bad') bad = true;
    else if (argv[i] === '--out' && i + 1 < argv.length) out = argv[++i];
    else usage();
  }
  if (!Number.isSafeInteger(seed) || seed < 0) usage();
  const obj = gen(seed, bad);
  if (out) write(out, obj);
  else process.stdout.write(JSON.stringify(obj) + '\n');
}

main(process.argv.slice(2));
