#!/usr/bin/env bash
# End-to-end suite of nix-confinement-generator in a real systemd.
#
# Boots a Debian tree (debootstrap, cached) with systemd-nspawn, with a real
# Nix store (built here with real Nix, cached) bound at /nix and the release
# binary installed as /usr/lib/systemd/system-generators/nix-confinement-generator,
# then starts every case's confined service and checks, inside the service,
# what it can see and write. See tests/e2e/README.md.
#
# Usage: tests/e2e/run.sh [--suite bookworm|trixie] [--keep] [--list] [CASE...]
# Run as root. Prints one line per case (PASS name / FAIL name), then one
# line "N passed, M failed"; exits 1 when any case failed, 2 on setup errors.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=lib/helpers.sh
. "$HERE/lib/helpers.sh"

SUITE=${NCG_E2E_SUITE:-bookworm}
CACHE=${NCG_E2E_CACHE:-/var/cache/nix-confinement-generator-e2e}
KEEP=${NCG_E2E_KEEP:-0}
FAKE=${NCG_E2E_FAKE_GENERATOR:-0}
BINARY=${NCG_E2E_BINARY:-}
BUILD=${NCG_E2E_BUILD:-1}
MIRROR=${NCG_E2E_MIRROR:-}
LIST=0
SELECT=()

usage() {
  cat <<'EOF'
Usage: tests/e2e/run.sh [options] [CASE...]

Options:
  --suite NAME      Debian suite of the container: bookworm (systemd 252, the
                    default) or trixie (systemd 257)
  --keep            keep the work directory (container tree, /out, logs)
  --list            list the cases and exit
  -h, --help        this help

Environment:
  NCG_E2E_SUITE           same as --suite
  NCG_E2E_CACHE           cache directory (default /var/cache/nix-confinement-generator-e2e)
  NCG_E2E_BINARY          generator binary to install (default: cargo build --release,
                          then target/release/nix-confinement-generator)
  NCG_E2E_BUILD=0         do not run cargo build
  NCG_E2E_MIRROR          Debian mirror (default: the one in this machine's apt sources)
  NCG_E2E_KEEP=1          same as --keep
  NCG_E2E_FAKE_GENERATOR=1  DEVELOPMENT ONLY: instead of the real binary, install
                          a stand-in that copies NixOS-module-style drop-ins
                          computed by tests/e2e/lib/fake-generator.sh
EOF
}

while [ $# -gt 0 ]; do
  case $1 in
    --suite) SUITE=$2; shift 2 ;;
    --suite=*) SUITE=${1#--suite=}; shift ;;
    --keep) KEEP=1; shift ;;
    --list) LIST=1; shift ;;
    -h | --help) usage; exit 0 ;;
    -*) echo "run.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    *) SELECT+=("$1"); shift ;;
  esac
done

T0=$EPOCHREALTIME
elapsed() { awk -v a="$T0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
log() { printf '# [%6ss] %s\n' "$(elapsed)" "$*" >&2; }
fatal() {
  printf '# ERROR: %s\n' "$*" >&2
  exit 2
}

# ---- cases ----------------------------------------------------------------

ALL_CASES=()
for d in "$HERE"/cases/*/; do
  d=${d%/}
  [ -f "$d/description" ] && ALL_CASES+=("${d##*/}")
