#!/usr/bin/env bash
# deps.sh — install what building and testing prover-fleet needs and is missing.
#
#   scripts/deps.sh            install what is missing (Debian packages with apt-get,
#                              npm packages with `npm ci` from the committed lock files)
#   scripts/deps.sh --dry-run  print what would be installed, change nothing, exit 0
#   scripts/deps.sh --check    like --dry-run, but exit 1 when anything is missing
#
# `make demo`, `make test` and `.ci/run` call it, so a fresh Debian 12 machine needs only
# Go (go.mod's version) and this repository. It says exactly what it installs and uses sudo
# when not run as root (with -n: a password prompt would hang an unattended run, so it fails
# with the command to run instead).
#
# Pins. The Debian packages whose version changes what we build are pinned to bookworm's
# exact versions: the C++ witness generators compile against nlohmann-json3-dev, nasm and
# libgmp-dev. PostgreSQL is pinned to its major version (postgresql-15, whose binaries the
# tests run): bookworm-security replaces its minor releases and drops the old ones from the
# archive, so an exact pin would stop installing. g++, make and Node.js only need to exist.
# The npm packages are pinned by each package-lock.json and installed with `npm ci`.
#
# Environment: DEPS_NPM_DIRS (the npm projects, default "circuits e2e/app", those with a
# package-lock.json), PG_BIN (a PostgreSQL bin directory that makes postgresql-15
# unnecessary), PG_LIB (where Debian's PostgreSQL versions live, /usr/lib/postgresql).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODE=install
case "${1:-}" in
  "") ;;
  --dry-run) MODE=dry-run ;;
  --check) MODE=check ;;
  -h|--help) sed -n '2,/^[^#]/{/^#/p}' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "deps: unknown argument $1 (use --dry-run, --check or nothing)" >&2; exit 2 ;;
esac

say() { echo "deps: $*"; }
die() { echo "deps: $*" >&2; exit 1; }

# Debian packages: "package=version" or a bare name, with the check that says it is there.
DEB_PINS=(
  "nlohmann-json3-dev=3.11.2-2"
  "nasm=2.16.01-1"
  "libgmp-dev=2:6.2.1+dfsg1-1.1"
)

deb_installed() { dpkg-query -W -f='${Status}\n' "$1" 2>/dev/null | grep -q '^install ok installed$'; }
deb_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || true; }

need_deb=()
for pin in "${DEB_PINS[@]}"; do
  pkg="${pin%%=*}" want="${pin#*=}"
  if ! deb_installed "$pkg"; then
    need_deb+=("$pin")
  elif [[ "$(deb_version "$pkg")" != "$want" ]]; then
    # A different version builds too; say so rather than downgrade a developer's machine.
    say "note: $pkg $(deb_version "$pkg") is installed (pinned: $want); keeping it"
  fi
done
pg_bin="${PG_BIN:-}"
if [[ -z "$pg_bin" ]]; then
  if ! compgen -G "${PG_LIB:-/usr/lib/postgresql}/*/bin/initdb" >/dev/null; then
    need_deb+=("postgresql-15")
  fi
elif [[ ! -x "$pg_bin/initdb" ]]; then
  die "PG_BIN=$pg_bin has no initdb"
fi
command -v g++ >/dev/null || need_deb+=("g++")
command -v make >/dev/null || need_deb+=("make")
command -v node >/dev/null || need_deb+=("nodejs")
command -v npm >/dev/null || need_deb+=("npm")

# npm projects: a directory with a package-lock.json whose node_modules was not installed
# from exactly these package files (deps.sh leaves their hashes in node_modules/.deps-stamp).
npm_stamp() { (cd "$ROOT/$1" && sha256sum package.json package-lock.json); }
npm_dirs=()
for d in ${DEPS_NPM_DIRS:-circuits e2e/app}; do
  [[ -f "$ROOT/$d/package-lock.json" ]] || continue
  if [[ "$(cat "$ROOT/$d/node_modules/.deps-stamp" 2>/dev/null)" != "$(npm_stamp "$d")" ]]; then
    npm_dirs+=("$d")
  fi
done

# Go is not installed here (Debian's is too old): say what is wanted.
want_go="$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$ROOT/go.mod")"
if ! command -v go >/dev/null; then
  die "go not found: install Go $want_go from https://go.dev/dl/ and put it on PATH"
fi

if [[ ${#need_deb[@]} -eq 0 && ${#npm_dirs[@]} -eq 0 ]]; then
  say "nothing to install (Debian: ${DEB_PINS[*]%%=*} postgresql g++ make nodejs npm present; npm: up to date)"
  exit 0
fi

[[ ${#need_deb[@]} -gt 0 ]] && say "Debian packages to install: ${need_deb[*]}"
for d in "${npm_dirs[@]}"; do say "npm packages to install: npm ci --prefix $d (pinned by $d/package-lock.json)"; done
# e2e/app's lock file uses overrides that npm < 10 cannot read (Debian 12's own npm is 9:
# it fails with a misleading "can only install with an existing package-lock.json").
npm_major=""
if command -v npm >/dev/null; then npm_major="$(npm --version 2>/dev/null)" && npm_major="${npm_major%%.*}"; fi
for d in "${npm_dirs[@]}"; do
  if [[ "$d" == e2e/app && -n "$npm_major" && "$npm_major" -lt 10 ]]; then
    msg="npm $(npm --version) cannot install $d (its overrides need npm 10 or later, as Node.js 20 ships): install Node.js 20+ and run this again"
    [[ "$MODE" == install ]] && die "$msg"
    say "$msg"
  fi
done
case "$MODE" in
  dry-run) exit 0 ;;
  check) exit 1 ;;
esac

if [[ ${#need_deb[@]} -gt 0 ]]; then
  if [[ $(id -u) -eq 0 ]]; then
    sudo=()
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
  else
    die "installing Debian packages needs root: run
  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${need_deb[*]}
and then this command again"
  fi
  say "running: ${sudo[*]:+${sudo[*]} }apt-get update"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  say "running: ${sudo[*]:+${sudo[*]} }apt-get install -y --no-install-recommends ${need_deb[*]}"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_deb[@]}"
fi
for d in "${npm_dirs[@]}"; do
  say "running: npm ci --prefix $d"
  npm ci --prefix "$ROOT/$d" --no-audit --no-fund --loglevel=error
  npm_stamp "$d" >"$ROOT/$d/node_modules/.deps-stamp"
done
say "done"
