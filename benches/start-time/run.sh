#!/usr/bin/env bash
# Start-time benchmark (SPEC §10 "Service start", issue 5): how long
# `systemctl start` of a confined oneshot service takes, by closure size, with
# the generator's drop-in and with the NixOS module's one-BindReadOnlyPaths=-
# per-path drop-in, side by side in the same container.
#
#   sudo benches/start-time/run.sh [options]
#
# Reuses the end-to-end harness (tests/e2e/lib/harness.sh): the cached Debian
# tree, the cached e2e Nix store (for its static busybox) and the container
# boot. Adds a cached synthetic store: a copy of the e2e store plus 2,000
# registered paths (`nix-store --load-db`, each path a directory on disk so
# that binds have a source) in a chain (path i references i-1, i/2 and i-7),
# so the closure of path k is exactly paths 1..k. A unit of size N runs the
# store's busybox (`ExecStart=@<busybox> true`: argv[0] true, the applet) with `X-ConfinementPackages=`
# path N-1: N paths with busybox.
#
# Per size, two units:
#   ncg-bench-ours-N.service    annotated (X-ConfinementEnable=yes): the drop-in
#                               and the store view mount unit written by the
#                               real generator at boot/daemon-reload
#   ncg-bench-nixos-N.service   not annotated; a hand-written drop-in in
#                               /etc/systemd/system/<unit>.d/ with what the
#                               NixOS module writes (full-apivfs defaults) and
#                               one BindReadOnlyPaths= per path of the same
#                               closure (computed on the host, nix-store -qR)
# Both closures are checked to be the same set before anything is timed.
#
# The container boots once; per size, the generator's unit's runs, then the
# NixOS-style ones.
# Timing: see TIMING below. Prints a table (median of the runs) and the
# targets of issue 5 with PASS/MISS.
#
# Options:
#   --suite NAME        bookworm (systemd 252, default) or trixie (systemd 257)
#   --sizes LIST        closure sizes, comma-separated (default 100,500,1000,2000)
#   --runs N            runs per size of the generator's unit (default 5)
#   --nixos-runs N      runs per size of the NixOS-style unit (default 3)
#   --nixos-runs-max-size N:R
#                       at sizes >= N, only R NixOS-style runs (default 2000:2;
#                       one such start takes 47-62 s)
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
#    round trip and the job's end (the unit is back to inactive); the table
#    reports this.
#  - span: InactiveExitTimestampMonotonic -> ExecMainExitTimestampMonotonic
#    of the unit, i.e. from the start of its activation to the exit of its
#    main process: the manager's own work with no client overhead. Not
#    ExecMainStartTimestampMonotonic: the manager takes that timestamp right
#    after fork(), before the child sets up its mount namespace, where all the
#    bind-mount cost is, so it measures nothing of interest (it is printed per
#    run as "fork" to show that).
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../../tests/e2e/lib/helpers.sh
. "$BENCH/../../tests/e2e/lib/helpers.sh"
# shellcheck source=../../tests/e2e/lib/harness.sh
. "$BENCH/../../tests/e2e/lib/harness.sh"

