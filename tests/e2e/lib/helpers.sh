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

# The generator's read-only view of the store, and its mount unit.
STORE_VIEW=/run/nix-confinement-store
STORE_VIEW_UNIT='run-nix\x2dconfinement\x2dstore.mount'

# expect_closure_probed DIR NAME...: DIR/targets (written inside the service
# by list_writable_targets) covers exactly the closure of the named store
# paths: every store path of the closure, nothing else under /nix/store.
expect_closure_probed() {
  local dir=$1 got want
  shift
  want=$(closure_of "$@")
  got=$(grep -o '^/nix/store/[^/]*' "$dir/targets" | sort -u)
  [ "$got" = "$want" ] || die "the store paths probed in ${dir#"$NCG_OUT_ROOT"} are not the closure:
$(diff <(printf '%s\n' "$want") <(printf '%s\n' "$got") | sed 's/^/      /')"
  ok "probed all $(printf '%s\n' "$want" | wc -l) store paths of the closure, $(grep -c . "$dir/targets") directories and files in all"
}

# expect_all_erofs DIR: every write probed inside the service (DIR/results,
# from probe_writes) failed with EROFS.
expect_all_erofs() {
  local dir=$1 n bad
  [ -s "$dir/results" ] || die "no probe results in ${dir#"$NCG_OUT_ROOT"}"
  n=$(grep -c . "$dir/results")
  bad=$(grep -v '^Read-only file system|' "$dir/results" || true)
  [ -z "$bad" ] || die "writes that did not fail with EROFS:
$(printf '%s\n' "$bad" | sed 's/^/      /')"
  ok "all $n writes failed with EROFS ($(grep -c '|/bin/sh$' "$dir/results") through /bin/sh)"
}

# expect_store_mounts_ro MOUNTINFO NAME...: in a service's mountinfo, the
# store is a read-only mount with one read-only mount per closure path below
# it (the closure of the named store paths), and /bin/sh is read-only.
expect_store_mounts_ro() {
  local mi=$1 want got rw
  shift
  [ -s "$mi" ] || die "no mountinfo at ${mi#"$NCG_OUT_ROOT"}"
  want=$(closure_of "$@")
  got=$(awk '$5 ~ "^/nix/store/" { print $5 }' "$mi" | sort -u)
  [ "$got" = "$want" ] || die "the mounts below /nix/store are not the closure:
$(diff <(printf '%s\n' "$want") <(printf '%s\n' "$got") | sed 's/^/      /')"
  rw=$(awk '($5 == "/nix/store" || $5 ~ "^/nix/store/" || $5 == "/bin/sh") && ("," $6 ",") !~ /,ro,/ { print $5 " " $6 }' "$mi")
  [ -z "$rw" ] || die "mounts that are not read-only:
$(printf '%s\n' "$rw" | sed 's/^/      /')"
  awk '$5 == "/nix/store" { f = 1 } END { exit !f }' "$mi" || die "/nix/store is not a mount point inside"
  ok "inside: /nix/store and all $(printf '%s\n' "$want" | wc -l) closure mounts below it are read-only (mountinfo)"
}

# view_state: the store view as the container sees it: mounted?, options,
# propagation, and its mount unit's state.
view_state() {
  in_ct findmnt -n -o TARGET,SOURCE,OPTIONS,PROPAGATION "$STORE_VIEW" 2>&1 | sed 's/^/      view| /' || true
  say "  $STORE_VIEW_UNIT: $(unit_prop "$STORE_VIEW_UNIT" ActiveState)/$(unit_prop "$STORE_VIEW_UNIT" SubState)"
}

