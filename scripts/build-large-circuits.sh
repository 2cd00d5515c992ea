#!/usr/bin/env bash
# build-large-circuits.sh — the large demo circuits (2^20 and 2^22 constraints): compile
# them, build their C++ witness generators, write sample inputs and check that the
# generators accept them, and make development keys with cmd/zkeygen. `make circuits-large`.
#
#   scripts/build-large-circuits.sh [OUTDIR [ZKEYS]]   (default: circuits/build zkeys)
#   CIRCUITS="register_large_a_20" scripts/build-large-circuits.sh   (a subset)
#   KEYS=0 scripts/build-large-circuits.sh             (no keys)
#
# The catalogue and the circuits' parameters are in circuits/scripts/gen-large.js; the
# templates in circuits/large/large.circom. Per circuit NAME it writes
#   OUTDIR/large-src/NAME.circom      the generated main file
#   OUTDIR/NAME.r1cs, OUTDIR/NAME_cpp/NAME(.dat), OUTDIR/NAME.stamp (scripts/build-circuits.sh)
#   OUTDIR/inputs/NAME.json           a valid input (seed 1), accepted by NAME_cpp/NAME
#   ZKEYS/NAME.zkey, ZKEYS/NAME.vkey.json   development keys (zkeygen; seed below)
# and ends with a table of sizes and times. Circuits are built one at a time (circom2 holds
# several GiB at 2^22), each step skipped when its outputs are up to date. Everything it
# writes is git-ignored.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUTDIR="${1:-$ROOT/circuits/build}"
ZKEYS="${2:-$ROOT/zkeys}"
GEN=(node "$ROOT/circuits/scripts/gen-large.js")
ZKEYGEN="${ZKEYGEN:-$ROOT/bin/zkeygen}"
DEV_KEY_SEED="${DEV_KEY_SEED:-prover-fleet development key - NOT FOR PRODUCTION}"

die() { echo "build-large-circuits: $*" >&2; exit 1; }
mkdir -p "$OUTDIR/large-src" "$OUTDIR/inputs" "$ZKEYS"
OUTDIR="$(cd "$OUTDIR" && pwd)"

if [[ -n "${CIRCUITS:-}" ]]; then
  read -r -a NAMES <<<"$CIRCUITS"
else
  mapfile -t NAMES < <("${GEN[@]}" list)
fi
if [[ "${KEYS:-1}" != 0 ]]; then
  mkdir -p "$(dirname "$ZKEYGEN")"
  (cd "$ROOT" && go build -o "$ZKEYGEN" ./cmd/zkeygen) || die "cannot build cmd/zkeygen"
fi

