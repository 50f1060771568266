#!/usr/bin/env bash
# Reload benchmark (issue 15): how long PID 1 takes for `systemctl
# daemon-reload` with 100 loaded confined units of ~560 store paths each,
# when the generator confines them with closure views, with per-path binds,
# and, for comparison, the same units not confined at all (no drop-ins).
#
#   sudo benches/reload/run.sh [options]
#
# Reuses the end-to-end harness (tests/e2e/lib/harness.sh: cached Debian tree,
# e2e Nix store, container boot) and the synthetic store of
# benches/lib/synthetic-store.sh (a chain of registered paths, the closure of
# path k is paths 1..k). Unit K (1..--units) is ncg-reload-K.service, a oneshot
# with RemainAfterExit=yes running the store's busybox `true`, with
# `X-ConfinementPackages=` path FIRST+K-1 of the chain when confined: closures
# of FIRST+1 .. FIRST+UNITS paths with busybox, all different (default
# 511..610, mean 560.5), so with views each unit has a view of its own.
#
# One boot. Per round and per style, in this order: none, views, per-path:
#   none      the unit files without the annotation: the generator runs at
#             each reload but writes nothing for them
#   views     annotated; the generator's default (closure views)
#   per-path  annotated; /etc/systemd/nix-confinement-generator.conf with
#             `[Generator] Views=` empty (per-path binds; the drop-in store
#             on, as it is by default)
# the units are stopped, the files switched, `daemon-reload`, all units
# started (PID 1 keeps them loaded: active, and with views their view units
# active and the views mounted), checked (confined as the style says, or
# not), then after one untimed reload, --reloads timed ones, a pause of
# --settle s before each. The rounds interleave the styles against the
# drift of a shared machine.
#
# Timing: wall time of `systemctl daemon-reload` inside the container
# (`date +%s.%N` before and after, in one shell): the generators' runs
# (ours included) and PID 1 reloading every loaded unit; and PID 1's CPU
# time meanwhile (/proc/1/schedstat: its own work, not the generators', and
# not the time it waited for a CPU on a loaded machine). "generator" is our
# generator alone on the same inputs, in the container, into a scratch
# directory (median of 5 runs), to tell its share.
#
# Options:
#   --suite NAME      bookworm (systemd 252, default) or trixie (systemd 257)
#   --units N         confined units (default 100)
#   --first K         the smallest closure is K+1 paths (default 511)
#   --rounds N        rounds over the three styles (default 3)
#   --reloads N       timed reloads per round and style (default 7)
#   --settle S        pause before each timed reload (default 0.5 s)
#   --styles LIST     the styles, in order (default none,views,per-path); two
#                     more, to tell where the cost of views goes:
#                     none+mounts  none, and UNITS tmpfs mounts under /run
#                                  (PID 1 has a .mount unit for each mount,
#                                  as it has for each view)
#                     none+units   none, and UNITS more active oneshot units
#                                  (as the view units are)
#                     service-lines  not annotated; a static drop-in with the
#                                  NixOS module's [Service] lines and one
#                                  read-only bind of the whole store: what
#                                  the module's settings cost PID 1 with no
#                                  closure at all (confined, not to a closure)
#   --generator BIN   the generator binary (default: cargo build --release)
#   --keep            keep the work directory
#   --out FILE        also write the report and every reload to FILE
# Environment: as tests/e2e/run.sh (NCG_E2E_CACHE, NCG_E2E_MIRROR, ...).
#
# Exit status: 0 measured (a MISS is reported, not an error), 1 a unit
# failed or was not confined as its style says, 2 setup failed.
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../../tests/e2e/lib/helpers.sh
. "$BENCH/../../tests/e2e/lib/helpers.sh"
# shellcheck source=../../tests/e2e/lib/harness.sh
. "$BENCH/../../tests/e2e/lib/harness.sh"
# shellcheck source=../lib/synthetic-store.sh
. "$BENCH/../lib/synthetic-store.sh"

UNITS=100
FIRST=511
ROUNDS=3
RELOADS=7
SETTLE=0.5
OUTFILE=
STYLES=none,views,per-path
WORK_PREFIX=ncg-bench-reload

