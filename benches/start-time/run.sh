#!/usr/bin/env bash
# Start-time benchmark (issues 5 and 15): how long
# `systemctl start` of a confined oneshot service takes, by closure size, with
# the generator's closure view, with the generator's per-path binds and with
# the NixOS module's one-BindReadOnlyPaths=-per-path drop-in, side by side in
# one boot; and the cost per connection of a confined `Accept=yes` socket
# template in the three styles.
#
#   sudo benches/start-time/run.sh [options]
#
# Reuses the end-to-end harness (tests/e2e/lib/harness.sh): the cached Debian
# tree, the cached e2e Nix store (for its static busybox) and the container
# boot; and the synthetic store of benches/lib/synthetic-store.sh (5,000
# registered paths in a chain, the closure of path k is paths 1..k). A unit
# of size N runs the store's busybox (`ExecStart=@<busybox> true`: argv[0]
# true, the applet) with `X-ConfinementPackages=` path N-1: N paths with
# busybox.
#
# One unit not confined, ncg-bench-plain.service, timed first: what a start
# of this service costs here anyway. Per size N, four units:
#   ncg-bench-view-N.service   annotated: the container's generator (views on,
#                              the default) gives it the view drop-in
#   ncg-bench-hold-N.service   annotated, the same closure (so the same view):
#                              started to keep the view mounted for the
#                              "view (mounted)" runs
#   ncg-bench-path-N.service   not annotated in the container; the drop-in the
#                              generator writes with views off, installed in
#                              /etc/systemd/system/<unit>.d/. It is made before
#                              the boot by the same generator binary run with
#                              `[Generator] Views=` empty under a scratch root
#                              (this unit annotated, the bench store's /nix):
#                              views on or off is a setting of the whole
#                              generator, and this keeps all three styles in
#                              one boot, one kernel, one page cache
#   ncg-bench-nixos-N.service  not annotated; a hand-written drop-in with what
#                              the NixOS module writes (full-apivfs defaults)
#                              and one BindReadOnlyPaths= per closure path
# Every style's closure is checked to be the same set before anything is
# timed (the view: its record, and what the mounted view lists).
#
# Per size, in this order: the view's first starts (nothing else needs the
# view: the view unit builds the layer and mounts it, and stops with the
# service), the view's starts with the view already mounted (the holder
# running), the per-path starts, the NixOS-style starts.
#
# The socket case (size --socket-size, default 560): per style a socket
# ncg-bench-sock-STYLE.socket (ListenStream=127.0.0.1:PORT, Accept=yes) and
# its template (busybox echo ok, StandardInput/Output=socket); a client in the
# container (bash /dev/tcp) makes --connections connections one after the
# other, each timed from connect() to the reply's EOF. Views twice: with
# nothing else holding the view, and with a holder running.
#
# Options:
#   --suite NAME        bookworm (systemd 252, default) or trixie (systemd 257)
#   --sizes LIST        closure sizes, comma-separated (default
#                       100,500,1000,2000,5000; at most 5,000)
#   --runs N            runs per size of each generator style (default 5)
#   --nixos-runs N      runs per size of the NixOS-style unit (default 3)
#   --nixos-runs-max-size LIST
#                       SIZE:RUNS,...: at sizes >= SIZE only RUNS NixOS-style
#                       runs (default 2000:2,5000:1; one start takes about a
#                       minute at 2,000 paths and grows with the square)
#   --nixos-max N       do not start the NixOS-style unit above N paths; its
#                       time there is extrapolated from a quadratic fitted to
#                       the sizes measured, and marked so (default: none)
#   --socket-size N     closure size of the socket case (default 560; 0: no
#                       socket case)
#   --connections N     timed connections per style (default 20)
#   --socket-cases LIST which of view-first (nothing else holds the view),
#                       view-nolimit (the same, the view unit's start limit
#                       off by a drop-in), view (a holder running), path,
#                       nixos (default: all)
#   --settle S          pause before each timed start (default 1 s)
#   --generator BIN     the generator binary (default: cargo build --release in
#                       $CARGO_TARGET_DIR or target/)
#   --keep              keep the work directory
#   --out FILE          also write the table and every run to FILE
# Environment: as tests/e2e/run.sh (NCG_E2E_CACHE, NCG_E2E_MIRROR, ...).
#
# Exit status: 0 measured (a MISS is reported, not an error: it is a
# benchmark), 1 a start failed or the closures differ, 2 setup failed.
#
# TIMING. Each start is timed twice, both inside the container:
#  - wall: `date +%s.%N` before and after `systemctl start` in one shell in
#    the container: what an administrator waits for, including the D-Bus
#    round trip, the start of the view unit the service needs (views) and
#    the job's end (the unit is back to inactive); the table reports this.
#  - span: InactiveExitTimestampMonotonic -> ExecMainExitTimestampMonotonic
#    of the unit, i.e. from the start of its activation to the exit of its
#    main process: the manager's own work with no client overhead. It does
#    not include the view unit's start (the service's activation begins
#    after it): "layer" is that unit's own span (building the layer and
#    mounting the view), for the view's first starts. Not
#    ExecMainStartTimestampMonotonic: the manager takes that timestamp right
#    after fork(), before the child sets up its mount namespace, where all the
#    bind-mount cost is, so it measures nothing of interest (it is printed per
#    run as "fork" to show that).
# And around each start, the kernel's slab memory in use (the sum of
# active objects x object size in /proc/slabinfo, host-wide, so noisy): for
# the view's first starts, what a mounted view costs the kernel.
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../../tests/e2e/lib/helpers.sh
. "$BENCH/../../tests/e2e/lib/helpers.sh"
# shellcheck source=../../tests/e2e/lib/harness.sh
. "$BENCH/../../tests/e2e/lib/harness.sh"
# shellcheck source=../lib/synthetic-store.sh
. "$BENCH/../lib/synthetic-store.sh"