# timed FILE FORMAT CMD...: CMD, measured by GNU time (Debian package "time") when present.
timed() { if [[ -x /usr/bin/time ]]; then /usr/bin/time -o "$1" -f "$2" "${@:3}"; else : >"$1"; "${@:3}"; fi; }
field() { sed -n "s/.*\\b$2=\\([^ ]*\\).*/\\1/p" "$1" | head -1; }
T_START=$(date +%s)
for name in "${NAMES[@]}"; do
  info="$("${GEN[@]}" info "$name")" || exit 1
  want=$(node -e 'console.log(JSON.parse(process.argv[1]).constraints)' "$info")
  opt=$(node -e 'console.log(JSON.parse(process.argv[1]).opt || 2)' "$info")

  # The main file, rewritten only when it changes (its hash is part of the build stamp).
  "${GEN[@]}" main "$name" --out "$OUTDIR/large-src/.$name.tmp"
  if cmp -s "$OUTDIR/large-src/.$name.tmp" "$OUTDIR/large-src/$name.circom"; then
    rm "$OUTDIR/large-src/.$name.tmp"
  else
    mv "$OUTDIR/large-src/.$name.tmp" "$OUTDIR/large-src/$name.circom"
  fi
  CIRCUITS="$name" SRC="$OUTDIR/large-src" WASM=0 CIRCOM_OPT="--O$opt" "$ROOT/scripts/build-circuits.sh" "$OUTDIR"
  # All constraints count (--O1 keeps linear ones).
  got=$(( $(field "$OUTDIR/$name.stamp" constraints) + $(field "$OUTDIR/$name.stamp" linear) ))
  [[ "$got" == "$want" ]] ||
    die "$name: circom2 made $got constraints, gen-large.js's model says $want: fix the model"

  # A valid input, and the witness generator must accept it.
  if [[ ! -s "$OUTDIR/inputs/$name.json" || "$OUTDIR/$name.r1cs" -nt "$OUTDIR/inputs/$name.json" ]]; then
    "${GEN[@]}" inputs "$name" --seed 1 --out "$OUTDIR/inputs/$name.json"
  fi
  wtns="$(mktemp -d)"
  timed "$OUTDIR/$name.witness.time" 'witness wall_s=%e maxrss_kib=%M' \
    "$OUTDIR/${name}_cpp/$name" "$OUTDIR/inputs/$name.json" "$wtns/w.wtns" >"$wtns/log" 2>&1 ||
    { tail -5 "$wtns/log" >&2; rm -rf "$wtns"; die "$name: the witness generator rejects inputs/$name.json"; }
  rm -rf "$wtns"

  if [[ "${KEYS:-1}" != 0 ]] && [[ ! -s "$ZKEYS/$name.zkey" || ! -s "$ZKEYS/$name.vkey.json" || "$OUTDIR/$name.r1cs" -nt "$ZKEYS/$name.zkey" ]]; then
    echo "$name: zkeygen (development key)"
    timed "$OUTDIR/$name.zkeygen.time" 'zkeygen wall_s=%e user_s=%U sys_s=%S maxrss_kib=%M' \
      "$ZKEYGEN" -r1cs "$OUTDIR/$name.r1cs" -zkey "$ZKEYS/$name.zkey" -vkey "$ZKEYS/$name.vkey.json" \
      -seed "$DEV_KEY_SEED $name" 2>&1 | grep -v '^WARNING' || die "$name: zkeygen failed"
  fi
done

printf '\n%-20s %9s %10s %11s %10s %11s %10s %10s %11s %10s\n' circuit constraints circom2_s circom2_GiB cpp_build_s witness_s witness_MiB zkeygen_s zkeygen_GiB zkey_MB
for name in "${NAMES[@]}"; do
  s="$OUTDIR/$name.stamp"
  c2=$(sed -n 's/.*circom2 maxrss_kib=\([0-9]*\).*/\1/p' "$s")
  zs=""; zm=""; zk=""
  if [[ -f "$OUTDIR/$name.zkeygen.time" ]]; then
    zs=$(field "$OUTDIR/$name.zkeygen.time" wall_s); zm=$(field "$OUTDIR/$name.zkeygen.time" maxrss_kib)
    zm=$(awk -v k="$zm" 'BEGIN { printf "%.1f", k / 1048576 }')
  fi
  [[ -f "$ZKEYS/$name.zkey" ]] && zk=$(awk -v b="$(stat -c %s "$ZKEYS/$name.zkey")" 'BEGIN { printf "%.0f", b / 1e6 }')
  printf '%-20s %9s %10s %11s %10s %11s %10s %10s %11s %10s\n' "$name" "$(( $(field "$s" constraints) + $(field "$s" linear) ))" \
    "$(field "$s" compile_s)" "$(awk -v k="${c2:-0}" 'BEGIN { printf "%.1f", k / 1048576 }')" "$(field "$s" cpp_build_s)" \
    "$(field "$OUTDIR/$name.witness.time" wall_s)" \
    "$(awk -v k="$(field "$OUTDIR/$name.witness.time" maxrss_kib)" 'BEGIN { printf "%.0f", k / 1024 }')" \
    "$zs" "$zm" "$zk"
done
echo "total $(( $(date +%s) - T_START ))s"