while [ $# -gt 0 ]; do
  case $1 in
    --suite) SUITE=$2; shift 2 ;;
    --suite=*) SUITE=${1#--suite=}; shift ;;
    --units) UNITS=$2; shift 2 ;;
    --units=*) UNITS=${1#*=}; shift ;;
    --first) FIRST=$2; shift 2 ;;
    --first=*) FIRST=${1#*=}; shift ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --rounds=*) ROUNDS=${1#*=}; shift ;;
    --reloads) RELOADS=$2; shift 2 ;;
    --reloads=*) RELOADS=${1#*=}; shift ;;
    --settle) SETTLE=$2; shift 2 ;;
    --settle=*) SETTLE=${1#*=}; shift ;;
    --styles) STYLES=$2; shift 2 ;;
    --styles=*) STYLES=${1#*=}; shift ;;
    --generator) BINARY=$2; shift 2 ;;
    --generator=*) BINARY=${1#--generator=}; shift ;;
    --keep) KEEP=1; shift ;;
    --out) OUTFILE=$2; shift 2 ;;
    --out=*) OUTFILE=${1#--out=}; shift ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
for v in UNITS FIRST ROUNDS RELOADS; do
  [[ ${!v} =~ ^[0-9]+$ ]] && [ "${!v}" -ge 1 ] || fatal "--${v,,} ${!v}: not a positive number"
done
for style in ${STYLES//,/ }; do
  case $style in none | views | per-path | none+mounts | none+units | service-lines) ;; *) fatal "--styles: unknown style $style" ;; esac
done
STYLES=${STYLES//,/ }
[ $((FIRST + UNITS - 1)) -le "$BENCH_PATHS" ] || fatal "--first + --units: at most $BENCH_PATHS paths"
[ "$(id -u)" = 0 ] || fatal "run as root (mount, systemd-nspawn)"

SYSD=/etc/systemd/system
CONF=/etc/systemd/nix-confinement-generator.conf
unit_name() { echo "ncg-reload-$1.service"; }
all_units() { local k; for ((k = 1; k <= UNITS; k++)); do unit_name "$k"; done; }

# write_units none|views|per-path: the unit files and the generator's
# configuration for a style, in the container's tree.
write_units() {
  local style=$1 k
  for ((k = 1; k <= UNITS; k++)); do
    {
      echo "[Unit]"
      echo "Description=reload bench: unit $k"
      echo
      echo "[Service]"
      echo "Type=oneshot"
      echo "RemainAfterExit=yes"
      echo "ExecStart=@$NCG_S_BUSYBOX true"
      if [ "$style" = views ] || [ "$style" = per-path ]; then
        echo "X-ConfinementEnable=yes"
        echo "X-ConfinementPackages=${PATH_OF[$k]}"
      fi
    } >"$ROOT$SYSD/$(unit_name "$k")"
    rm -rf "$ROOT$SYSD/$(unit_name "$k").d"
    if [ "$style" = service-lines ]; then
      mkdir -p "$ROOT$SYSD/$(unit_name "$k").d"
      printf '%s\n' '[Service]' 'RootDirectory=/run/confinement/%n' 'RuntimeDirectory=confinement/%n' \
        'InaccessiblePaths=-+/run/confinement/%n' 'ReadOnlyPaths=+/' 'PrivateMounts=yes' 'MountAPIVFS=yes' \
        'PrivateDevices=yes' 'PrivateTmp=yes' 'PrivateUsers=yes' 'ProtectControlGroups=yes' \
        'ProtectKernelModules=yes' 'ProtectKernelTunables=yes' 'BindReadOnlyPaths=/nix/store' \
        >"$ROOT$SYSD/$(unit_name "$k").d/confinement-lines.conf"
    fi
  done
  if [ "$style" = per-path ]; then
    printf '[Generator]\nViews=\n' >"$ROOT$CONF"
  else
    rm -f "$ROOT$CONF"
  fi
  rm -f "$ROOT$SYSD"/ncg-reload-extra-*.service
  if [ "$style" = none+units ]; then
    for ((k = 1; k <= UNITS; k++)); do
      printf '[Unit]\nDescription=reload bench: extra unit %s\n\n[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=@%s true\n' \
        "$k" "$NCG_S_BUSYBOX" >"$ROOT$SYSD/ncg-reload-extra-$k.service"
    done
  fi
}

# check_style STYLE: every unit active and confined as STYLE says; prints
# "DROPIN-BYTES LOADED-UNITS MOUNTS" (mounts: the views, or none+mounts's).
check_style() {
  local style=$1 k u dropin bytes=0 loaded views
  for ((k = 1; k <= UNITS; k++)); do
    u=$(unit_name "$k")
    [ "$(ctl show -p ActiveState --value "$u")" = active ] || fatal "$style: $u is not active"
  done
  # One unit checked in detail, every unit for its drop-in's kind.
  for ((k = 1; k <= UNITS; k++)); do
    u=$(unit_name "$k")
    dropin=/run/systemd/generator/$u.d/zz-confinement.conf
    case $style in
      none* | service-lines)
        in_ct test ! -e "$dropin" || fatal "$style: $u has a drop-in"
        ;;
      views)
        in_ct grep -q '^Requires=nix-confinement-view@' "$dropin" || fatal "views: $u has no view drop-in"
        ;;
      per-path)
        [ "$(in_ct grep -c '^BindPaths=/run/nix-confinement-store/' "$dropin")" = $((FIRST + k)) ] ||
          fatal "per-path: $u does not bind its $((FIRST + k)) paths"
        ;;
    esac
  done
  u=$(unit_name 1)
  if [ "${style%%+*}" = none ]; then
    [ -z "$(ctl show -p RootDirectory --value "$u")" ] || fatal "none: $u is confined"
  else
    [ "$(ctl show -p RootDirectory --value "$u")" = "/run/confinement/$u" ] || fatal "$style: $u is not confined"
  fi
  bytes=$(in_ct sh -c 'cat /run/systemd/generator/ncg-reload-*.service.d/*.conf 2>/dev/null | wc -c')
  loaded=$(ctl list-units --all --plain --no-legend | wc -l)
  views=$(in_ct grep -Ec ' /run/(nix-confinement-views/[0-9a-f]*|ncg-bench-mnt/[0-9]*) ' /proc/1/mountinfo || true)
  echo "$bytes $loaded $views"
}