SIZES=100,500,1000,2000,5000
RUNS=5
NIXOS_RUNS=3
NIXOS_CAP=2000:2,5000:1
NIXOS_MAX=
SOCKET_SIZE=560
CONNECTIONS=20
SOCKET_CASES=view-first,view-nolimit,view,path,nixos
SETTLE=1
OUTFILE=
WORK_PREFIX=ncg-bench-start

while [ $# -gt 0 ]; do
  case $1 in
    --suite) SUITE=$2; shift 2 ;;
    --suite=*) SUITE=${1#--suite=}; shift ;;
    --sizes) SIZES=$2; shift 2 ;;
    --sizes=*) SIZES=${1#--sizes=}; shift ;;
    --runs) RUNS=$2; shift 2 ;;
    --runs=*) RUNS=${1#--runs=}; shift ;;
    --nixos-runs) NIXOS_RUNS=$2; shift 2 ;;
    --nixos-runs=*) NIXOS_RUNS=${1#--nixos-runs=}; shift ;;
    --nixos-runs-max-size) NIXOS_CAP=$2; shift 2 ;;
    --nixos-runs-max-size=*) NIXOS_CAP=${1#*=}; shift ;;
    --nixos-max) NIXOS_MAX=$2; shift 2 ;;
    --nixos-max=*) NIXOS_MAX=${1#*=}; shift ;;
    --socket-size) SOCKET_SIZE=$2; shift 2 ;;
    --socket-size=*) SOCKET_SIZE=${1#*=}; shift ;;
    --connections) CONNECTIONS=$2; shift 2 ;;
    --connections=*) CONNECTIONS=${1#*=}; shift ;;
    --socket-cases) SOCKET_CASES=$2; shift 2 ;;
    --socket-cases=*) SOCKET_CASES=${1#*=}; shift ;;
    --settle) SETTLE=$2; shift 2 ;;
    --settle=*) SETTLE=${1#--settle=}; shift ;;
    --generator) BINARY=$2; shift 2 ;;
    --generator=*) BINARY=${1#--generator=}; shift ;;
    --keep) KEEP=1; shift ;;
    --out) OUTFILE=$2; shift 2 ;;
    --out=*) OUTFILE=${1#--out=}; shift ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
IFS=, read -r -a SIZE_LIST <<<"$SIZES"
for n in "${SIZE_LIST[@]}" ${SOCKET_SIZE/#0/}; do
  [[ $n =~ ^[0-9]+$ ]] && [ "$n" -ge 2 ] && [ "$n" -le "$BENCH_PATHS" ] ||
    fatal "size $n: must be 2..$BENCH_PATHS"
done
[ -z "$NIXOS_MAX" ] || [[ $NIXOS_MAX =~ ^[0-9]+$ ]] || fatal "--nixos-max $NIXOS_MAX: not a number"
[ "$(id -u)" = 0 ] || fatal "run as root (mount, systemd-nspawn)"

# nixos_runs N: how many NixOS-style starts at size N (0: extrapolated).
nixos_runs() {
  local n=$1 runs=$NIXOS_RUNS cap
  if [ -n "$NIXOS_MAX" ] && [ "$n" -gt "$NIXOS_MAX" ]; then
    echo 0
    return
  fi
  for cap in ${NIXOS_CAP//,/ }; do
    [ "$n" -lt "${cap%%:*}" ] || runs=${cap#*:}
  done
  echo "$runs"
}

# ---- the units ------------------------------------------------------------------

SYSD=/etc/systemd/system
STYLES_SOCKET="view path nixos"
declare -A PORT=([view]=7101 [path]=7102 [nixos]=7103)

# oneshot_unit DESCRIPTION SIZE annotated|plain
oneshot_unit() {
  cat <<UNIT
[Unit]
Description=start-time bench: $1

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=@$NCG_S_BUSYBOX true
TimeoutStartSec=3600
UNIT
  if [ "$3" = annotated ]; then
    printf 'X-ConfinementEnable=yes\nX-ConfinementPackages=%s\n' "$(bench_path $(($2 - 1)))"
  fi
}

# socket_template DESCRIPTION SIZE annotated|plain: the service template of
# an Accept=yes socket, same closure as a oneshot unit of SIZE.
socket_template() {
  cat <<UNIT
[Unit]
Description=start-time bench: $1, connection %i

[Service]
ExecStart=@$NCG_S_BUSYBOX echo ok
StandardInput=socket
StandardOutput=socket
StandardError=journal
UNIT
  if [ "$3" = annotated ]; then
    printf 'X-ConfinementEnable=yes\nX-ConfinementPackages=%s\n' "$(bench_path $(($2 - 1)))"
  fi
}

socket_unit() { # socket_unit STYLE
  cat <<UNIT
[Unit]
Description=start-time bench: socket, $1 style

[Socket]
ListenStream=127.0.0.1:${PORT[$1]}
Accept=yes
MaxConnections=64
TriggerLimitIntervalSec=0
UNIT
}

install_units() {
  local n sysd=$ROOT$SYSD u scratch_units=() style
  mkdir -p "$WORK/per-path-units"
  # Not confined at all: what any start of this service costs here.
  oneshot_unit "not confined" 2 plain >"$sysd/ncg-bench-plain.service"
  for n in "${SIZE_LIST[@]}"; do
    oneshot_unit "view, $n paths" "$n" annotated >"$sysd/ncg-bench-view-$n.service"
    oneshot_unit "holds the view of $n paths" "$n" annotated >"$sysd/ncg-bench-hold-$n.service"
    u=ncg-bench-path-$n.service
    oneshot_unit "per-path binds, $n paths" "$n" plain >"$sysd/$u"
    oneshot_unit "per-path binds, $n paths" "$n" annotated >"$WORK/per-path-units/$u"
    scratch_units+=("$WORK/per-path-units/$u")
    u=ncg-bench-nixos-$n
    oneshot_unit "NixOS-module-style drop-in, $n paths" "$n" plain >"$sysd/$u.service"
    mkdir -p "$sysd/$u.service.d"
    nixos_style_dropin "$u" "$n" >"$sysd/$u.service.d/confinement.conf"
  done
  if [ "$SOCKET_SIZE" != 0 ]; then
    for style in $STYLES_SOCKET; do
      socket_unit "$style" >"$sysd/ncg-bench-sock-$style.socket"
    done
    socket_template "socket, view" "$SOCKET_SIZE" annotated >"$sysd/ncg-bench-sock-view@.service"
    oneshot_unit "holds the view of the socket's closure" "$SOCKET_SIZE" annotated \
      >"$sysd/ncg-bench-sock-hold.service"
    socket_template "socket, per-path binds" "$SOCKET_SIZE" plain >"$sysd/ncg-bench-sock-path@.service"
    socket_template "socket, per-path binds" "$SOCKET_SIZE" annotated \
      >"$WORK/per-path-units/ncg-bench-sock-path@.service"
    scratch_units+=("$WORK/per-path-units/ncg-bench-sock-path@.service")
    socket_template "socket, NixOS-module-style drop-in" "$SOCKET_SIZE" plain \
      >"$sysd/ncg-bench-sock-nixos@.service"
    mkdir -p "$sysd/ncg-bench-sock-nixos@.service.d"
    # %n: the instances of a socket's template may run at once; the module
    # names one root per service, which makes no difference to the cost.
    nixos_style_dropin %n "$SOCKET_SIZE" >"$sysd/ncg-bench-sock-nixos@.service.d/confinement.conf"
  fi
  # The per-path drop-ins: the generator with views off, before the boot.
  per_path_dropins "$BINARY" "$WORK/per-path-out" "${scratch_units[@]}"
  for u in "${scratch_units[@]}"; do
    u=$(basename "$u")
    [ -f "$WORK/per-path-out/$u.d/zz-confinement.conf" ] ||
      fatal "the generator with views off wrote no drop-in for $u"
    mkdir -p "$sysd/$u.d"
    {
      echo "# Written by benches/start-time/run.sh: the generator's drop-in with views off"
      cat "$WORK/per-path-out/$u.d/zz-confinement.conf"
    } >"$sysd/$u.d/zz-confinement.conf"
  done
  log "units installed; per-path drop-ins from the generator with [Generator] Views= empty"
}

# ---- checks -----------------------------------------------------------------------

declare -A DIGEST
# instance_of UNIT: UNIT, or for a template an instance of it (what systemd
# loads and shows).
instance_of() { case $1 in *@.service) echo "${1%@.service}@check.service" ;; *) echo "$1" ;; esac; }
# digest_of UNIT: the view the generator's drop-in of UNIT requires.
digest_of() {
  in_ct cat "/run/systemd/generator/$1.d/zz-confinement.conf" 2>/dev/null |
    sed -n 's/^Requires=nix-confinement-view@\([0-9a-f]\{32\}\)\.service$/\1/p'
}

# check_view UNIT HOLDER N: UNIT and HOLDER name one view, whose record
# lists the closure of size N; sets DIGEST[N].
check_view() {
  local unit=$1 holder=$2 n=$3 d h want got
  d=$(digest_of "$unit")
  [ -n "$d" ] || fatal "$unit: no view drop-in from the generator (see: journalctl -b in the container)"
  h=$(digest_of "$holder")
  [ "$d" = "$h" ] || fatal "$unit and $holder have the same closure but name views $d and $h"
  [ "$(ctl show -p RootDirectory --value "$(instance_of "$unit")")" = "/run/confinement/$(instance_of "$unit")" ] ||
    fatal "$unit: the view drop-in is not loaded"
  want=$(bench_closure "$n" | sed 's|^/nix/store/||')
  got=$(in_ct sed -n '3,$p' "/run/nix-confinement-generator/views/$d")
  [ "$got" = "$want" ] || fatal "size $n: the view record $d does not list the $n paths of the closure"
  DIGEST[$n]=$d
}

# check_per_path UNIT N: UNIT has the per-path drop-in, binding the closure.
check_per_path() {
  local unit=$1 n=$2 got
  got=$(sed -n 's/^BindPaths=[^:]*:\(\/nix\/store\/.*\)$/\1/p' "$ROOT$SYSD/$unit.d/zz-confinement.conf" | sort)
  [ "$got" = "$(bench_closure "$n")" ] || fatal "size $n: the per-path drop-in of $unit does not bind the closure"
  grep -q '^TemporaryFileSystem=/nix/store:ro$' "$ROOT$SYSD/$unit.d/zz-confinement.conf" ||
    fatal "$unit: not a per-path drop-in"
  case " $(ctl show -p DropInPaths --value "$(instance_of "$unit")") " in
    *" $SYSD/$unit.d/zz-confinement.conf "*) ;;
    *) fatal "$unit: its per-path drop-in is not loaded" ;;
  esac
}