# expect_view_ro: the view is mounted, read-only and private (the only
# mount at that place), as the generated mount unit makes it.
expect_view_ro() {
  local lines opts prop
  lines=$(in_ct findmnt -n -o OPTIONS,PROPAGATION "$STORE_VIEW" 2>/dev/null) || die "$STORE_VIEW is not mounted"
  [ "$(printf '%s\n' "$lines" | wc -l)" = 1 ] || die "more than one mount at $STORE_VIEW:
$lines"
  read -r opts prop <<<"$lines"
  case ,$opts, in *,ro,*) ;; *) die "$STORE_VIEW is mounted $opts" ;; esac
  [ "$prop" = private ] || die "$STORE_VIEW has propagation $prop, expected private"
  ok "$STORE_VIEW is mounted read-only and private"
}

# restore_store_view: undo whatever a case did to the view: no override or
# mask of its unit, nothing mounted at or over it, then mounted again by its
# unit. For a case's `trap restore_store_view EXIT`.
restore_store_view() {
  local i
  in_ct rm -rf "/etc/systemd/system/$STORE_VIEW_UNIT" "/etc/systemd/system/$STORE_VIEW_UNIT.d" || true
  ctl daemon-reload || true
  for i in 1 2 3 4 5; do
    in_ct mountpoint -q "$STORE_VIEW" 2>/dev/null || break
    in_ct umount "$STORE_VIEW" || break
  done
  for i in $(seq 100); do
    view_unit_inactive && break
    sleep 0.1
  done
  if in_ct test -L "$STORE_VIEW" || { in_ct test -e "$STORE_VIEW" && ! in_ct test -d "$STORE_VIEW"; }; then
    in_ct rm -f "$STORE_VIEW" || true
  fi
  ctl reset-failed "$STORE_VIEW_UNIT" 2>/dev/null || true
  ctl start "$STORE_VIEW_UNIT" || true
  # What comes next must find the view as generated: a restore that did not
  # work fails the case here (also from an EXIT trap).
  [ "$(unit_prop "$STORE_VIEW_UNIT" LoadState)" = loaded ] ||
    die "$STORE_VIEW_UNIT is $(unit_prop "$STORE_VIEW_UNIT" LoadState) after the restore"
  expect_view_ro
}

# expect_view_writable: the store can be written through the view: a hostile
# setup made it writable, so what follows attacks something.
expect_view_writable() {
  in_ct /bin/sh -c 'touch "$1/.ncg-e2e-probe" && rm "$1/.ncg-e2e-probe"' sh "$STORE_VIEW" ||
    die "the store cannot be written through $STORE_VIEW: the setup did not make it writable"
  ok "the setup worked: the store can be written through $STORE_VIEW"
}

# expect_view_unit_masked: the mask (and the daemon-reload after it) took.
expect_view_unit_masked() {
  local state
  state=$(unit_prop "$STORE_VIEW_UNIT" LoadState)
  [ "$state" = masked ] || die "$STORE_VIEW_UNIT is $state, not masked: the setup did not work"
  ok "the setup worked: $STORE_VIEW_UNIT is masked"
}

# start_expect_safe UNIT DIR: start UNIT (a confined checker that probes
# writes into DIR, with an ExecStartPre= that touches DIR/PRE-RAN) after
# something was done to the store or its view. Safe is: the start is refused
# and nothing of the service ran, or it ran and every write failed with
# EROFS. Sets SAFE_OUTCOME to refused or read-only.
start_expect_safe() {
  local unit=$1 dir=$2 rc=0 bad
  rm -f "$dir/verdict" "$dir/results" "$dir/targets" "$dir/mountinfo" "$dir/PRE-RAN"
  start_unit "$unit" >/dev/null 2>&1 || rc=$?
  if [ -e "$dir/PRE-RAN" ] || [ -e "$dir/verdict" ] || [ -e "$dir/results" ]; then
    if [ -s "$dir/results" ]; then
      bad=$(grep -v '^Read-only file system|' "$dir/results" || true)
      [ -z "$bad" ] || die "$unit RAN WITH A WRITABLE STORE (start status $rc); writes that did not fail with EROFS:
$(printf '%s\n' "$bad" | sed 's/^/      /')"
    fi
    [ "$rc" = 0 ] || die "$unit: the start failed (status $rc) but the service ran: $(ls "$dir" | tr '\n' ' ')"
    expect_confined "$unit"
    expect_all_erofs "$dir"
    expect_verdict "$dir" PASS
    SAFE_OUTCOME=read-only
  else
    [ "$rc" != 0 ] || die "$unit: systemctl start succeeded but nothing ran"
    ok "$unit: start refused (status $rc), nothing of it ran"
    ctl status -n 3 -- "$unit" 2>&1 | sed 's/^/      status| /' || true
    SAFE_OUTCOME=refused
  fi
}

