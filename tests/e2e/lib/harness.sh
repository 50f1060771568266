# shellcheck shell=bash
# The e2e harness: the cached Debian tree, the cached Nix store built with
# real Nix, the generator binary, the container's work directory and the
# systemd-nspawn boot. Sourced by tests/e2e/run.sh (the suite),
# benches/start-time/run.sh (the start-time benchmark) and tests/demo/run.sh
# (the demo), after tests/e2e/lib/helpers.sh. It defines functions and
# defaults only; the caller sets `trap cleanup EXIT` once it has a work
# directory.
#
# Sets HERE (tests/e2e) and REPO. Settings, from the environment unless the
# caller changes them after sourcing: SUITE BINDING CACHE KEEP FAKE BINARY
# BUILD MIRROR (see run.sh --help).

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPO=$(cd "$HERE/../.." && pwd)

SUITE=${NCG_E2E_SUITE:-bookworm}
# How confined services get their closure: `view` (closure views, the
# generator's default) or `per-path` (each store path bound on its own, the
# fallback; [Generator] Views= empty, from common/per-path).
BINDING=${NCG_E2E_BINDING:-view}
CACHE=${NCG_E2E_CACHE:-/var/cache/nix-confinement-generator-e2e}
KEEP=${NCG_E2E_KEEP:-0}
FAKE=${NCG_E2E_FAKE_GENERATOR:-0}
BINARY=${NCG_E2E_BINARY:-}
BUILD=${NCG_E2E_BUILD:-1}
MIRROR=${NCG_E2E_MIRROR:-}
# Name of the work directory (/var/tmp/PREFIX.XXXXXX) and of the machine.
WORK_PREFIX=${NCG_E2E_WORK_PREFIX:-ncg-e2e}

T0=$EPOCHREALTIME
elapsed() { awk -v a="$T0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
log() { printf '# [%6ss] %s\n' "$(elapsed)" "$*" >&2; }
fatal() {
  printf '# ERROR: %s\n' "$*" >&2
  exit 2
}

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

# build_cached STEP...: the builders of cached inputs (build_tree,
# build_store, ...) run while this process holds the cache's lock, so that
# runs at the same time never build one input twice.
build_cached() {
  mkdir -p "$CACHE"
  exec 9>"$CACHE/.lock"
  flock -w 3600 9 || fatal "cannot lock $CACHE/.lock"
  local step
  for step in "$@"; do
    "$step"
  done
  flock -u 9
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

STORE_ATTRS=(bb check serve greeting hello sh2 target link foobar profile elsewhere dotdot etc)
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
  # The closure of every store path (`nix-store -qR`, sorted), named as in
  # the manifest without NCG_S_ (closures/CHECK, closures/BUSYBOX, ...): what
  # cases compare the visible store with.
  mkdir -p "$S/closures"
  nix-store --store "local?root=$S" -q --requisites "$busybox" | sort >"$S/closures/BUSYBOX"
  for a in "${STORE_ATTRS[@]}"; do
    nix-store --store "local?root=$S" -q --requisites "${out_of[$a]}" | sort >"$S/closures/${a^^}"
  done
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
  # Where cargo puts it, not target/: CARGO_TARGET_DIR or a cargo config
  # may move the build elsewhere.
  BINARY=$REPO/target/release/nix-confinement-generator
  if [ "$BUILD" = 1 ] && command -v cargo >/dev/null; then
    log "cargo build --release"
    BINARY=$(cd "$REPO" && cargo build --release --quiet --message-format=json-render-diagnostics |
      sed -n 's|.*"executable":"\([^"]*/nix-confinement-generator\)".*|\1|p' | tail -n1) ||
      fatal "cargo build --release failed"
    [ -n "$BINARY" ] || fatal "cargo build --release reported no nix-confinement-generator executable"
  elif command -v cargo >/dev/null; then
    local dir
    dir=$(cd "$REPO" && cargo metadata --format-version 1 --no-deps |
      sed -n 's|.*"target_directory":"\([^"]*\)".*|\1|p') || true
    [ -z "$dir" ] || BINARY=$dir/release/nix-confinement-generator
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
  local own
  for own in "${OWN_ROOTS[@]}"; do
    umount "$own" 2>/dev/null || umount -l "$own" 2>/dev/null || true
  done
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
prepare_work() {
  WORK=$(mktemp -d "/var/tmp/$WORK_PREFIX.XXXXXX")
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

# prepare_own_root NAME: a fresh working copy of the cached tree for one
# boot of its own, as an overlay on it (or a plain copy without overlayfs),
# in $WORK/own-NAME/root; sets OWN_ROOT. Unmounted by cleanup.
OWN_ROOTS=()
prepare_own_root() {
  local base=$WORK/own-$1
  OWN_ROOT=$base/root
  mkdir -p "$OWN_ROOT" "$base/upper" "$base/ovwork"
  if mount -t overlay overlay -o "lowerdir=$TREE,upperdir=$base/upper,workdir=$base/ovwork" "$OWN_ROOT" 2>/dev/null; then
    OWN_ROOTS+=("$OWN_ROOT")
  else
    cp -a "$TREE/." "$OWN_ROOT/"
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

# install_binding [DIR]: the configuration of the binding mode into the
# tree (DIR, default $ROOT).
install_binding() {
  case $BINDING in
    view) ;;
    per-path) copy_tree "$HERE/common/per-path" "${1:-$ROOT}" common ;;
    *) fatal "unknown binding '$BINDING' (view or per-path)" ;;
  esac
}

# install_generator [DIR]: the generator binary (found by find_binary) into
# the tree (DIR, default $ROOT).
install_generator() {
  install -D -m 0755 "$BINARY" "${1:-$ROOT}/$GEN_DST_REL"
  log "installed $BINARY as /$GEN_DST_REL"
}

# ---- the container ------------------------------------------------------------

# start_container ro|rw: boots the tree with the store bound read-only (or
# a private copy of it read-write) at /nix.
# start_container own NAME DIR [NSPAWN_OPTION...]: boots DIR (a copy of the
# tree made by prepare_own_root) with these options instead of the store
# bind, for a case that needs a boot of its own.
start_container() {
  local mode=$1 dir=$ROOT bind=() t
  if [ "$mode" = own ]; then
    mode=own-$2
    dir=$3
    shift 3
    bind=("$@")
  elif [ "$mode" = rw ]; then
    # A private copy, bound read-write: writes that get through cannot
    # corrupt the cached store.
    rm -rf "$WORK/store-rw"
    cp -a "$STORE_ROOT" "$WORK/store-rw"
    bind=(--bind="$WORK/store-rw/nix:/nix")
  else
    bind=(--bind-ro="$STORE_ROOT/nix:/nix")
  fi
  log "booting $SUITE with systemd-nspawn ($mode: ${bind[*]})"
  t=$EPOCHREALTIME
  systemd-nspawn --quiet -D "$dir" --boot --register=no --keep-unit --console=pipe \
    --private-network --machine="$WORK_PREFIX-$$" "${bind[@]}" --bind="$OUT:/out" \
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
  # A boot of a case's own is left as it booted: the case sees what an
  # administrator sees after a boot.
  case $mode in own-*) return 0 ;; esac
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