SIZES=100,500,1000,2000
RUNS=5
NIXOS_RUNS=3
NIXOS_CAP=2000:2
SETTLE=1
OUTFILE=
BENCH_PATHS=2000
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
    --settle) SETTLE=$2; shift 2 ;;
    --settle=*) SETTLE=${1#--settle=}; shift ;;
    --nixos-runs-max-size) NIXOS_CAP=$2; shift 2 ;;
    --nixos-runs-max-size=*) NIXOS_CAP=${1#*=}; shift ;;
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
for n in "${SIZE_LIST[@]}"; do
  [[ $n =~ ^[0-9]+$ ]] && [ "$n" -ge 2 ] && [ "$n" -le "$BENCH_PATHS" ] ||
    fatal "size $n: must be 2..$BENCH_PATHS"
done
NIXOS_CAP_SIZE=${NIXOS_CAP%%:*}
NIXOS_CAP_RUNS=${NIXOS_CAP#*:}
[ "$(id -u)" = 0 ] || fatal "run as root (mount, systemd-nspawn)"

# ---- the synthetic store ------------------------------------------------------

# bench_hash I: a store hash part (32 characters of Nix base32) for path I,
# pseudo-random and deterministic (Park-Miller, exact in awk's doubles).
bench_registrations() { # bench_registrations COUNT: --load-db input on stdout
  awk -v count="$1" '
    BEGIN {
      alpha = "0123456789abcdfghijklmnpqrsvwxyz"
      x = 20241128
      for (i = 1; i <= count; i++) {
        h = ""
        for (c = 0; c < 32; c++) { x = (x * 48271) % 2147483647; h = h substr(alpha, x % 32 + 1, 1) }
        path[i] = sprintf("/nix/store/%s-ncg-bench-%04d", h, i)
      }
      for (i = 1; i <= count; i++) {
        n = 0
        delete seen
        if (i > 1) { r[++n] = i - 1; seen[i - 1] = 1 }
        j = int(i / 2); if (j >= 1 && !(j in seen)) { r[++n] = j; seen[j] = 1 }
        j = i - 7; if (j >= 1 && !(j in seen)) { r[++n] = j; seen[j] = 1 }
        printf "%s\nsha256:%064x\n%d\n\n%d\n", path[i], i, 4096 + i, n
        for (k = 1; k <= n; k++) print path[r[k]]
      }
    }'
}

build_bench_store() {
  local key t S
  key=$({
    basename "$STORE_ROOT"
    echo "$BENCH_PATHS"
    declare -f bench_registrations build_bench_store
  } | sha256sum | cut -c1-16)
  BSTORE=$CACHE/bench-start-store-$key
  if [ -e "$BSTORE.done" ] && [ -d "$BSTORE" ]; then
    log "bench store: cached ($BSTORE)"
    return
  fi
  log "bench store: $BENCH_PATHS synthetic paths over a copy of the e2e store"
  t=$EPOCHREALTIME
  S=$BSTORE.tmp
  rm -rf "$S" "$BSTORE" "$BSTORE.done"
  cp -a "$STORE_ROOT" "$S"
  bench_registrations "$BENCH_PATHS" >"$S/bench-reg.txt"
  nix-store --store "local?root=$S" --load-db <"$S/bench-reg.txt" ||
    fatal "nix-store --load-db failed"
  grep -E '^/nix/store/[^/]*-ncg-bench-[0-9]{4}$' "$S/bench-reg.txt" | sort -u >"$S/bench-paths"
  [ "$(wc -l <"$S/bench-paths")" = "$BENCH_PATHS" ] || fatal "bench store: wrong number of paths"
  # The paths exist on disk (binds need a source), as Nix makes them.
  (cd "$S" && sed 's|^/||' bench-paths | xargs mkdir -p)
  sed "s|^|$S|" "$S/bench-paths" | xargs chmod 0555
  # By construction the closure of path k is paths 1..k: Nix must agree
  # (checked now, while the database is still ours to open).
  local k want got
  for k in 1 99 499 999 1999 "$BENCH_PATHS"; do
    [ "$k" -le "$BENCH_PATHS" ] || continue
    want=$(awk -F'-ncg-bench-' -v k="$k" '$2 + 0 <= k' "$S/bench-paths" | sort)
    got=$(nix-store --store "local?root=$S" -q --requisites \
      "$(grep -E -- "-ncg-bench-$(printf '%04d' "$k")\$" "$S/bench-paths")" | sort)
    [ "$got" = "$want" ] || fatal "bench store: nix-store -qR of path $k is not paths 1..$k"
  done
  rm -rf "$S/nix/var/nix/temproots"/* "$S/nix/var/nix/gcroots/auto"/* 2>/dev/null || true
  mv "$S" "$BSTORE"
  touch "$BSTORE.done"
  log "bench store: built in $(awk -v a="$t" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s"
}

# bench_path I: the synthetic path I (1-based) of the chain.
bench_path() { grep -E -- "-ncg-bench-$(printf '%04d' "$1")\$" "$BSTORE/bench-paths"; }
# bench_closure N: the N paths of a size-N unit's closure, sorted: busybox
# (the ExecStart) and paths 1..N-1 of the chain.
bench_closure() {
  { awk -F'-ncg-bench-' -v k="$(($1 - 1))" '$2 + 0 <= k' "$BSTORE/bench-paths"
    cat "$BSTORE/closures/BUSYBOX"; } | sort -u
}

# ---- the units ------------------------------------------------------------------

install_units() {
  local n root sysd=$ROOT/etc/systemd/system u
  for n in "${SIZE_LIST[@]}"; do
    root=$(bench_path $((n - 1)))
    u=ncg-bench-ours-$n
    cat >"$sysd/$u.service" <<UNIT
[Unit]
Description=start-time bench: generator drop-in, $n paths

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=@$NCG_S_BUSYBOX true
TimeoutStartSec=600
X-ConfinementEnable=yes
X-ConfinementPackages=$root
UNIT
    u=ncg-bench-nixos-$n
    cat >"$sysd/$u.service" <<UNIT
[Unit]
Description=start-time bench: NixOS-module-style drop-in, $n paths

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=@$NCG_S_BUSYBOX true
TimeoutStartSec=600
UNIT
    mkdir -p "$sysd/$u.service.d"
    # What nixos/modules/system/boot/systemd/confinement.nix writes for a
    # full-apivfs service without binSh (the module's serviceConfig, then its
    # confinement.conf), RootDirectory named as its mkPathSafeName does.
    {
      echo "# NixOS-module-style confinement, written by benches/start-time/run.sh"
      echo "[Service]"
      echo "ReadOnlyPaths=+/"
      echo "RuntimeDirectory=confinement/$u"
      echo "RootDirectory=/run/confinement/$u"
      echo "InaccessiblePaths=-+/run/confinement/$u"
      echo "PrivateMounts=yes"
      local k
      for k in MountAPIVFS PrivateDevices PrivateTmp PrivateUsers ProtectControlGroups \
        ProtectKernelModules ProtectKernelTunables; do
        echo "$k=yes"
      done
      bench_closure "$n" | sed 's/^/BindReadOnlyPaths=/'
    } >"$sysd/$u.service.d/confinement.conf"
  done
}

# check_closures: the generator's drop-in binds exactly the closure the
# NixOS-style drop-in lists, for every size.
check_closures() {
  local n want got f
  for n in "${SIZE_LIST[@]}"; do
    f=/run/systemd/generator/ncg-bench-ours-$n.service.d/zz-confinement.conf
    in_ct cat "$f" >"$WORK/ours-$n.conf" 2>/dev/null ||
      fatal "the generator wrote no $f (see: journalctl -b in the container)"
    grep -q '^RootDirectory=/run/confinement/%n$' "$WORK/ours-$n.conf" || fatal "$f is not a confinement drop-in"
    want=$(bench_closure "$n")
    got=$(sed -n 's/^BindPaths=[^:]*:\(\/nix\/store\/.*\)$/\1/p' "$WORK/ours-$n.conf" | sort)
    [ "$got" = "$want" ] || fatal "size $n: the generator binds $(printf '%s\n' "$got" | grep -c .) paths, not the $n of the closure:
$(diff <(printf '%s\n' "$want") <(printf '%s\n' "$got") | head -n 10)"
    [ "$(grep -c '^BindReadOnlyPaths=' "$ROOT/etc/systemd/system/ncg-bench-nixos-$n.service.d/confinement.conf")" = "$n" ] ||
      fatal "size $n: the NixOS-style drop-in does not have $n binds"
    [ "$(ctl show -p RootDirectory --value ncg-bench-nixos-$n.service)" = "/run/confinement/ncg-bench-nixos-$n" ] ||
      fatal "ncg-bench-nixos-$n.service: the NixOS-style drop-in is not loaded"
  done
  log "closures checked: per size, the generator's drop-in and the NixOS-style one bind the same paths"
}

# ---- timing -------------------------------------------------------------------------

# time_start UNIT: one start; prints "wall span fork" in seconds. The units
# have RemainAfterExit=yes: a finished oneshot unit that nothing references is
# unloaded at once, and its timestamps with it (seen on 252: all 0), so each
# start is followed, untimed, by a stop (which also removes its runtime
# directory, as the end of a oneshot without RemainAfterExit= would).
time_start() {
  local out
  out=$(in_ct /bin/sh -c '
    a=$(date +%s.%N)
    systemctl start "$1" || exit 1
    b=$(date +%s.%N)
    echo "wall $a $b"
    systemctl show -p InactiveExitTimestampMonotonic -p ExecMainStartTimestampMonotonic \
      -p ExecMainExitTimestampMonotonic -p ExecMainStatus "$1"
    systemctl stop "$1"' sh "$1") ||
    { ctl status -n 20 "$1" >&2 || true; fatal "systemctl start $1 failed"; }
  awk '
    $1 == "wall" { wall = $3 - $2 }
    { split($0, kv, "=") ; v[kv[1]] = kv[2] }
    END {
      if (v["ExecMainStatus"] != "0") { print "bad status " v["ExecMainStatus"] > "/dev/stderr"; exit 1 }
      printf "%.4f %.4f %.4f\n", wall,
        (v["ExecMainExitTimestampMonotonic"] - v["InactiveExitTimestampMonotonic"]) / 1e6,
        (v["ExecMainStartTimestampMonotonic"] - v["InactiveExitTimestampMonotonic"]) / 1e6
    }' <<<"$out"
}

median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.4f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# ---- main ---------------------------------------------------------------------------

trap cleanup EXIT
trap 'exit 130' INT TERM

T_BENCH=$EPOCHREALTIME
ensure_tools
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock -w 3600 9 || fatal "cannot lock $CACHE/.lock"
build_tree
build_store
build_bench_store
flock -u 9
if [ -z "$BINARY" ]; then
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
  log "cargo build --release (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
  (cd "$REPO" && cargo build --release --quiet) >&2 || fatal "cargo build --release failed"
  BINARY=$CARGO_TARGET_DIR/release/nix-confinement-generator
fi
find_binary
prepare_work
install_generator
install_units
STORE_ROOT=$BSTORE # the container's /nix
BOOT_MODE=ro
start_container ro
check_closures

RES=$WORK/results
: >"$RES"
# Warm-up, not counted: one start of each generator unit (mounts the store
# view, fills the dentry cache for every path) and of the smallest NixOS one.
for n in "${SIZE_LIST[@]}"; do time_start "ncg-bench-ours-$n.service" >/dev/null; done
time_start "ncg-bench-nixos-${SIZE_LIST[0]}.service" >/dev/null
log "warm-up done; measuring ($RUNS runs ours, $NIXOS_RUNS NixOS-style, $NIXOS_CAP_RUNS at >= $NIXOS_CAP_SIZE paths)"
# Per size: the runs of ours, then those of the NixOS-style unit. Each timed
# start comes after a pause of $SETTLE s: the tear-down of a service's mount
# namespace with thousands of mounts goes on after its process has exited
# (mounts are freed after an RCU grace period), and a start right after a
# big NixOS-style run was seen to take up to 25 % longer.
for n in "${SIZE_LIST[@]}"; do
  nruns=$NIXOS_RUNS
  [ "$n" -lt "$NIXOS_CAP_SIZE" ] || nruns=$NIXOS_CAP_RUNS
  for ((r = 1; r <= RUNS; r++)); do
    sleep "$SETTLE"
    read -r w s f < <(time_start "ncg-bench-ours-$n.service")
    echo "$n ours $r $w $s $f" >>"$RES"
    log "size $n run $r: ours wall $w s (span $s, fork $f)"
  done
  for ((r = 1; r <= nruns; r++)); do
    sleep "$SETTLE"
    read -r w s f < <(time_start "ncg-bench-nixos-$n.service")
    echo "$n nixos $r $w $s $f" >>"$RES"
    log "size $n run $r: NixOS-style wall $w s (span $s, fork $f)"
  done
done
SYSTEMD_VERSION=$(ctl --version | head -n1)
stop_container

# ---- report ---------------------------------------------------------------------------

med() { awk -v n="$1" -v s="$2" -v c="$3" '$1 == n && $2 == s { print $c }' "$RES" | median; }
declare -A OURS NIXOS OURS_SPAN NIXOS_SPAN
{
  echo "Start time of a confined oneshot service (ExecStart=busybox true), $SYSTEMD_VERSION, Debian $SUITE"
  echo "wall time of 'systemctl start' inside the container, median of $RUNS runs (NixOS-style: $NIXOS_RUNS, $NIXOS_CAP_RUNS at >= $NIXOS_CAP_SIZE paths);"
  echo "span = InactiveExit -> ExecMainExit monotonic timestamps of the unit (no client overhead)"
  echo
  printf '%8s  %10s  %14s  %8s  %10s  %14s\n' paths "ours (s)" "NixOS-style (s)" ratio "ours span" "NixOS span"
  for n in "${SIZE_LIST[@]}"; do
    OURS[$n]=$(med "$n" ours 4)
    NIXOS[$n]=$(med "$n" nixos 4)
    OURS_SPAN[$n]=$(med "$n" ours 5)
    NIXOS_SPAN[$n]=$(med "$n" nixos 5)
    printf '%8s  %10.3f  %14.3f  %7.1fx  %10.3f  %14.3f\n' "$n" "${OURS[$n]}" "${NIXOS[$n]}" \
      "$(awk -v a="${NIXOS[$n]}" -v b="${OURS[$n]}" 'BEGIN { print a / b }')" "${OURS_SPAN[$n]}" "${NIXOS_SPAN[$n]}"
  done
  echo
  echo "Targets (issue 5):"
  target() { # target DESCRIPTION VALUE OP LIMIT UNIT
    local verdict
    verdict=$(awk -v v="$2" -v l="$4" -v op="$3" 'BEGIN { ok = (op == "<=") ? (v <= l) : (v >= l); print ok ? "PASS" : "MISS" }')
    printf '  %-4s  %-40s %8.3f%s (target %s %s%s)\n' "$verdict" "$1" "$2" "$5" "$3" "$4" "$5"
  }
  has() { [ -n "${OURS[$1]:-}" ]; }
  has 1000 && target "1,000 paths, ours" "${OURS[1000]}" "<=" 0.6 " s"
  has 2000 && target "2,000 paths, ours" "${OURS[2000]}" "<=" 1.2 " s"
  has 1000 && target "ratio NixOS-style / ours at 1,000" "$(awk -v a="${NIXOS[1000]}" -v b="${OURS[1000]}" 'BEGIN { print a / b }')" ">=" 20 "x"
  has 2000 && target "ratio NixOS-style / ours at 2,000" "$(awk -v a="${NIXOS[2000]}" -v b="${OURS[2000]}" 'BEGIN { print a / b }')" ">=" 40 "x"
  has 1000 && has 2000 && target "growth of ours 1,000 -> 2,000" "$(awk -v a="${OURS[2000]}" -v b="${OURS[1000]}" 'BEGIN { print a / b }')" "<=" 2.3 "x"
  echo
  echo "benchmark took $(awk -v a="$T_BENCH" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }') s"
} | tee "$WORK/report"
if [ -n "$OUTFILE" ]; then
  { cat "$WORK/report"; echo; echo "every run: size style run wall span fork (seconds)"; cat "$RES"; } >"$OUTFILE"
fi
