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
#   NCG_BINDING  how closures are bound: view (closure views) or per-path
#   NCG_S_*    store paths of the test store (NCG_S_CHECK, NCG_S_BB, ...)
# It passes when it exits 0. Everything it prints is shown when it fails.

# Run a command inside the container (all namespaces of its init).
in_ct() { nsenter -t "$NCG_PID" -a -- "$@"; }

ctl() { in_ct systemctl --no-pager "$@"; }

say() { printf '    %s\n' "$*"; }
ok() { say "ok: $*"; }
die() { # (on stderr: seen also when it ends a $(...))
  say "FAIL: $*" >&2
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
  [ -z "${NCG_BINDING:-}" ] || expect_binding "$unit" "${NCG_EXPECT_BINDING:-$NCG_BINDING}"
}

# expect_binding UNIT view|per-path: the unit's store comes from a closure
# view (it requires the view's unit) or path by path from the read-only
# store view (it requires that mount unit), as the suite's binding mode
# says: a run in one mode must not test the other.
expect_binding() {
  local unit=$1 want=$2 requires
  requires=$(unit_prop "$unit" Requires)
  case $want in
    view)
      case " $requires " in
        *" nix-confinement-view@"*) ok "$unit: its closure is bound from a closure view" ;;
        *) die "$unit: not bound from a closure view (Requires=$requires)" ;;
      esac
      ;;
    per-path)
      case " $requires " in
        *" nix-confinement-view@"*) die "$unit: bound from a closure view, expected path by path (Requires=$requires)" ;;
        # (systemctl show quotes the name and doubles its backslashes)
        *run-nix*x2dconfinement*x2dstore.mount*) ok "$unit: each store path is bound on its own" ;;
        *) die "$unit: requires neither a closure view nor $STORE_VIEW_UNIT (Requires=$requires)" ;;
      esac
      ;;
    *) die "expect_binding: unknown binding '$want'" ;;
  esac
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
  local dir=$1 got want links
  shift
  want=$(closure_of "$@")
  if [ "${NCG_BINDING:-}" = view ]; then
    # A view shows a symlink store path as the symlink it is: not a
    # directory or file to write (its target, in the closure, is probed).
    links=$(in_ct find /nix/store -mindepth 1 -maxdepth 1 -type l | sort)
    want=$(comm -23 <(printf '%s\n' "$want") <(printf '%s\n' "$links"))
  fi
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

# expect_store_writable_outside: the container's /nix/store (outside every
# service) can be written: the setup of a case that rebinds or remounts it
# worked, so the service's read-only store is what is being tested.
expect_store_writable_outside() {
  in_ct /bin/sh -c 'touch /nix/store/.ncg-e2e-probe && rm /nix/store/.ncg-e2e-probe' ||
    die "/nix/store is not writable in the container"
  ok "/nix/store is writable in the container: $(in_ct findmnt -n -o OPTIONS,PROPAGATION --target /nix/store | tail -n 1)"
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

# ---- closure views ------------------------------------------------------------
# Each confined unit requires nix-confinement-view@DIGEST.service, which mounts
# its closure's view (a read-only overlayfs) at $VIEWS/DIGEST from the record
# $VIEW_RECORDS/DIGEST; the unit binds $VIEWS/DIGEST/s at /nix/store.

VIEWS=/run/nix-confinement-views
VIEW_RECORDS=/run/nix-confinement-generator/views

# view_digest UNIT: the digest of the view UNIT requires (fails if none).
view_digest() {
  local d
  d=$(unit_prop "$1" Requires | grep -o 'nix-confinement-view@[0-9a-f]\{32\}' | head -n1) ||
    die "$1 requires no closure view (Requires=$(unit_prop "$1" Requires))"
  echo "${d#*@}"
}
view_unit() { echo "nix-confinement-view@$1.service"; }

# expect_view_mounted DIGEST: one mount at the view's place, the overlay,
# read-only and private (a mount below it would not reach the services).
expect_view_mounted() {
  local d=$1 lines fstype source opts prop
  lines=$(in_ct findmnt -n -o FSTYPE,SOURCE,OPTIONS,PROPAGATION "$VIEWS/$d" 2>/dev/null) ||
    die "the view $d is not mounted ($(view_unit "$d"): $(unit_prop "$(view_unit "$d")" ActiveState))"
  [ "$(printf '%s\n' "$lines" | wc -l)" = 1 ] || die "more than one mount at $VIEWS/$d:
$lines"
  read -r fstype source opts prop <<<"$lines"
  [ "$fstype $source" = "overlay nix-confinement-view" ] || die "$VIEWS/$d is a $fstype mount of $source"
  case ,$opts, in *,ro,*) ;; *) die "$VIEWS/$d is mounted $opts" ;; esac
  [ "$prop" = private ] || die "$VIEWS/$d has propagation $prop, expected private"
  # Its layer is reachable by no path (staged on a tmpfs that was detached
  # once the view was mounted): nothing can change it under the view.
  ! in_ct findmnt -rn -o TARGET | grep -q '/\.layer-' || die "a layer's staging mount is still attached:
$(in_ct findmnt -rn -o TARGET | grep '/\.layer-')"
  ! in_ct ls -A "$VIEW_RECORDS" | grep -q '^\.layer-' || die "a layer's staging directory is left in $VIEW_RECORDS"
  ok "the view $d is mounted: overlayfs, read-only, private; its layer reachable by no path"
}

# expect_view_stopped DIGEST: its unit is not active and nothing is mounted
# at its place (stopped when no unit needed it any more).
expect_view_stopped() {
  local d=$1 u
  u=$(view_unit "$d")
  wait_for 10 "$u to stop" view_inactive "$d"
  ! in_ct mountpoint -q "$VIEWS/$d" 2>/dev/null || die "$VIEWS/$d is still mounted"
  ok "$u stopped, nothing mounted at $VIEWS/$d"
}
view_inactive() { # (deactivating is not yet: ExecStop= still runs)
  case $(unit_prop "$(view_unit "$1")" ActiveState) in inactive | failed) ;; *) return 1 ;; esac
}

