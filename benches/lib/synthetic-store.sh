# shellcheck shell=bash
# The synthetic store of the container benchmarks (benches/start-time,
# benches/reload): a copy of the e2e store (for its static busybox) plus
# BENCH_PATHS paths registered with `nix-store --load-db`, each a directory on
# disk (binds and views need a source), in a chain: path i references i-1,
# i/2 and i-7, so the closure of path k is exactly paths 1..k. Cached in
# $CACHE by a hash of its inputs.
#
# Sourced after tests/e2e/lib/harness.sh. Defines prepare_inputs (the
# cached trees and stores, and the generator binary: what both benchmarks
# need before a boot), build_bench_store (sets BSTORE; needs the harness's
# build_store first: STORE_ROOT, NCG_S_BUSYBOX), bench_path, bench_closure,
# the drop-ins of the other styles and median.

BENCH_PATHS=${BENCH_PATHS:-5000}

# bench_registrations COUNT: --load-db input on stdout. The hash part of
# path I (32 characters of Nix base32) is pseudo-random and deterministic
# (Park-Miller, exact in awk's doubles).
bench_registrations() {
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
  [ "$BENCH_PATHS" -le 9999 ] || fatal "BENCH_PATHS=$BENCH_PATHS: names have 4 digits"
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
  for k in 1 99 499 559 999 1999 4999 "$BENCH_PATHS"; do
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

# nixos_style_dropin UNIT-ROOT-NAME N: on stdout, what
# nixos/modules/system/boot/systemd/confinement.nix writes for a full-apivfs
# service without binSh (the module's serviceConfig, then its
# confinement.conf), with the closure of a size-N unit, one
# BindReadOnlyPaths= per path. UNIT-ROOT-NAME names its root directory as the
# module's mkPathSafeName does (or %n for a template, whose instances may
# run at once).
nixos_style_dropin() {
  local name=$1 n=$2 k
  echo "# NixOS-module-style confinement, written by the benchmark"
  echo "[Service]"
  echo "ReadOnlyPaths=+/"
  echo "RuntimeDirectory=confinement/$name"
  echo "RootDirectory=/run/confinement/$name"
  echo "InaccessiblePaths=-+/run/confinement/$name"
  echo "PrivateMounts=yes"
  for k in MountAPIVFS PrivateDevices PrivateTmp PrivateUsers ProtectControlGroups \
    ProtectKernelModules ProtectKernelTunables; do
    echo "$k=yes"
  done
  bench_closure "$n" | sed 's/^/BindReadOnlyPaths=/'
}

# per_path_dropins GENERATOR OUT UNIT-FILE...: runs GENERATOR with closure
# views off (`[Generator] Views=` empty, no drop-in store) under a scratch
# root holding the given unit files and the bench store's /nix (bound
# read-only in a mount namespace of its own), output into OUT: the drop-ins
# the generator writes where views are not used, for units the container's
# own generator (views on) leaves alone.
per_path_dropins() {
  local gen=$1 out=$2 scratch f
  shift 2
  scratch=$(mktemp -d "${WORK:-/var/tmp}/per-path-root.XXXXXX")
  mkdir -p "$scratch/etc/systemd/system" "$scratch/nix" "$out"
  printf '[Generator]\nViews=\nDropinStore=\n' >"$scratch/etc/systemd/nix-confinement-generator.conf"
  for f in "$@"; do cp "$f" "$scratch/etc/systemd/system/"; done
  unshare -m /bin/sh -c 'mount --bind -o ro "$1" "$2" && exec "$3" --root "$4" "$5"' sh \
    "$BSTORE/nix" "$scratch/nix" "$gen" "$scratch" "$out" ||
    fatal "the generator with views off failed under $scratch"
  # The store was bound in that namespace only: an empty directory here.
  rmdir "$scratch/nix" && rm -rf "$scratch"
}

# prepare_inputs: the Debian tree, the e2e store and the bench store, built
# or taken from the cache under its lock, and the generator binary (the
# harness's find_binary: --generator, or cargo build wherever cargo puts it).
prepare_inputs() {
  ensure_tools
  build_cached build_tree build_store build_bench_store
  find_binary
}

# median: of the numbers on stdin, one a line.
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.4f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