done
if [ ${#SELECT[@]} -gt 0 ]; then
  CASES=()
  for c in "${SELECT[@]}"; do
    [ -f "$HERE/cases/$c/description" ] || fatal "no such case: $c"
    CASES+=("$c")
  done
else
  CASES=("${ALL_CASES[@]}")
fi
case_suites_ok() { # does case $1 run on $SUITE?
  [ -f "$HERE/cases/$1/suites" ] || return 0
  grep -qw -- "$SUITE" "$HERE/cases/$1/suites"
}
if [ "$LIST" = 1 ]; then
  for c in "${ALL_CASES[@]}"; do
    printf '%-36s %s\n' "$c" "$(head -n1 "$HERE/cases/$c/description")"
  done
  exit 0
fi

[ "$(id -u)" = 0 ] || fatal "run as root (debootstrap, mount, systemd-nspawn)"

# ---- tools ----------------------------------------------------------------

ensure_tools() {
  local need=()
  command -v nix-store >/dev/null && command -v nix-build >/dev/null || need+=(nix-bin)
  command -v systemd-nspawn >/dev/null || need+=(systemd-container)
  command -v debootstrap >/dev/null || need+=(debootstrap)
  command -v nsenter >/dev/null || need+=(util-linux)
  dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' || need+=(busybox-static)
  [ -s /usr/share/keyrings/debian-archive-keyring.gpg ] || need+=(debian-archive-keyring)
  if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  if ldd /bin/busybox >/dev/null 2>&1; then
    fatal "/bin/busybox is not static (install busybox-static)"
  fi
}

# The Debian mirror this machine's apt uses (the one known to be reachable).
detect_mirror() {
  local f url
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    url=$(grep -Eo 'https?://[^ ]+/debian/?( |$)' "$f" | head -n1 | tr -d ' ') || true
    if [ -n "$url" ]; then
      echo "${url%/}"
      return
    fi
  done
  echo http://deb.debian.org/debian
}

# ---- the Debian tree (cached, never modified after it is built) ----------

DEBOOTSTRAP_INCLUDE=systemd,systemd-sysv,dbus
build_tree() {
  local key
  key=$(printf '%s\n' "$SUITE" minbase "$DEBOOTSTRAP_INCLUDE" tree-v1 | sha256sum | cut -c1-12)
  TREE=$CACHE/tree-$SUITE-$key
  if [ -e "$TREE.done" ] && [ -d "$TREE" ]; then
    log "Debian $SUITE tree: cached ($TREE)"
    return
  fi
  [ -n "$MIRROR" ] || MIRROR=$(detect_mirror)
  log "Debian $SUITE tree: debootstrap from $MIRROR (cold, ~40 s)"
  local t=$EPOCHREALTIME
  rm -rf "$TREE.tmp" "$TREE" "$TREE.done"
  if ! debootstrap --variant=minbase --include="$DEBOOTSTRAP_INCLUDE" \
    --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
    "$SUITE" "$TREE.tmp" "$MIRROR" >"$CACHE/debootstrap-$SUITE.log" 2>&1; then
    tail -n 20 "$CACHE/debootstrap-$SUITE.log" >&2
    fatal "debootstrap $SUITE failed (log: $CACHE/debootstrap-$SUITE.log)"
  fi
  rm -f "$TREE.tmp"/var/cache/apt/archives/*.deb
  mv "$TREE.tmp" "$TREE"
  touch "$TREE.done"
  log "Debian $SUITE tree: built in $(awk -v a="$t" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s"
}

# ---- the Nix store (real Nix, cached by a hash of its inputs) -------------

STORE_ATTRS=(bb check serve greeting hello sh2 target link foobar profile)
# A store path that exists on disk but is not registered in the database:
# the blocked case's ExecStart. Its hash part is valid Nix base32.
UNREG_NAME=1111111111111111111111111111ncgz-ncg-e2e-unregistered

nix_opts() {
  NIXOPTS=(--store "local?root=$1" --option substituters '' --option sandbox false
    --option build-users-group '' --option sandbox-paths '/bin /lib /lib64 /usr')
}

build_store_into() {
  local S=$1 busybox a i outs=() args=()
  local -A out_of=()
  rm -rf "$S"
  mkdir -p "$S"
  nix_opts "$S"
  busybox=$(nix-store --store "local?root=$S" --add /bin/busybox)
  for a in "${STORE_ATTRS[@]}"; do args+=(-A "$a"); done
  mapfile -t outs < <(nix-build "${NIXOPTS[@]}" --no-out-link --argstr busybox "$busybox" \
    "$HERE/store/default.nix" "${args[@]}" 2>"$S/build.log")
  [ ${#outs[@]} = ${#STORE_ATTRS[@]} ] || {
    cat "$S/build.log" >&2
    fatal "nix-build returned ${#outs[@]} paths for ${#STORE_ATTRS[@]} attributes"
  }
  for i in "${!STORE_ATTRS[@]}"; do out_of[${STORE_ATTRS[$i]}]=${outs[$i]}; done
  {
    echo "NCG_S_BUSYBOX=$busybox"
    for a in "${STORE_ATTRS[@]}"; do
      echo "NCG_S_${a^^}=${out_of[$a]}"
    done
    echo "NCG_S_UNREG=/nix/store/$UNREG_NAME"
    echo "NCG_S_PROFILE_LINK=/nix/var/nix/profiles/ncg-e2e"
  } >"$S/manifest.env"
  # A profile, as nix-env makes it: ncg-e2e -> ncg-e2e-1-link -> store path.
  local profile=${out_of[profile]}
  mkdir -p "$S/nix/var/nix/profiles"
  ln -sfn "$profile" "$S/nix/var/nix/profiles/ncg-e2e-1-link"
  ln -sfn ncg-e2e-1-link "$S/nix/var/nix/profiles/ncg-e2e"
  # On disk, not in the database. If anything ever ran it unconfined, it
  # leaves a marker in the directory given as its argument.
  mkdir -p "$S/nix/store/$UNREG_NAME/bin"
  printf '#!/bin/sh\necho "ran unconfined as $(id -u)" > "${1:-/out}/UNCONFINED-RAN"\n' \
    >"$S/nix/store/$UNREG_NAME/bin/run"
  chmod 0555 "$S/nix/store/$UNREG_NAME/bin/run" "$S/nix/store/$UNREG_NAME/bin" "$S/nix/store/$UNREG_NAME"
  if nix-store --store "local?root=$S" --check-validity "/nix/store/$UNREG_NAME" 2>/dev/null; then
    fatal "the unregistered path is valid in the database"
  fi
  nix-store --store "local?root=$S" --verify --check-contents 2>>"$S/build.log"
  # Figures for the log, computed now: afterwards nothing opens the cached
  # database with Nix (even a query opens it read-write and creates -wal/-shm).
  echo "$(nix-store --store "local?root=$S" -q --requisites "${out_of[check]}" | wc -l) paths in the checker's closure, $(find "$S/nix/store" -mindepth 1 -maxdepth 1 ! -name '.*' | wc -l) store entries" >"$S/info"
  rm -rf "$S/nix/var/nix/temproots"/* "$S/nix/var/nix/gcroots/auto"/* 2>/dev/null || true
}

build_store() {
  local key t
  key=$({
    cat "$HERE"/store/*.nix "$HERE"/store/*.sh
    sha256sum </bin/busybox
    nix-store --version
    declare -f build_store_into nix_opts
    echo "${STORE_ATTRS[*]} $UNREG_NAME"
  } | sha256sum | cut -c1-16)
  STORE_ROOT=$CACHE/store-$key
  if [ -e "$STORE_ROOT.done" ] && [ -d "$STORE_ROOT" ]; then
    log "Nix store: cached ($STORE_ROOT)"
  else
    log "Nix store: building with nix-build into local?root=$STORE_ROOT"
    t=$EPOCHREALTIME
    rm -f "$STORE_ROOT.done"
    build_store_into "$STORE_ROOT.tmp"
    rm -rf "$STORE_ROOT"
    mv "$STORE_ROOT.tmp" "$STORE_ROOT"
    # The database holds logical paths only: the moved store stays valid.
    nix-store --store "local?root=$STORE_ROOT" --verify >/dev/null 2>&1 ||
      fatal "the store is not valid after moving it to $STORE_ROOT"
    touch "$STORE_ROOT.done"
    log "Nix store: built in $(awk -v a="$t" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s"
  fi
  # Stores built from other inputs, unused for a week, go.
  touch "$STORE_ROOT.used"
  local old
  for old in "$CACHE"/store-*.used; do
    old=${old%.used}
    [ "$old" != "$STORE_ROOT" ] || continue
    if [ -n "$(find "$old.used" -mtime +7 2>/dev/null)" ]; then
      log "Nix store: pruning unused $old"
      rm -rf "$old" "$old.done" "$old.used"
    fi
  done
  set -a
  # shellcheck disable=SC1091
  . "$STORE_ROOT/manifest.env"
  set +a
  log "Nix store: $(cat "$STORE_ROOT/info")"
}

# ---- the generator binary ---------------------------------------------------

GEN_DST_REL=usr/lib/systemd/system-generators/nix-confinement-generator

find_binary() {
  if [ -n "$BINARY" ]; then
    [ -x "$BINARY" ] || fatal "NCG_E2E_BINARY=$BINARY is not executable"
    return
  fi
  BINARY=$REPO/target/release/nix-confinement-generator
  if [ "$BUILD" = 1 ] && command -v cargo >/dev/null; then
    log "cargo build --release"
    (cd "$REPO" && cargo build --release --quiet) >&2 || fatal "cargo build --release failed"
  fi
  [ -x "$BINARY" ] || fatal "no generator binary at $BINARY (cargo build --release, or NCG_E2E_BINARY=...)"
}

# ---- work directory, container tree ---------------------------------------

WORK=
ROOT=
OUT=
NSPAWN_PID=
NCG_PID=
OVERLAY=0

cleanup() {
  local rc=$?
  stop_container || true
  if [ "$OVERLAY" = 1 ]; then umount "$ROOT" 2>/dev/null || umount -l "$ROOT" 2>/dev/null || true; fi
  if [ -n "$WORK" ]; then
    if [ "$KEEP" = 1 ]; then
      log "kept $WORK"
    else
      rm -rf "$WORK"
    fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

prepare_work() {
  WORK=$(mktemp -d /var/tmp/ncg-e2e.XXXXXX)
  ROOT=$WORK/root
  OUT=$WORK/out
  mkdir -p "$ROOT" "$OUT" "$WORK/upper" "$WORK/ovwork" "$WORK/logs"
  chmod 0755 "$OUT"
  # A fresh working copy of the cached tree: an overlay, so nothing a run
  # does can reach the cache.
  if mount -t overlay overlay -o "lowerdir=$TREE,upperdir=$WORK/upper,workdir=$WORK/ovwork" "$ROOT" 2>/dev/null; then
    OVERLAY=1
  else
    log "overlayfs unavailable: copying the tree"
    cp -a "$TREE/." "$ROOT/"
  fi
}

# Substitute @NAME@ placeholders: store paths from the manifest, and @CASE@.
make_sed_script() {
  local v
  : >"$WORK/subst.sed"
  while IFS='=' read -r v _; do
    printf 's|@%s@|%s|g\n' "${v#NCG_S_}" "${!v}" >>"$WORK/subst.sed"
  done <"$STORE_ROOT/manifest.env"
}

# copy_tree SRC DST CASE: copy files with placeholders substituted.
copy_tree() {
  local src=$1 dst=$2 case=$3 f rel
  [ -d "$src" ] || return 0
  while IFS= read -r -d '' f; do
    rel=${f#"$src"/}
    if [ -d "$f" ] && [ ! -L "$f" ]; then
      mkdir -p "$dst/$rel"
    elif [ -L "$f" ]; then
      mkdir -p "$(dirname "$dst/$rel")"
      cp -P "$f" "$dst/$rel"
    else
      mkdir -p "$(dirname "$dst/$rel")"
      sed -f "$WORK/subst.sed" -e "s|@CASE@|$case|g" "$f" >"$dst/$rel"
      chmod --reference="$f" "$dst/$rel"
      if grep -Eq '@[A-Z][A-Z0-9_]*@' "$dst/$rel"; then
        fatal "unknown placeholder in $f: $(grep -Eo '@[A-Z][A-Z0-9_]*@' "$dst/$rel" | sort -u | tr '\n' ' ')"
      fi
    fi
  done < <(find "$src" -mindepth 1 -print0)
}

install_everything() {
  make_sed_script
  copy_tree "$HERE/common/files" "$ROOT" common
  # The static test user (sysusers.d in common/files), created now: the
  # boot-time systemd-sysusers.service only runs when /etc needs an update.
  chroot "$ROOT" systemd-sysusers >"$WORK/logs/sysusers.log" 2>&1 ||
    { cat "$WORK/logs/sysusers.log" >&2; fatal "systemd-sysusers failed in the container tree"; }
  local c
  for c in "${RUN_CASES[@]}"; do
    copy_tree "$HERE/cases/$c/files" "$ROOT" "$c"
    mkdir -p "$OUT/$c"
    copy_tree "$HERE/cases/$c/out" "$OUT/$c" "$c"
    # Every case directory, and any directory below it, is the service's
    # own writable /out, whatever user the service runs as.
    find "$OUT/$c" -type d -exec chmod 0777 {} +
  done
  if [ "$FAKE" = 1 ]; then
    log "FAKE GENERATOR (NCG_E2E_FAKE_GENERATOR=1): NixOS-module-style drop-ins computed by lib/fake-generator.sh"
    # shellcheck source=lib/fake-generator.sh
    . "$HERE/lib/fake-generator.sh"
    # Nix queries open the database read-write: query a copy, not the cache.
    cp -a "$STORE_ROOT" "$WORK/store-fake"
    fake_generator_install "$ROOT" "$WORK/store-fake" "$GEN_DST_REL" >"$WORK/logs/fake-generator.log" 2>&1 ||
      { cat "$WORK/logs/fake-generator.log" >&2; fatal "fake generator failed"; }
  else
    install -D -m 0755 "$BINARY" "$ROOT/$GEN_DST_REL"
    log "installed $BINARY as /$GEN_DST_REL"
  fi
}

# ---- the container ------------------------------------------------------------

start_container() { # start_container ro|rw
  local mode=$1 bind t
  if [ "$mode" = rw ]; then
    # A private copy, bound read-write: writes that get through cannot
    # corrupt the cached store.
    rm -rf "$WORK/store-rw"
    cp -a "$STORE_ROOT" "$WORK/store-rw"
    bind=--bind=$WORK/store-rw/nix:/nix
  else
    bind=--bind-ro=$STORE_ROOT/nix:/nix
  fi
  log "booting $SUITE with systemd-nspawn (store bound $mode)"
  t=$EPOCHREALTIME
  systemd-nspawn --quiet -D "$ROOT" --boot --register=no --keep-unit --console=pipe \
    --private-network --machine="ncg-e2e-$$" "$bind" --bind="$OUT:/out" \
    </dev/null >"$WORK/logs/console-$mode.log" 2>&1 &
  NSPAWN_PID=$!
  local i state=
  for i in $(seq 600); do
    if ! kill -0 "$NSPAWN_PID" 2>/dev/null; then
      cat "$WORK/logs/console-$mode.log" >&2
      NSPAWN_PID=
      fatal "systemd-nspawn exited during boot"
    fi
    NCG_PID=$(pgrep -P "$NSPAWN_PID" | head -n1) || true
    if [ -n "$NCG_PID" ] && [ "$(cat "/proc/$NCG_PID/comm" 2>/dev/null)" = systemd ]; then
      state=$(timeout 5 nsenter -t "$NCG_PID" -a -- systemctl is-system-running 2>/dev/null) || true
      case $state in running | degraded) break ;; esac
    fi
    sleep 0.1
  done
  case $state in
    running | degraded) ;;
    *) fatal "the container did not finish booting (state '$state')" ;;
  esac
  export NCG_PID
  BOOT_SECS=$(awk -v a="$t" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
  log "booted in $BOOT_SECS s ($state, $(ctl --version | head -n1))"
  if [ "$state" = degraded ]; then
    log "failed units: $(ctl list-units --failed --plain --no-legend | awk '{print $1}' | tr '\n' ' ')"
  fi
  t=$EPOCHREALTIME
  ctl daemon-reload
  log "daemon-reload (generators run again) in $(awk -v a="$t" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }') s"
}

stop_container() {
  [ -n "$NSPAWN_PID" ] || return 0
  if [ -n "$NCG_PID" ]; then
    in_ct journalctl --no-pager -b -o short-monotonic >"$WORK/logs/journal-$BOOT_MODE.log" 2>&1 || true
    timeout 10 nsenter -t "$NCG_PID" -a -- systemctl poweroff --no-block >/dev/null 2>&1 || true
  fi
  local i
  for i in $(seq 300); do
    kill -0 "$NSPAWN_PID" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$NSPAWN_PID" 2>/dev/null; then
    log "container did not power off in 30 s: killing systemd-nspawn ($NSPAWN_PID)"
    kill -TERM "$NSPAWN_PID" 2>/dev/null || true
    sleep 2
    kill -KILL "$NSPAWN_PID" 2>/dev/null || true
  fi
  wait "$NSPAWN_PID" 2>/dev/null || true
  NSPAWN_PID=
  NCG_PID=
}

# ---- running the cases ------------------------------------------------------

PASSED=0
FAILED=0
FAILED_NAMES=()

indent() { sed 's/^/  | /'; }

show_failure() {
  local c=$1 u units
  echo "  case: $(head -n1 "$HERE/cases/$c/description")"
  indent <"$WORK/logs/$c.log"
  if [ -f "$HERE/cases/$c/units" ]; then units=$(cat "$HERE/cases/$c/units"); else units=ncg-$c.service; fi
  for u in $units; do
    echo "  --- systemctl status $u"
    ctl status -n 0 -- "$u" 2>&1 | indent || true
    echo "  --- systemctl cat $u"
    ctl cat -- "$u" 2>&1 | indent || true
    # a template's instances: journalctl -u 'name@*.service'
    case $u in *@.service) u=${u%@.service}@*.service ;; esac
    echo "  --- journalctl -u $u"
    in_ct journalctl --no-pager -o short-monotonic -n 60 -u "$u" 2>&1 | indent || true
  done
  if [ -f "$OUT/$c/verdict" ]; then
    echo "  --- checker verdict (/out/$c/verdict)"
    indent <"$OUT/$c/verdict"
  fi
}

run_case() {
  local c=$1 rc=0 t
  export NCG_CASE=$c NCG_UNIT=ncg-$c.service NCG_OUT=$OUT/$c NCG_OUT_ROOT=$OUT NCG_SUITE=$SUITE
  t=$EPOCHREALTIME
  if [ -f "$HERE/cases/$c/case.sh" ]; then
    (cd "$HERE/cases/$c" && timeout 300 nsenter -t "$NCG_PID" -n -- \
      bash -c 'set -euo pipefail; . "$1"; . "$2"' case-"$c" "$HERE/lib/helpers.sh" "$HERE/cases/$c/case.sh") \
      >"$WORK/logs/$c.log" 2>&1 || rc=$?
  else
    (set -euo pipefail; default_case) >"$WORK/logs/$c.log" 2>&1 || rc=$?
  fi
  local secs
  secs=$(awk -v a="$t" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
  if [ "$rc" = 0 ]; then
    PASSED=$((PASSED + 1))
    echo "PASS $c"
    log "$c: ${secs} s"
  else
    FAILED=$((FAILED + 1))
    FAILED_NAMES+=("$c")
    echo "FAIL $c"
    show_failure "$c"
  fi
}

# ---- main -------------------------------------------------------------------

RUN_CASES=()
for c in "${CASES[@]}"; do
  case_suites_ok "$c" && RUN_CASES+=("$c")
done
[ ${#RUN_CASES[@]} -gt 0 ] || fatal "no case runs on $SUITE"

ensure_tools
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock -w 3600 9 || fatal "cannot lock $CACHE/.lock"
build_tree
build_store
flock -u 9
[ "$FAKE" = 1 ] || find_binary
prepare_work
install_everything

BOOT_MODE=
for BOOT_MODE in ro rw; do
  group=()
  for c in "${RUN_CASES[@]}"; do
    m=ro
    [ -f "$HERE/cases/$c/boot" ] && m=$(tr -d ' \n' <"$HERE/cases/$c/boot")
    [ "$m" = "$BOOT_MODE" ] && group+=("$c")
  done
  [ ${#group[@]} -gt 0 ] || continue
  start_container "$BOOT_MODE"
  for c in "${group[@]}"; do
    run_case "$c"
  done
  stop_container
done

if [ "$FAKE" = 1 ]; then
  log "total $(elapsed) s on $SUITE, with the FAKE generator (NCG_E2E_FAKE_GENERATOR=1)"
else
  log "total $(elapsed) s on $SUITE"
fi
[ "$FAILED" = 0 ] || log "failed: ${FAILED_NAMES[*]}"
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