# start_all STYLE UNIT...: starts the units, 10 at a time. A unit that
# fails is started once more, and said: systemd 252 was seen to fail a start
# now and then with "Failed to attach to cgroup ...: No such file or
# directory" when many confined units start at once on a loaded machine.
start_all() {
  local style=$1 i u failed=()
  shift
  for ((i = 1; i <= $#; i += 10)); do
    ctl start "${@:i:10}" 2>/dev/null || true
  done
  for u in "$@"; do
    [ "$(ctl show -p ActiveState --value "$u")" = active ] || failed+=("$u")
  done
  [ ${#failed[@]} = 0 ] && return
  log "$style: ${#failed[@]} units failed to start, started again: ${failed[*]}"
  for u in "${failed[@]}"; do
    in_ct journalctl -b --no-pager -o cat -n 3 -u "$u" >&2 || true
    ctl reset-failed "$u" || true
  done
  ctl start "${failed[@]}" || fatal "$style: starting ${failed[*]} failed twice"
}

# switch_to STYLE: stop the units, switch the files, reload, start them all.
switch_to() {
  local style=$1 t
  mapfile -t units < <(all_units)
  ctl stop "${units[@]}" 'ncg-reload-extra-*.service' 2>/dev/null || true
  in_ct /bin/sh -c 'for m in /run/ncg-bench-mnt/*; do umount "$m" 2>/dev/null; done; rm -rf /run/ncg-bench-mnt'
  write_units "$style"
  ctl daemon-reload
  t=$EPOCHREALTIME
  start_all "$style" "${units[@]}"
  case $style in
    none+units) ctl start $(for ((k = 1; k <= UNITS; k++)); do echo "ncg-reload-extra-$k.service"; done) ;;
    none+mounts)
      in_ct /bin/sh -c 'mkdir -p /run/ncg-bench-mnt && for k in $(seq "$1"); do
        mkdir /run/ncg-bench-mnt/$k && mount -t tmpfs -o size=64k,mode=0755 ncg-bench /run/ncg-bench-mnt/$k || exit 1
      done' sh "$UNITS" || fatal "none+mounts: mounting failed"
      ;;
  esac
  log "$style: $UNITS units started in $(awk -v a="$t" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s"
}

# wait_idle: until PID 1 has no job queued (the generator's
# nix-confinement-check.path starts a check, which may reload, when the
# benchmark rewrites unit files), at most 60 s; untimed.
wait_idle() {
  local i
  for i in $(seq 600); do
    [ -z "$(ctl list-jobs --no-legend 2>/dev/null)" ] && return
    sleep 0.1
  done
  log "PID 1 still has jobs after 60 s: $(ctl list-jobs --no-legend | head -n 3)"
}

# time_reload: one `systemctl daemon-reload`; prints "WALL PID1-CPU" in
# seconds: the wall time, and the time PID 1 was on a CPU meanwhile (first
# field of /proc/1/schedstat, in ns: its own work, without the generators,
# which are other processes, and without the waits a loaded machine adds).
time_reload() {
  wait_idle
  in_ct /bin/sh -c '
    read -r c0 _ </proc/1/schedstat
    a=$(date +%s.%N)
    systemctl daemon-reload || exit 1
    b=$(date +%s.%N)
    read -r c1 _ </proc/1/schedstat
    echo "$a $b $c0 $c1"' |
    awk '{ printf "%.4f %.4f\n", $2 - $1, ($4 - $3) / 1e9 }'
}

# time_generator: our generator alone, on the container's units, into a
# scratch directory: median of 5 runs, after one untimed.
time_generator() {
  in_ct /bin/bash -c '
    g=/usr/lib/systemd/system-generators/nix-confinement-generator
    d=$(mktemp -d /run/ncg-bench-gen.XXXXXX)
    for i in 0 1 2 3 4 5; do
      rm -rf "$d"/*; mkdir -p "$d/n" "$d/e" "$d/l"
      a=$EPOCHREALTIME
      "$g" "$d/n" "$d/e" "$d/l" 2>/dev/null || exit 1
      b=$EPOCHREALTIME
      [ "$i" = 0 ] || echo "$a $b"
    done
    rm -rf "$d"' | awk '{ printf "%.4f\n", $2 - $1 }' | median
}

# ---- main ---------------------------------------------------------------------------

trap cleanup EXIT
trap 'exit 130' INT TERM

T_BENCH=$EPOCHREALTIME
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
prepare_inputs
declare -A PATH_OF
for ((k = 1; k <= UNITS; k++)); do PATH_OF[$k]=$(bench_path $((FIRST + k - 1))); done
prepare_work
install_generator
write_units none
STORE_ROOT=$BSTORE # the container's /nix
BOOT_MODE=ro
start_container ro

RES=$WORK/results
: >"$RES"
declare -A INFO GEN
for ((round = 1; round <= ROUNDS; round++)); do
  for style in $STYLES; do
    switch_to "$style"
    INFO[$style]=$(check_style "$style")
    GEN[$style]="${GEN[$style]:-} $(time_generator)"
    sleep 2
    time_reload >/dev/null
    for ((r = 1; r <= RELOADS; r++)); do
      sleep "$SETTLE"
      w=$(time_reload) || fatal "daemon-reload failed"
      echo "$round $style $r $w" >>"$RES"   # round style run wall pid1-cpu
    done
    check_style "$style" >/dev/null
    log "round $round, $style: daemon-reload median $(awk -v s="$style" -v n="$round" '$1 == n && $2 == s { print $4 }' "$RES" | median) s (drop-ins, loaded units, views: ${INFO[$style]})"
  done
done
SYSTEMD_VERSION=$(ctl --version | head -n1)
stop_container
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- report ---------------------------------------------------------------------------

col() { awk -v s="$1" -v c="${2:-4}" '$2 == s { print $c }' "$RES"; }
declare -A MED CPU
{
  echo "daemon-reload with $UNITS loaded confined units (closures of $((FIRST + 1))..$((FIRST + UNITS)) paths), $SYSTEMD_VERSION, Debian $SUITE, kernel $(uname -r)"
  echo "generator $BINARY, benchmark at $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo '?'), $(date -u +%Y-%m-%d)"
  echo "load average before $LOAD_BEFORE, after $LOAD_AFTER ($(nproc) CPUs)"
  echo "wall time of 'systemctl daemon-reload' inside the container; $ROUNDS rounds x $RELOADS reloads per style, interleaved"
  echo
  printf '%-11s  %8s  %8s  %8s  %16s  %8s  %9s  %8s  %10s  %6s  %s\n' style median min max "round medians" "vs none" "PID 1 CPU" "vs none" "drop-ins" loaded "mounts, generator alone"
  for style in $STYLES; do
    MED[$style]=$(col "$style" | median)
    CPU[$style]=$(col "$style" 5 | median)
  done
  for style in $STYLES; do
    read -r bytes loaded views <<<"${INFO[$style]}"
    rounds=$(for ((round = 1; round <= ROUNDS; round++)); do
      awk -v s="$style" -v n="$round" '$1 == n && $2 == s { print $4 }' "$RES" | median
    done | awk '{ printf "%s%.3f", (NR > 1 ? " " : ""), $1 }')
    printf '%-11s  %8.3f  %8.3f  %8.3f  %16s  %7.2fx  %9.3f  %7.2fx  %6.0f KiB  %6s  %s mounts, generator %.1f ms\n' "$style" "${MED[$style]}" \
      "$(col "$style" | sort -g | head -n1)" "$(col "$style" | sort -g | tail -n1)" "$rounds" \
      "$(awk -v a="${MED[$style]}" -v b="${MED[none]}" 'BEGIN { print a / b }')" \
      "${CPU[$style]}" "$(awk -v a="${CPU[$style]}" -v b="${CPU[none]}" 'BEGIN { print a / b }')" \
      "$(awk -v b="$bytes" 'BEGIN { print b / 1024 }')" "$loaded" "$views" \
      "$(printf '%s\n' ${GEN[$style]} | median | awk '{ print $1 * 1000 }')"
  done
  echo "PID 1 CPU: time PID 1 spent on a CPU during the reload (/proc/1/schedstat), median"
  echo "drop-ins: bytes of the units' generated drop-ins; loaded: units PID 1 has loaded; mounts: the views"
  echo "(or none+mounts's tmpfs); generator: our generator alone on the same inputs, median of its runs"
  echo
  if [ -n "${MED[views]:-}" ] && [ -n "${MED[none]:-}" ]; then
    echo "Target (issue 15):"
    verdict() { # verdict DESCRIPTION A B
      awk -v a="$2" -v b="$3" -v d="$1" 'BEGIN {
        r = a / b; v = (r <= 1.3) ? "PASS" : "MISS"
        printf "  %-4s  %-50s %8.2fx (target <= 1.3x)\n", v, d, r }'
    }
    verdict "daemon-reload wall time, views / none" "${MED[views]}" "${MED[none]}"
    verdict "PID 1 CPU time of the reload, views / none" "${CPU[views]}" "${CPU[none]}"
    [ -z "${MED[per-path]:-}" ] || echo "For reference: per-path / none $(awk -v a="${MED[per-path]}" -v b="${MED[none]}" 'BEGIN { printf "%.2fx", a / b }') (wall), $(awk -v a="${CPU[per-path]}" -v b="${CPU[none]}" 'BEGIN { printf "%.2fx", a / b }') (PID 1 CPU)"
    echo
  fi
  echo "benchmark took $(awk -v a="$T_BENCH" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }') s"
} | tee "$WORK/report"
if [ -n "$OUTFILE" ]; then
  { cat "$WORK/report"; echo; echo "every reload: round style run wall pid1-cpu (seconds)"; cat "$RES"; } >"$OUTFILE"
fi