check_nixos() { # check_nixos UNIT N
  [ "$(grep -c '^BindReadOnlyPaths=' "$ROOT$SYSD/$1.d/confinement.conf")" = "$2" ] ||
    fatal "$1: the NixOS-style drop-in does not have $2 binds"
  case " $(ctl show -p DropInPaths --value "$(instance_of "$1")") " in
    *" $SYSD/$1.d/confinement.conf "*) ;;
    *) fatal "$1: the NixOS-style drop-in is not loaded" ;;
  esac
}

# check_view_mounted N: with its holder running, the view of size N lists
# exactly the closure.
check_view_mounted() {
  local n=$1 got
  got=$(in_ct ls -A "/run/nix-confinement-views/${DIGEST[$n]}/s")
  [ "$got" = "$(bench_closure "$n" | sed 's|^/nix/store/||')" ] ||
    fatal "size $n: the mounted view does not list exactly the closure"
}

check_closures() {
  local n
  for n in "${SIZE_LIST[@]}"; do
    check_view "ncg-bench-view-$n.service" "ncg-bench-hold-$n.service" "$n"
    check_per_path "ncg-bench-path-$n.service" "$n"
    check_nixos "ncg-bench-nixos-$n.service" "$n"
  done
  if [ "$SOCKET_SIZE" != 0 ]; then
    check_view "ncg-bench-sock-view@.service" "ncg-bench-sock-hold.service" "$SOCKET_SIZE"
    check_per_path "ncg-bench-sock-path@.service" "$SOCKET_SIZE"
    check_nixos "ncg-bench-sock-nixos@.service" "$SOCKET_SIZE"
  fi
  log "closures checked: per size, the view's record, the per-path drop-in and the NixOS-style one list the same paths"
}

