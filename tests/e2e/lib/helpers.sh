# shellcheck shell=bash
# Helpers shared by tests/e2e/run.sh and the cases' case.sh scripts.
#
# A case.sh runs as `bash case.sh` in the container's network namespace
# (so 127.0.0.1 is the container's loopback) with `set -euo pipefail`, this
# file sourced, and the environment:
#   NCG_PID    pid of the container's init (for nsenter)
#   NCG_CASE   the case name;  NCG_UNIT  its main unit, ncg-<case>.service
#   NCG_OUT    host path of the case's /out directory (/out/<case> inside)
#   NCG_SUITE  Debian suite of the container (bookworm, trixie)
#   NCG_S_*    store paths of the test store (NCG_S_CHECK, NCG_S_BB, ...)
# It passes when it exits 0. Everything it prints is shown when it fails.

# Run a command inside the container (all namespaces of its init).
in_ct() { nsenter -t "$NCG_PID" -a -- "$@"; }

ctl() { in_ct systemctl --no-pager "$@"; }

say() { printf '    %s\n' "$*"; }
ok() { say "ok: $*"; }
die() {
  say "FAIL: $*"
  exit 1
}

unit_prop() { ctl show -p "$2" --value -- "$1"; }

# start_unit UNIT: start it and wait for the job (bounded); returns its status.
start_unit() { timeout 120 nsenter -t "$NCG_PID" -a -- systemctl --no-pager start -- "$1"; }

expect_start_ok() {
  local rc=0
  start_unit "$1" || rc=$?
  [ "$rc" = 0 ] || die "systemctl start $1 failed (status $rc)"
  ok "started $1"
}

# expect_confined UNIT [ROOTNAME]: systemd loaded a generated drop-in for UNIT
# and its RootDirectory is /run/confinement/<full unit name>.
expect_confined() {
  local unit=$1 want=/run/confinement/${2:-$1} root dropins
  root=$(unit_prop "$unit" RootDirectory)
  dropins=$(unit_prop "$unit" DropInPaths)
  case " $dropins " in
    *" /run/systemd/generator/"*) ;;
    *) die "$unit: no drop-in from the generator directory (DropInPaths: $dropins)" ;;
  esac
  [ "$root" = "$want" ] || die "$unit: RootDirectory is '$root', expected '$want'"
  ok "$unit has RootDirectory=$root from a generated drop-in"
}

# expect_not_confined UNIT: nothing was generated for it.
expect_not_confined() {
  local unit=$1 root dropins
  root=$(unit_prop "$unit" RootDirectory)
  dropins=$(unit_prop "$unit" DropInPaths)
  case " $dropins " in
    *" /run/systemd/generator/"*) die "$unit: unexpected generated drop-in (DropInPaths: $dropins)" ;;
  esac
  [ -z "$root" ] || die "$unit: unexpected RootDirectory=$root"
  ok "$unit untouched by the generator"
}

# expect_verdict DIR PASS|FAIL: the checker's verdict in DIR (host path).
expect_verdict() {
  local dir=$1 want=$2 got=
  [ -f "$dir/verdict" ] || die "no verdict in ${dir#"$NCG_OUT_ROOT"} (did the checker run to the end?)"
  got=$(head -n1 "$dir/verdict")
  [ "$got" = "$want" ] || die "checker verdict $got, expected $want:
$(sed 's/^/      /' "$dir/verdict")"
  ok "checker verdict $want"
}

# wait_for SECONDS DESCRIPTION CMD...: poll CMD every 0.1 s.
wait_for() {
  local secs=$1 what=$2 i=0
  shift 2
  while ! "$@"; do
    i=$((i + 1))
    [ "$i" -lt $((secs * 10)) ] || die "timed out after ${secs}s waiting for $what"
    sleep 0.1
  done
}

# The default case: start the unit, it must succeed, be confined, and the
# checker must say PASS.
default_case() {
  expect_start_ok "$NCG_UNIT"
  expect_confined "$NCG_UNIT"
  expect_verdict "$NCG_OUT" PASS
}

# closure_of NAME...: the union of the closures (`nix-store -qR`, computed on
# the host when the store was built) of the named store paths (CHECK, BB,
# BUSYBOX, ...: the NCG_S_ names), sorted, one path a line.
closure_of() {
  local n files=()
  for n in "$@"; do
    [ -f "$NCG_CLOSURES/$n" ] || die "no closure recorded for $n"
    files+=("$NCG_CLOSURES/$n")
  done
  sort -u "${files[@]}"
}