# expect_view_mounts MOUNTINFO DIGEST: in a service's mountinfo, /nix/store
# is one read-only mount of the view DIGEST's s/ directory, nothing is
# mounted below it, and /bin/sh (if bound) comes from the same view.
expect_view_mounts() {
  local mi=$1 d=$2 store below sh dev
  [ -s "$mi" ] || die "no mountinfo at ${mi#"$NCG_OUT_ROOT"}"
  store=$(awk '$5 == "/nix/store"' "$mi")
  [ "$(printf '%s\n' "$store" | grep -c .)" = 1 ] || die "not one mount at /nix/store:
$store"
  awk -v d="$d" '{
      for (i = 7; $i != "-"; i++) ;
      ok = $4 == "/s" && $(i + 1) == "overlay" && $(i + 2) == "nix-confinement-view" &&
        index($(i + 3), "lowerdir=/run/nix-confinement-generator/views/.layer-" d "-") &&
        ("," $6 ",") ~ /,ro,/
      exit !ok
    }' <<<"$store" || die "/nix/store is not the view $d's s/, read-only: $store"
  below=$(awk '$5 ~ "^/nix/store/"' "$mi")
  [ -z "$below" ] || die "mounts below /nix/store:
$below"
  dev=$(awk '{ print $3 }' <<<"$store")
  sh=$(awk '$5 == "/bin/sh"' "$mi")
  if [ -n "$sh" ]; then
    # read-only as a mount, or as a file system (the view's superblock
    # is read-only whatever a remount of the host's view made the mount)
    awk -v dev="$dev" '{
        for (i = 7; $i != "-"; i++) ;
        exit !($3 == dev && $4 ~ "^/s/" && (("," $6 ",") ~ /,ro,/ || ("," $(i + 3) ",") ~ /,ro,/))
      }' <<<"$sh" || die "/bin/sh is not a read-only bind from the view: $sh"
  fi
  ok "inside: /nix/store is the view $d (one read-only overlayfs mount, nothing below it)${sh:+, /bin/sh from it}"
}

# expect_store_mounts MOUNTINFO UNIT NAME...: the store inside, as the
# binding mode makes it: one mount per closure path of the named store
# paths (per-path), or UNIT's view.
expect_store_mounts() {
  local mi=$1 unit=$2
  shift 2
  if [ "$NCG_BINDING" = per-path ]; then
    expect_store_mounts_ro "$mi" "$@"
  else
    expect_view_mounts "$mi" "$(view_digest "$unit")"
  fi
}

# main_pid UNIT: its main process (the unit must be running).
main_pid() {
  local pid
  pid=$(unit_prop "$1" MainPID)
  [ -n "$pid" ] && [ "$pid" != 0 ] || die "$1 has no main process"
  echo "$pid"
}

# store_names_seen_by UNIT: `ls -A /nix/store` as UNIT's main process sees it
# (through /proc/PID/root: its own mount namespace), sorted.
store_names_seen_by() { in_ct ls -A "/proc/$(main_pid "$1")/root/nix/store" | sort; }

# names_of PATH...: the store path names (without /nix/store/), sorted.
names_of() { printf '%s\n' "$@" | sed 's|^/nix/store/||' | sort -u; }

# expect_refused_because UNIT DIR TEXT...: starting UNIT fails, nothing of
# it ran (its ExecStartPre= touches DIR/PRE-RAN), and what systemd says —
# the start's error, `systemctl status` of UNIT and of the view unit it
# requires, that unit's journal — contains each TEXT (why it was refused).
# The journal is asked too: `systemctl status` shows only what was logged
# after the unit's last activation began, and the journal was seen to stamp
# the line a failing `view start` wrote (to stderr, at once) before that
# (systemd 252, about one start in ten): the line is then in `journalctl -u`
# but not in the status.
expect_refused_because() {
  local unit=$1 dir=$2 rc=0 started said missing d t i
  shift 2
  rm -f "$dir/PRE-RAN" "$dir/verdict" "$dir/results"
  d=$(view_digest "$unit")
  started=$(timeout 120 nsenter -t "$NCG_PID" -a -- systemctl --no-pager start -- "$unit" 2>&1) || rc=$?
  # What a unit wrote to stderr reaches the journal (and so the status) a
  # moment after systemd's own lines: asked again for up to 5 s.
  for i in $(seq 50); do
    said=$started$'\n'$(ctl status -n 8 -- "$unit" 2>&1 || true)
    said+=$'\n'$(ctl status -n 8 -- "$(view_unit "$d")" 2>&1 || true)
    said+=$'\n'$(in_ct journalctl --no-pager -o cat -n 8 -u "$(view_unit "$d")" 2>&1 | sed 's/^/journal: /' || true)
    missing=
    for t in "$@"; do
      grep -qF -- "$t" <<<"$said" || missing=$t
    done
    [ -n "$missing" ] || break
    sleep 0.1
  done
  printf '%s\n' "$said" | sed 's/^/      said| /'
  [ ! -e "$dir/PRE-RAN" ] && [ ! -e "$dir/verdict" ] || die "$unit ran (start status $rc): $(ls "$dir" | tr '\n' ' ')"
  [ "$rc" != 0 ] || die "$unit: systemctl start succeeded"
  [ -z "$missing" ] || die "systemctl does not say '$missing'"
  ok "$unit: start refused (status $rc), nothing of it ran; systemctl says: $(printf "'%s' " "$@")"
}