# ---- timing -------------------------------------------------------------------------

view_unit() { echo "nix-confinement-view@${DIGEST[$1]}.service"; }

# wait_inactive UNIT: until UNIT is inactive (a view unit stopping because
# nothing needs it any more), at most 60 s.
wait_inactive() {
  local i
  for i in $(seq 600); do
    case $(ctl show -p ActiveState --value "$1") in inactive | failed) return 0 ;; esac
    sleep 0.1
  done
  fatal "$1 is still active 60 s after nothing needs it"
}

# time_start UNIT [VIEW-UNIT]: one start; prints "wall span fork layer slab"
# (seconds, seconds, seconds, seconds, KiB): layer is VIEW-UNIT's span (0
# without), slab the change of slab memory in use across the start. The
# units have RemainAfterExit=yes: a finished oneshot unit that nothing
# references is unloaded at once, and its timestamps with it (seen on 252:
# all 0), so each start is followed, untimed, by a stop (which also removes
# its runtime directory, as the end of a oneshot without RemainAfterExit=
# would).
time_start() {
  local out
  out=$(in_ct /bin/sh -c '
    slab() { awk "NR > 2 { s += \$2 * \$4 } END { printf \"%d\", s / 1024 }" /proc/slabinfo; }
    s0=$(slab)
    a=$(date +%s.%N)
    systemctl start "$1" || exit 1
    b=$(date +%s.%N)
    s1=$(slab)
    echo "wall $a $b"
    echo "slab $s0 $s1"
    systemctl show -p InactiveExitTimestampMonotonic -p ExecMainStartTimestampMonotonic \
      -p ExecMainExitTimestampMonotonic -p ExecMainStatus "$1"
    if [ -n "$2" ]; then
      systemctl show -p InactiveExitTimestampMonotonic -p ExecMainExitTimestampMonotonic "$2" |
        sed "s/^/view/"
    fi
    systemctl stop "$1"' sh "$1" "${2:-}") ||
    { ctl status -n 20 "$1" >&2 || true; fatal "systemctl start $1 failed"; }
  awk '
    $1 == "wall" { wall = $3 - $2; next }
    $1 == "slab" { slab = $3 - $2; next }
    { split($0, kv, "=") ; v[kv[1]] = kv[2] }
    END {
      if (v["ExecMainStatus"] != "0") { print "bad status " v["ExecMainStatus"] > "/dev/stderr"; exit 1 }
      layer = 0
      if ("viewInactiveExitTimestampMonotonic" in v)
        layer = (v["viewExecMainExitTimestampMonotonic"] - v["viewInactiveExitTimestampMonotonic"]) / 1e6
      printf "%.4f %.4f %.4f %.4f %d\n", wall,
        (v["ExecMainExitTimestampMonotonic"] - v["InactiveExitTimestampMonotonic"]) / 1e6,
        (v["ExecMainStartTimestampMonotonic"] - v["InactiveExitTimestampMonotonic"]) / 1e6,
        layer, slab
    }' <<<"$out"
}

# connect_loop PORT COUNT: COUNT connections one after the other, each timed
# from connect() to the reply's EOF; prints "latency ok" (seconds) a line,
# or "latency failed" when the reply was not "ok" (the instance failed: a
# finding, reported, not a reason to stop). Only shell builtins between the
# two timestamps.
connect_loop() {
  in_ct /bin/bash -c '
    for ((i = 1; i <= $2; i++)); do
      a=$EPOCHREALTIME
      exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
      r=
      while IFS= read -r line <&3; do r+=$line; done
      exec 3<&-
      b=$EPOCHREALTIME
      if [ "$r" = ok ]; then echo "$a $b ok"; else echo "$a $b failed"; fi
    done' sh "$1" "$2" | awk '{ printf "%.4f %s\n", $2 - $1, $3 }'
}

# view_builds DIGEST: how many times its view unit has been started so far.
view_builds() {
  in_ct journalctl -b --no-pager -o cat -u "nix-confinement-view@$1.service" 2>/dev/null |
    grep -c '^Starting ' || true
}

# ---- main ---------------------------------------------------------------------------

trap cleanup EXIT
trap 'exit 130' INT TERM

T_BENCH=$EPOCHREALTIME
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
prepare_inputs
prepare_work
install_generator
install_units
STORE_ROOT=$BSTORE # the container's /nix
BOOT_MODE=ro
start_container ro
check_closures

RES=$WORK/results
SOCK=$WORK/socket
: >"$RES"
: >"$SOCK"
: >"$SOCK.builds"
# Warm-up, not counted: one start of each generator unit (fills the dentry
# cache for every path), the view mounted once by its holder and checked to
# list exactly the closure, and one start of the smallest NixOS-style unit.
for n in "${SIZE_LIST[@]}"; do
  time_start "ncg-bench-view-$n.service" >/dev/null
  time_start "ncg-bench-path-$n.service" >/dev/null
  ctl start "ncg-bench-hold-$n.service"
  check_view_mounted "$n"
  ctl stop "ncg-bench-hold-$n.service"
done
time_start "ncg-bench-nixos-${SIZE_LIST[0]}.service" >/dev/null
time_start ncg-bench-plain.service >/dev/null
for ((r = 1; r <= RUNS; r++)); do
  sleep "$SETTLE"
  read -r w s f l k < <(time_start ncg-bench-plain.service)
  echo "0 plain $r $w $s $f $l $k" >>"$RES"
done
log "not confined: wall $(awk '$2 == "plain" { print $4 }' "$RES" | median) s (median of $RUNS)"
log "warm-up done; the mounted views list exactly their closures; measuring"

# The socket case first: short.
if [ "$SOCKET_SIZE" != 0 ]; then
  d=${DIGEST[$SOCKET_SIZE]}
  for style in $STYLES_SOCKET; do ctl start "ncg-bench-sock-$style.socket"; done
  sock_case() { # sock_case LABEL STYLE
    local builds0 builds1
    sleep "$SETTLE"
    connect_loop "${PORT[$2]}" 1 >/dev/null # warm-up
    sleep "$SETTLE"
    case $1 in view-first | view-nolimit) wait_inactive "nix-confinement-view@$d.service" ;; esac
    ctl reset-failed "nix-confinement-view@$d.service" 2>/dev/null || true
    builds0=$(view_builds "$d")
    connect_loop "${PORT[$2]}" "$CONNECTIONS" | sed "s/^/$1 /" >>"$SOCK" ||
      { ctl status -n 20 "ncg-bench-sock-$2.socket" >&2 || true; fatal "cannot connect to the $2 socket"; }
    builds1=$(view_builds "$d")
    if grep -q "^$1 .* failed\$" "$SOCK"; then
      log "socket, $1: $(grep -c "^$1 .* failed\$" "$SOCK") connections failed; their units:"
      ctl list-units --failed --plain --no-legend "ncg-bench-sock-$2@*" "nix-confinement-view@*" >&2 || true
      in_ct journalctl -b --no-pager -o short-monotonic -n 60 \
        -u "ncg-bench-sock-$2@*" -u "nix-confinement-view@$d.service" >"$WORK/logs/socket-$1-failures.log" 2>&1 || true
      tail -n 30 "$WORK/logs/socket-$1-failures.log" >&2
      ctl reset-failed >/dev/null 2>&1 || true
    fi
    if [ "$2" = view ]; then
      echo "$1 builds $((builds1 - builds0))" >>"$SOCK.builds"
    else
      echo "$1 builds -" >>"$SOCK.builds"
    fi
    log "socket, $1: $CONNECTIONS connections, median $(awk -v s="$1" '$1 == s && $3 == "ok" { print $2 }' "$SOCK" | median) s (view units started meanwhile: $((builds1 - builds0)))"
  }
  for c in ${SOCKET_CASES//,/ }; do
    case $c in
      view-first) sock_case view-first view ;;
      view-nolimit)
        # The same with the view unit's start limit off, as a drop-in of
        # this benchmark: what a connection costs when the view is built
        # for it, without the failures the limit brings.
        mkdir -p "$ROOT$SYSD/nix-confinement-view@$d.service.d"
        printf '[Unit]\nStartLimitIntervalSec=0\n' >"$ROOT$SYSD/nix-confinement-view@$d.service.d/50-bench-no-start-limit.conf"
        ctl daemon-reload
        ctl reset-failed "nix-confinement-view@$d.service" || true
        sock_case view-nolimit view
        rm -r "$ROOT$SYSD/nix-confinement-view@$d.service.d"
        ctl daemon-reload
        ;;
      view)
        ctl start ncg-bench-sock-hold.service
        sock_case view view
        ctl stop ncg-bench-sock-hold.service
        ;;
      path | nixos) sock_case "$c" "$c" ;;
      *) fatal "--socket-cases: unknown case $c" ;;
    esac
  done
