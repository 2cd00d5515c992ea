#!/usr/bin/env bash
# make-dev-keys.sh — DEVELOPMENT Groth16 keys for the small demo circuits.
#
#   scripts/make-dev-keys.sh [--ptau-only] [BUILD_DIR] [ZKEY_DIR]
#     BUILD_DIR  compiled circuits (default circuits/build, from scripts/build-circuits.sh)
#     ZKEY_DIR   where <name>.zkey and <name>.vkey.json go (default zkeys)
#     --ptau-only  only make (or check) the cached powers-of-tau file and stop
#
# NOT FOR PRODUCTION. Every step is deterministic: the only "randomness" comes from
# public beacon values derived from fixed strings below, so anyone can recompute the
# toxic waste and forge proofs for these keys. snarkjs `contribute -e=...` is NOT used
# because snarkjs mixes 64 bytes of OS randomness into the entropy string
# (src/misc.js getRandomRng), which would make the keys non-reproducible.
#
# Steps: powersoftau new bn128 $POWER -> powersoftau beacon -> powersoftau prepare phase2
#        (cached in $PTAU_CACHE, outside the repo) -> per circuit: groth16 setup ->
#        zkey beacon -> zkey export verificationkey.
#
# Only disclose_demo and dsc_demo are keyed here (2^14 is enough). register_demo needs
# 2^17; `snarkjs powersoftau prepare phase2` at 2^17 runs for more than 30 minutes on a
# 2-core machine, so its key comes from the Go keygen (cmd/zkeygen) instead.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SNARKJS="$ROOT/circuits/node_modules/.bin/snarkjs"

PTAU_ONLY=0
if [[ "${1:-}" == "--ptau-only" ]]; then PTAU_ONLY=1; shift; fi
BUILD_DIR="${1:-$ROOT/circuits/build}"
ZKEY_DIR="${2:-$ROOT/zkeys}"

POWER="${POWER:-14}"
CIRCUITS=(disclose_demo dsc_demo)
PTAU_CACHE="${PTAU_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/prover-fleet}"
PTAU_FINAL="$PTAU_CACHE/pot${POWER}_dev_final.ptau"

# Public, fixed beacon inputs. Changing a string changes the keys.
PTAU_BEACON_STRING="prover-fleet DEVELOPMENT powers of tau beacon v1 - NOT FOR PRODUCTION"
ZKEY_BEACON_PREFIX="prover-fleet DEVELOPMENT zkey beacon v1 - NOT FOR PRODUCTION - "
BEACON_ITER_EXP=10

hex_of() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }

[[ -x "$SNARKJS" ]] || { echo "snarkjs not found at $SNARKJS (run npm ci in circuits/)" >&2; exit 1; }

make_ptau() {
  if [[ -s "$PTAU_FINAL" ]]; then
    echo "ptau: using cached $PTAU_FINAL"
    return
  fi
  mkdir -p "$PTAU_CACHE"
  local tmp="$PTAU_CACHE/tmp.$$"
  mkdir -p "$tmp"
  trap 'rm -rf "$tmp"' RETURN
  local t0=$SECONDS
  echo "ptau: powersoftau new bn128 $POWER"
  "$SNARKJS" powersoftau new bn128 "$POWER" "$tmp/0000.ptau"
  echo "ptau: powersoftau beacon (hash of \"$PTAU_BEACON_STRING\", 2^$BEACON_ITER_EXP iterations)"
  "$SNARKJS" powersoftau beacon "$tmp/0000.ptau" "$tmp/0001.ptau" \
    "$(hex_of "$PTAU_BEACON_STRING")" "$BEACON_ITER_EXP" -n="prover-fleet dev beacon"
  echo "ptau: powersoftau prepare phase2 (slow: ~5 min at 2^14 on 2 cores)"
  "$SNARKJS" powersoftau prepare phase2 "$tmp/0001.ptau" "$tmp/final.ptau"
  mv "$tmp/final.ptau" "$PTAU_FINAL"
  echo "ptau: done in $((SECONDS - t0)) s -> $PTAU_FINAL"
}

make_key() {
  local name="$1"
  local r1cs="$BUILD_DIR/$name.r1cs"
  [[ -s "$r1cs" ]] || { echo "$r1cs missing: run scripts/build-circuits.sh first" >&2; exit 1; }
  local tmp
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' RETURN
  local t0=$SECONDS
  "$SNARKJS" groth16 setup "$r1cs" "$PTAU_FINAL" "$tmp/0000.zkey"
  "$SNARKJS" zkey beacon "$tmp/0000.zkey" "$tmp/final.zkey" \
    "$(hex_of "$ZKEY_BEACON_PREFIX$name")" "$BEACON_ITER_EXP" -n="prover-fleet dev beacon $name"
  "$SNARKJS" zkey export verificationkey "$tmp/final.zkey" "$tmp/vkey.json"
  mkdir -p "$ZKEY_DIR"
  mv "$tmp/final.zkey" "$ZKEY_DIR/$name.zkey"
  mv "$tmp/vkey.json" "$ZKEY_DIR/$name.vkey.json"
  echo "zkey: $name done in $((SECONDS - t0)) s ($(stat -c %s "$ZKEY_DIR/$name.zkey") bytes)"
}

make_ptau
[[ $PTAU_ONLY == 1 ]] && exit 0
for c in "${CIRCUITS[@]}"; do make_key "$c"; done