# scenario DESCRIPTION CMD...: run CMD in a subshell (a `die` ends only this
# scenario); a failed scenario is remembered in SCENARIOS_FAILED, so that a
# case runs all its scenarios and then fails with `scenarios_done`. The
# subshell's status is taken after it ran, not tested by `if` or `||`: bash
# ignores `set -e` in everything run under a test, so a failed step of a
# hostile setup (a mask, a mount) would go unnoticed and the scenario pass
# without having attacked anything.
SCENARIOS_FAILED=()
scenario() {
  local what=$1 rc
  shift
  say "--- $what"
  set +e
  (
    set -e
    "$@"
  )
  rc=$?
  set -e
  if [ "$rc" != 0 ]; then
    SCENARIOS_FAILED+=("$what (status $rc)")
  fi
}
scenarios_done() {
  [ ${#SCENARIOS_FAILED[@]} = 0 ] && return 0
  say "FAILED scenarios:"
  printf '      %s\n' "${SCENARIOS_FAILED[@]}"
  exit 1
}

# expect_refused UNIT DIR: starting UNIT fails and nothing of it ran (its
# ExecStartPre= touches DIR/PRE-RAN, its checker writes DIR/verdict). Shows
# what `systemctl status` says of it and of the store view's mount unit.
expect_refused() {
  local unit=$1 dir=$2 rc=0
  rm -f "$dir/verdict" "$dir/results" "$dir/targets" "$dir/PRE-RAN"
  start_unit "$unit" 2>&1 | sed 's/^/      systemctl start| /' || rc=$?
  ctl status -n 4 -- "$unit" 2>&1 | sed 's/^/      status| /' || true
  ctl status -n 2 -- "$STORE_VIEW_UNIT" 2>&1 | sed 's/^/      view unit| /' || true
  if [ -e "$dir/results" ] && grep -qv '^Read-only file system|' "$dir/results"; then
    die "$unit RAN WITH A WRITABLE STORE (start status $rc): $(grep -v '^Read-only file system|' "$dir/results" | head -n 3 | tr '\n' ' ')"
  fi
  [ ! -e "$dir/PRE-RAN" ] && [ ! -e "$dir/verdict" ] || die "$unit ran (start status $rc): $(ls "$dir" | tr '\n' ' ')"
  [ "$rc" != 0 ] || die "$unit: systemctl start succeeded"
  ok "$unit: start refused (status $rc), nothing of it ran"
}

# unmount_view: the store view unmounted, and its unit inactive: systemd
# learns of an unmount from /proc/self/mountinfo a moment later (seen on 257:
# a start right after `umount` found the mount unit still active, did not
# mount it again, and failed).
view_unit_inactive() { [ "$(unit_prop "$STORE_VIEW_UNIT" ActiveState)" != active ]; }
unmount_view() {
  local i
  for i in 1 2 3 4 5; do
    in_ct mountpoint -q "$STORE_VIEW" 2>/dev/null || break
    in_ct umount "$STORE_VIEW"
  done
  in_ct mountpoint -q "$STORE_VIEW" 2>/dev/null && die "$STORE_VIEW is still mounted"
  wait_for 10 "$STORE_VIEW_UNIT to become inactive" view_unit_inactive
}