fi
# Per size: the styles one after the other. Each timed start comes after a
# pause of $SETTLE s: the tear-down of a service's mount namespace with
# thousands of mounts goes on after its process has exited (mounts are freed
# after an RCU grace period), and a start right after a big NixOS-style run
# was seen to take up to 25 % longer.
for n in "${SIZE_LIST[@]}"; do
  view=$(view_unit "$n")
  for ((r = 1; r <= RUNS; r++)); do
    sleep "$SETTLE"
    wait_inactive "$view"
    # The view unit has systemd's default start limit (5 starts in 10 s),
    # which these runs, a second apart, would hit: flushed, untimed.
    ctl reset-failed "$view" 2>/dev/null || true
    read -r w s f l k < <(time_start "ncg-bench-view-$n.service" "$view")
    echo "$n view-first $r $w $s $f $l $k" >>"$RES"
    log "size $n run $r: view, first start: wall $w s (span $s, layer $l, slab +$k KiB)"
  done
  ctl start "ncg-bench-hold-$n.service"
  for ((r = 1; r <= RUNS; r++)); do
    sleep "$SETTLE"
    read -r w s f l k < <(time_start "ncg-bench-view-$n.service")
    echo "$n view $r $w $s $f $l $k" >>"$RES"
    log "size $n run $r: view, mounted: wall $w s (span $s)"
  done
  ctl stop "ncg-bench-hold-$n.service"
  for ((r = 1; r <= RUNS; r++)); do
    sleep "$SETTLE"
    read -r w s f l k < <(time_start "ncg-bench-path-$n.service")
    echo "$n path $r $w $s $f $l $k" >>"$RES"
    log "size $n run $r: per-path: wall $w s (span $s)"
  done
  nruns=$(nixos_runs "$n")
  for ((r = 1; r <= nruns; r++)); do
    sleep "$SETTLE"
    read -r w s f l k < <(time_start "ncg-bench-nixos-$n.service")
    echo "$n nixos $r $w $s $f $l $k" >>"$RES"
    log "size $n run $r: NixOS-style: wall $w s (span $s)"
  done
  [ "$nruns" = 0 ] || sleep 5
