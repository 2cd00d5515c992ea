#!/usr/bin/env bash
# build-circuits.sh — compile the demo circuits and their C++ witness generators.
#
#   scripts/build-circuits.sh [OUTDIR]        (default: circuits/build)
#   CIRCUITS="dsc_demo disclose_demo" scripts/build-circuits.sh   (a subset)
#   FORCE=1 scripts/build-circuits.sh          (rebuild even when up to date)
#   SRC=DIR WASM=0 scripts/build-circuits.sh   (main files from DIR; no wasm generator: the
#                                               large circuits, scripts/build-large-circuits.sh)
#   CIRCOM_OPT=--O1 CPP_OPT=-O0 ...            (circom2 and g++ optimisation; --O2 and -O1)
#
# For every circuits/src/<name>.circom that has a `component main` it produces, in OUTDIR,
# the layout the worker expects (see circuits/README.md):
#   <name>.r1cs
#   <name>_cpp/<name>       C++ witness generator: `<name> input.json out.wtns`
#   <name>_cpp/<name>.dat   its data file; must stay next to the executable
#   <name>_js/<name>.wasm   (+ generate_witness.js, witness_calculator.js)
#   <name>.stamp            inputs hash; the circuit is skipped while it matches
#
# The stamp hashes every .circom file under circuits/src, the circomlib and circom2
# versions, the C++ compiler version and this script, so editing any of them rebuilds.
# Needs Debian packages libgmp-dev, nlohmann-json3-dev and nasm, and `npm ci` in circuits/.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="${SRC:-$ROOT/circuits/src}"
# Include paths: the demo gadgets, the large circuits' templates, circomlib.
LIBS=("$ROOT/circuits/src" "$ROOT/circuits/large")
WASM="${WASM:-1}"
NODE_MODULES="$ROOT/circuits/node_modules"
CIRCOM="$NODE_MODULES/.bin/circom2"
OUTDIR="${1:-$ROOT/circuits/build}"
JOBS="${JOBS:-2}"

die() { echo "build-circuits: $*" >&2; exit 1; }
[[ -x "$CIRCOM" ]] || die "circom2 not found at $CIRCOM (run: cd circuits && npm ci)"
for tool in g++ make nasm sha256sum; do
  command -v "$tool" >/dev/null || die "$tool not found (apt-get install build-essential nasm)"
done
[[ -e /usr/include/gmp.h || -e /usr/include/x86_64-linux-gnu/gmp.h ]] || die "gmp.h not found (apt-get install libgmp-dev)"
[[ -e /usr/include/nlohmann/json.hpp ]] || die "nlohmann/json.hpp not found (apt-get install nlohmann-json3-dev)"

mkdir -p "$OUTDIR"
OUTDIR="$(cd "$OUTDIR" && pwd)"
SRC="$(cd "$SRC" && pwd)"

# One build per OUTDIR at a time.
exec 9>"$OUTDIR/.lock"
flock 9

if [[ -n "${CIRCUITS:-}" ]]; then
  read -r -a NAMES <<<"$CIRCUITS"
else
  # Largest families first, so the long register compile starts at once.
  NAMES=()
  for prefix in register dsc disclose ''; do
    for f in "$SRC/$prefix"*.circom; do
      [[ -f "$f" ]] && grep -q '^component main' "$f" || continue
      n="$(basename "$f" .circom)"
      [[ " ${NAMES[*]} " == *" $n "* ]] || NAMES+=("$n")
    done
  done
