#!/usr/bin/env bash
# Every packaging test, as root on a fresh Debian 12 machine with a Rust
# toolchain (it installs what else it needs with apt-get, and cargo-deb with
# cargo install):
#
#   install.sh   make install DESTDIR=... layouts, make uninstall
#   man.sh       the man pages: build, render with no warnings, match the code
#   deb.sh       the .deb (cargo-deb): contents, modes, control, maintainer scripts
#   nix.sh       packaging/nix and flake.nix: parse, evaluate against stubs, install layout
#   deb-e2e.sh   the .deb installed into a booted Debian: confines, blocks, removes
#
# Prints one line per check (PASS name / FAIL name and what it saw), then
# "N passed, M failed"; exits 1 when a check failed.
#
#   tests/packaging/run.sh                  all of them
#   tests/packaging/run.sh man nix          some of them
#   NCG_PKG_SKIP_E2E=1 tests/packaging/run.sh   without the container test
#   NCG_PKG_SUITE=trixie                    the container test on trixie (systemd 257)
#   CARGO_TARGET_DIR=...                    honoured (the .deb lands in $CARGO_TARGET_DIR/debian)
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"

tests=("$@")
if [ ${#tests[@]} = 0 ]; then
  tests=(install man deb nix)
  [ -n "${NCG_PKG_SKIP_E2E:-}" ] || tests+=(deb-e2e)
fi

command -v cargo >/dev/null || {
  echo "run.sh: cargo not found: install a Rust toolchain (rustup) first" >&2
  exit 2
}
need_commands make=make pkg-config=pkg-config scdoc=scdoc man=man-db dpkg-shlibdeps=dpkg-dev \
  python3=python3-minimal nix-instantiate=nix-bin unshare=util-linux \
  systemd-nspawn=systemd-container debootstrap=debootstrap || exit 2
if ! pkg-config --exists systemd 2>/dev/null && [ "$(id -u)" = 0 ]; then
  # systemd.pc: in the systemd package on bookworm, systemd-dev from trixie on.
  note "installing systemd.pc"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd-dev >/dev/null 2>&1 ||
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null 2>&1 || true
fi

total_passed=0
total_failed=0
for t in "${tests[@]}"; do
  script=$HERE/$t.sh
  [ -x "$script" ] || {
    echo "run.sh: no such test: $t" >&2
    exit 2
  }
  note "== $t.sh"
  summary=0
  rc=
  while IFS= read -r line; do
    if [[ $line =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
      total_passed=$((total_passed + BASH_REMATCH[1]))
      total_failed=$((total_failed + BASH_REMATCH[2]))
      summary=1
      note "$t.sh: $line"
    elif [[ $line =~ ^__rc=([0-9]+)$ ]]; then
      rc=${BASH_REMATCH[1]}
    else
      printf '%s\n' "$line"
    fi
  done < <("$script"; echo "__rc=$?")
  if [ "$summary" = 0 ]; then
    total_failed=$((total_failed + 1))
    echo "FAIL $t.sh runs to the end (exit $rc)"
  elif [ "$rc" != 0 ] && [ "$rc" != 1 ]; then
    total_failed=$((total_failed + 1))
    echo "FAIL $t.sh exits 0 or 1 (exit $rc)"
  fi
done

echo "$total_passed passed, $total_failed failed"
[ "$total_failed" = 0 ]