done

SYSTEMD_VERSION=$(ctl --version | head -n1)
stop_container
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- report ---------------------------------------------------------------------------

med() { awk -v n="$1" -v s="$2" -v c="$3" '$1 == n && $2 == s { print $c }' "$RES" | median; }
has_runs() { awk -v n="$1" -v s="$2" '$1 == n && $2 == s { f = 1 } END { exit !f }' "$RES"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { print a / b }'; }
# A quadratic a + b n + c n^2 fitted (least squares) to the NixOS-style
# medians, for the sizes not measured: "a b c", or nothing with fewer than 3.
nixos_fit() {
  local n
  for n in "${SIZE_LIST[@]}"; do
    has_runs "$n" nixos && echo "$n $(med "$n" nixos 4)"
  done | awk '
    { x = $1; y = $2; m++
      s0 += 1; s1 += x; s2 += x^2; s3 += x^3; s4 += x^4; t0 += y; t1 += x * y; t2 += x^2 * y }
    END {
      if (m < 3) exit
      # Cramer on the normal equations [s0 s1 s2; s1 s2 s3; s2 s3 s4] (a b c) = (t0 t1 t2)
      D = s0 * (s2 * s4 - s3 * s3) - s1 * (s1 * s4 - s3 * s2) + s2 * (s1 * s3 - s2 * s2)
      A = t0 * (s2 * s4 - s3 * s3) - s1 * (t1 * s4 - s3 * t2) + s2 * (t1 * s3 - s2 * t2)
      B = s0 * (t1 * s4 - t2 * s3) - t0 * (s1 * s4 - s3 * s2) + s2 * (s1 * t2 - t1 * s2)
      C = s0 * (s2 * t2 - s3 * t1) - s1 * (s1 * t2 - s2 * t1) + t0 * (s1 * s3 - s2 * s2)
      printf "%.6g %.6g %.6g\n", A / D, B / D, C / D
    }'
}
declare -A VF VW PP NX NXMARK
{
  echo "Start time of a confined oneshot service (ExecStart=busybox true), $SYSTEMD_VERSION, Debian $SUITE, kernel $(uname -r)"
  echo "generator $BINARY, benchmark at $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo '?'), $(date -u +%Y-%m-%d)"
  echo "load average before $LOAD_BEFORE, after $LOAD_AFTER ($(nproc) CPUs)"
  echo "wall time of 'systemctl start' inside the container, median of $RUNS runs per generator style"
  echo "(NixOS-style: $NIXOS_RUNS, fewer at larger sizes: $NIXOS_CAP${NIXOS_MAX:+; not started above $NIXOS_MAX paths});"
  echo "view first = nothing else needs the view: its unit builds the layer and mounts it;"
  echo "view mounted = the view already mounted for another unit with the same closure."
  echo "The same service not confined: $(med 0 plain 4) s (span $(med 0 plain 5) s)."
  echo
  read -r FA FB FC < <(nixos_fit) || true
  printf '%7s  %10s  %10s  %10s  %12s  %10s  %10s  %8s  %11s  %9s\n' paths "view first" "view mntd" "per-path" \
    "NixOS-style" "NixOS/vf" "NixOS/vm" "layer" "slab/view" "path span"
  for n in "${SIZE_LIST[@]}"; do
    VF[$n]=$(med "$n" view-first 4)
    VW[$n]=$(med "$n" view 4)
    PP[$n]=$(med "$n" path 4)
    if has_runs "$n" nixos; then
      NX[$n]=$(med "$n" nixos 4)
      NXMARK[$n]=" "
    elif [ -n "${FC:-}" ]; then
      NX[$n]=$(awk -v a="$FA" -v b="$FB" -v c="$FC" -v n="$n" 'BEGIN { print a + b * n + c * n * n }')
      NXMARK[$n]="*"
    else
      NX[$n]=0
      NXMARK[$n]="?"
    fi
    printf '%7s  %10.3f  %10.3f  %10.3f  %11.2f%s  %9.0fx  %9.0fx  %8.3f  %7.0f KiB  %9.3f\n' "$n" \
      "${VF[$n]}" "${VW[$n]}" "${PP[$n]}" "${NX[$n]}" "${NXMARK[$n]}" \
      "$(ratio "${NX[$n]}" "${VF[$n]}")" "$(ratio "${NX[$n]}" "${VW[$n]}")" \
      "$(med "$n" view-first 7)" "$(med "$n" view-first 8)" "$(med "$n" path 5)"
  done
  echo "layer: the view unit's span (build the layer, mount the view) in the first starts; slab/view: slab"
  echo "memory in use (host-wide) after a first start minus before; path span: the per-path unit's span."
  if [ -n "${FC:-}" ]; then
    echo "NixOS-style fit (least squares over the sizes measured): $FA + $FB n + $FC n^2 s;"
    for n in "${SIZE_LIST[@]}"; do
      printf '  %s paths: fit %.2f s%s\n' "$n" "$(awk -v a="$FA" -v b="$FB" -v c="$FC" -v n="$n" 'BEGIN { print a + b * n + c * n * n }')" \
        "$([ "${NXMARK[$n]}" = "*" ] && echo ' (not measured: the table shows this, marked *)' || printf ', measured %.2f s' "${NX[$n]}")"
    done
  fi
  if [ -s "$SOCK" ]; then
    echo
    echo "Accept=yes socket template, $SOCKET_SIZE-path closure: $CONNECTIONS connections one after the other,"
    echo "each timed from connect() to the reply's EOF inside the container (seconds; of the connections"
    echo "answered; failed: no reply, the instance failed; view built: starts of the view unit meanwhile)"
    printf '  %-34s  %8s  %8s  %8s  %8s  %10s  %s\n' style median min max mean "view built" failed
    for s in ${SOCKET_CASES//,/ }; do
      case $s in
        view-first) label="view (nothing else holds it)" ;;
        view-nolimit) label="view (idem, no start limit)" ;;
        view) label="view (held by a running unit)" ;;
        path) label="per-path binds" ;;
        nixos) label="NixOS-style" ;;
      esac
      awk -v s="$s" '$1 == s && $3 == "ok" { print $2 }' "$SOCK" | sort -g | awk -v label="$label" \
        -v builds="$(awk -v s="$s" '$1 == s && $2 == "builds" { print $3 }' "$SOCK.builds")" \
        -v failed="$(awk -v s="$s" '$1 == s && $3 == "failed" { n++ } END { print n + 0 }' "$SOCK")" '
        { a[NR] = $1; t += $1 }
        END {
          m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
          printf "  %-34s  %8.3f  %8.3f  %8.3f  %8.3f  %10s  %s\n", label, m, a[1], a[NR], t / NR, builds, failed
        }'
    done
  fi
  echo
  echo "Targets (issue 15, closure views):"
  target() { # target DESCRIPTION VALUE OP LIMIT UNIT
    local verdict
    verdict=$(awk -v v="$2" -v l="$4" -v op="$3" 'BEGIN { ok = (op == "<=") ? (v <= l) : (v >= l); print ok ? "PASS" : "MISS" }')
    printf '  %-4s  %-50s %9.3f%s (target %s %s%s)\n' "$verdict" "$1" "$2" "$5" "$3" "$4" "$5"
  }
  has() { [ -n "${VW[$1]:-}" ]; }
  xmark() { [ "${NXMARK[$1]}" != "*" ] || echo " (extrapolated)"; }
  if has 2000; then
    target "2,000 paths, view mounted" "${VW[2000]}" "<=" 0.15 " s"
    target "2,000 paths, view first start" "${VF[2000]}" "<=" 0.15 " s"
    target "NixOS-style / view mounted at 2,000$(xmark 2000)" "$(ratio "${NX[2000]}" "${VW[2000]}")" ">=" 300 "x"
    target "NixOS-style / view first start at 2,000$(xmark 2000)" "$(ratio "${NX[2000]}" "${VF[2000]}")" ">=" 300 "x"
  fi
  if has 100 && has 5000; then
    target "flat: view mounted, 5,000 / 100 paths" "$(ratio "${VW[5000]}" "${VW[100]}")" "<=" 3 "x"
    target "flat: view first start, 5,000 / 100 paths" "$(ratio "${VF[5000]}" "${VF[100]}")" "<=" 3 "x"
  fi
  echo "Targets (issue 5, the per-path binds, for reference):"
  has 1000 && target "1,000 paths, per-path" "${PP[1000]}" "<=" 0.6 " s"
  has 2000 && target "2,000 paths, per-path" "${PP[2000]}" "<=" 1.2 " s"
  has 1000 && target "NixOS-style / per-path at 1,000$(xmark 1000)" "$(ratio "${NX[1000]}" "${PP[1000]}")" ">=" 20 "x"
  has 2000 && target "NixOS-style / per-path at 2,000$(xmark 2000)" "$(ratio "${NX[2000]}" "${PP[2000]}")" ">=" 40 "x"
  has 1000 && has 2000 && target "growth of per-path 1,000 -> 2,000" "$(ratio "${PP[2000]}" "${PP[1000]}")" "<=" 2.3 "x"
  echo
  echo "benchmark took $(awk -v a="$T_BENCH" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }') s"
} | tee "$WORK/report"
if [ -n "$OUTFILE" ]; then
  {
    cat "$WORK/report"
    echo
    echo "every run: size style run wall span fork layer slab-KiB (seconds; styles view-first view path nixos)"
    cat "$RES"
    if [ -s "$SOCK" ]; then
      echo "every connection: style latency (seconds)"
      cat "$SOCK"
    fi
  } >"$OUTFILE"
fi