fi
[[ ${#NAMES[@]} -gt 0 ]] || die "no circuits with a main component in $SRC"

# Everything a build depends on, besides the circuit name.
TOOLS_ID="$(
  "$CIRCOM" --version 2>&1
  grep -m1 '"version"' "$NODE_MODULES/circomlib/package.json"
  g++ --version | head -1
  nasm -v
  sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1
)"
# The sources: SRC, and the include paths when SRC is elsewhere (generated main files).
HASHED=("$SRC")
[[ "$SRC" == "$ROOT/circuits/src" ]] || HASHED+=("${LIBS[@]}")
SOURCES_HASH="$(find "${HASHED[@]}" -name '*.circom' -type f | LC_ALL=C sort -u | xargs sha256sum | sed 's|  .*/|  |' | sha256sum | cut -d' ' -f1)"
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
stamp_for() { printf '%s\n%s\n%s\n%s %s\n' "$1" "$SOURCES_HASH" "$TOOLS_ID" "${CIRCOM_OPT:---O2}" "${CPP_OPT:--O1}" | sha256sum | cut -d' ' -f1; }

up_to_date() {
  local name="$1"
  [[ "${FORCE:-0}" != 1 ]] &&
    [[ -f "$OUTDIR/$name.stamp" ]] &&
    [[ "$(head -1 "$OUTDIR/$name.stamp")" == "$(stamp_for "$name")" ]] &&
    [[ -s "$OUTDIR/$name.r1cs" && -x "$OUTDIR/${name}_cpp/$name" && -s "$OUTDIR/${name}_cpp/$name.dat" ]] &&
    [[ "$WASM" == 0 || -s "$OUTDIR/${name}_js/$name.wasm" ]]
}

# build_one NAME: compile and build; writes OUTDIR/NAME.log and, on success, NAME.stamp.
build_one() {
  local name="$1" log="$OUTDIR/$1.log"
  rm -rf "$OUTDIR/$name.stamp" "$OUTDIR/$name.r1cs" "$OUTDIR/${name}_cpp" "$OUTDIR/${name}_js" "$OUTDIR/$name.time"
  local t0 t1 t2 wasm=() libs=()
  [[ "$WASM" == 0 ]] || wasm=(--wasm)
  for l in "${LIBS[@]}" "$NODE_MODULES"; do libs+=(-l "$l"); done
  t0=$(date +%s.%N)
  # GNU time (Debian package "time", optional): peak memory (KiB) and CPU seconds of the
  # compiler and of make, into NAME.time and the stamp.
  : >"$OUTDIR/$name.time"
  measure() { if [[ -x /usr/bin/time ]]; then /usr/bin/time -a -o "$OUTDIR/$name.time" -f "$1 maxrss_kib=%M user_s=%U sys_s=%S" "${@:2}"; else "${@:2}"; fi; }
  measure circom2 \
    "$CIRCOM" "$SRC/$name.circom" --r1cs "${wasm[@]}" --c "${CIRCOM_OPT:---O2}" "${libs[@]}" -o "$OUTDIR" >"$log" 2>&1 ||
    { echo "circom2 failed, see $log" >&2; return 1; }
  t1=$(date +%s.%N)
  # -O1 instead of the Makefile's -O3: the generated <name>.cpp is ~8 MB and -O3 takes
  # twice the CPU (40 s vs 18 s for register_demo) for the same witness time (0.04 s).
  # Never add -DNDEBUG: the generator reports failed constraints through assert().
  # CPP_OPT=-O0 builds a small circuit's generator in 40% less CPU (the tests use it).
  measure make \
    make -s -C "$OUTDIR/${name}_cpp" -j"$JOBS" CFLAGS="-std=c++11 ${CPP_OPT:--O1} -I." >>"$log" 2>&1 ||
    { echo "make failed, see $log" >&2; return 1; }
  t2=$(date +%s.%N)
  # Keep only what runs: the executable and its .dat (plus the sources, which are
  # small except <name>.cpp; drop that and the objects).
  rm -f "$OUTDIR/${name}_cpp"/*.o "$OUTDIR/${name}_cpp/$name.cpp"
  local nl l
  nl=$(sed -n 's/.*non-linear constraints: *\([0-9]*\).*/\1/p' "$log")
  l=$(sed -n 's/^linear constraints: *\([0-9]*\).*/\1/p' "$log")
  printf '%s\ncompile_s=%s cpp_build_s=%s constraints=%s linear=%s\n%s\n' \
    "$(stamp_for "$name")" "$(elapsed "$t0" "$t1")" "$(elapsed "$t1" "$t2")" "$nl" "$l" \
    "$(tr '\n' ' ' <"$OUTDIR/$name.time")" >"$OUTDIR/$name.stamp"
}

T_START=$(date +%s.%N)
names=()
for name in "${NAMES[@]}"; do
  [[ -f "$SRC/$name.circom" ]] || die "no such circuit: $SRC/$name.circom"
  if up_to_date "$name"; then
    echo "$name: up to date"
    continue
  fi
  # At most JOBS circuits at once; each circom2 is single threaded.
  while [[ $(jobs -rp | wc -l) -ge $JOBS ]]; do wait -n || true; done
  echo "$name: building"
  build_one "$name" &
  names+=("$name")
done

wait || true
failed=0
for name in "${names[@]}"; do
  if [[ ! -f "$OUTDIR/$name.stamp" ]]; then
    echo "$name: FAILED (log: $OUTDIR/$name.log), its last lines:" >&2
    tail -n 20 "$OUTDIR/$name.log" >&2 || true
    failed=1
  fi
done

for name in "${NAMES[@]}"; do
  [[ -f "$OUTDIR/$name.stamp" ]] || continue
  printf '%-16s %s\n' "$name" "$(sed -n 2p "$OUTDIR/$name.stamp")"
done
printf 'total %ss\n' "$(elapsed "$T_START" "$(date +%s.%N)")"
exit "$failed"
