#!/usr/bin/env bash
# End-to-end suite of nix-confinement-generator in a real systemd.
#
# Boots a Debian tree (debootstrap, cached) with systemd-nspawn, with a real
# Nix store (built here with real Nix, cached) bound at /nix and the release
# binary installed as /usr/lib/systemd/system-generators/nix-confinement-generator,
# then starts every case's confined service and checks, inside the service,
# what it can see and write. See tests/e2e/README.md.
#
# Usage: tests/e2e/run.sh [--suite bookworm|trixie] [--binding view|per-path]
#                         [--keep] [--list] [CASE...]
# Run as root. Prints one line per case (PASS name / FAIL name), then one
# line "N passed, M failed"; exits 1 when any case failed, 2 on setup errors.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib/helpers.sh
. "$HERE/lib/helpers.sh"
# shellcheck source=lib/harness.sh
. "$HERE/lib/harness.sh"

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
  NCG_E2E_BINDING         same as --binding
  NCG_E2E_CACHE           cache directory (default /var/cache/nix-confinement-generator-e2e)
  NCG_E2E_BINARY          generator binary to install (default: cargo build --release,
                          then target/release/nix-confinement-generator)
  NCG_E2E_BUILD=0         do not run cargo build
  NCG_E2E_MIRROR          Debian mirror (default: the one in this machine's apt sources)
  NCG_E2E_KEEP=1          same as --keep
  NCG_E2E_WORK_PREFIX     name of the work directory, /var/tmp/PREFIX.XXXXXX
                          (default ncg-e2e)
  NCG_E2E_FAKE_GENERATOR=1  DEVELOPMENT ONLY: instead of the real binary, install
                          a stand-in that copies NixOS-module-style drop-ins
                          computed by tests/e2e/lib/fake-generator.sh
EOF
}

while [ $# -gt 0 ]; do
  case $1 in
    --suite) SUITE=$2; shift 2 ;;
    --suite=*) SUITE=${1#--suite=}; shift ;;
    --binding) BINDING=$2; shift 2 ;;
    --binding=*) BINDING=${1#--binding=}; shift ;;
    --keep) KEEP=1; shift ;;
    --list) LIST=1; shift ;;
    -h | --help) usage; exit 0 ;;
    -*) echo "run.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    *) SELECT+=("$1"); shift ;;
  esac
done

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
boot_of() { # the boot case $1 runs in: ro (default), rw or own
  if [ -f "$HERE/cases/$1/boot" ]; then tr -d ' \n' <"$HERE/cases/$1/boot"; else echo ro; fi
}
case_suites_ok() { # does case $1 run on $SUITE?
  [ -f "$HERE/cases/$1/suites" ] || return 0
  grep -qw -- "$SUITE" "$HERE/cases/$1/suites"
}
case_bindings_ok() { # does case $1 run with $BINDING?
  [ -f "$HERE/cases/$1/bindings" ] || return 0
  grep -qwx -- "$BINDING" <(tr ' ' '\n' <"$HERE/cases/$1/bindings")
}
case $BINDING in
  view | per-path) ;;
  *) fatal "unknown binding '$BINDING' (view or per-path)" ;;
esac
if [ "$LIST" = 1 ]; then
  for c in "${ALL_CASES[@]}"; do
    printf '%-36s %s\n' "$c" "$(head -n1 "$HERE/cases/$c/description")"
  done
  exit 0
fi

[ "$(id -u)" = 0 ] || fatal "run as root (debootstrap, mount, systemd-nspawn)"

trap cleanup EXIT
trap 'exit 130' INT TERM

# install_common DIR: the common files, the binding mode's configuration
# and the static test user.
install_common() {
  copy_tree "$HERE/common/files" "$1" common
  install_binding "$1"
  # The static test user (sysusers.d in common/files), created now: the
  # boot-time systemd-sysusers.service only runs when /etc needs an update.
  chroot "$1" systemd-sysusers >"$WORK/logs/sysusers.log" 2>&1 ||
    { cat "$WORK/logs/sysusers.log" >&2; fatal "systemd-sysusers failed in the container tree"; }
}

# install_generator_into DIR: the generator (or the fake one), once the
# units are in DIR.
install_generator_into() {
  if [ "$FAKE" = 1 ]; then
    log "FAKE GENERATOR (NCG_E2E_FAKE_GENERATOR=1): NixOS-module-style drop-ins computed by lib/fake-generator.sh"
    # shellcheck source=lib/fake-generator.sh
    . "$HERE/lib/fake-generator.sh"
    # Nix queries open the database read-write: query a copy, not the cache.
    [ -d "$WORK/store-fake" ] || cp -a "$STORE_ROOT" "$WORK/store-fake"
    fake_generator_install "$1" "$WORK/store-fake" "$GEN_DST_REL" >"$WORK/logs/fake-generator.log" 2>&1 ||
      { cat "$WORK/logs/fake-generator.log" >&2; fatal "fake generator failed"; }
  else
    install_generator "$1"
  fi
}

install_everything() {
  make_sed_script
  install_common "$ROOT"
  local c
  for c in "${RUN_CASES[@]}"; do
    # A case with a boot of its own gets its files in a tree of its own.
    [ "$(boot_of "$c")" = own ] || copy_tree "$HERE/cases/$c/files" "$ROOT" "$c"
    mkdir -p "$OUT/$c"
    copy_tree "$HERE/cases/$c/out" "$OUT/$c" "$c"
    # Every case directory, and any directory below it, is the service's
    # own writable /out, whatever user the service runs as.
    find "$OUT/$c" -type d -exec chmod 0777 {} +
  done
  install_generator_into "$ROOT"
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
  # The work directory is the harness's alone; a run that lost it (a
  # cleanup of /var/tmp/ncg-e2e.* by another process was seen to empty it,
  # the container's root included) can only report that.
  [ -d "$WORK/logs" ] || fatal "$WORK was removed while the suite ran (by another process?)"
  export NCG_CASE=$c NCG_UNIT=ncg-$c.service NCG_OUT=$OUT/$c NCG_OUT_ROOT=$OUT NCG_SUITE=$SUITE NCG_BINDING=$BINDING NCG_CLOSURES=$STORE_ROOT/closures
  t=$EPOCHREALTIME
  if [ -f "$HERE/cases/$c/case.sh" ]; then
    (cd "$HERE/cases/$c" && timeout 300 nsenter -t "$NCG_PID" -n -- \
      bash -c 'set -euo pipefail; . "$1"; . "$2"' case-"$c" "$HERE/lib/helpers.sh" "$HERE/cases/$c/case.sh") \
      >"$WORK/logs/$c.log" 2>&1 || rc=$?
  else
    # Not under `||`: that would turn `set -e` off inside.
    set +e
    (
      set -euo pipefail
      default_case
    ) >"$WORK/logs/$c.log" 2>&1
    rc=$?
    set -e
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
  case_suites_ok "$c" && case_bindings_ok "$c" && RUN_CASES+=("$c")
done
[ ${#RUN_CASES[@]} -gt 0 ] || fatal "no case runs on $SUITE with binding $BINDING"
log "binding: $BINDING"

ensure_tools
build_cached build_tree build_store
[ "$FAKE" = 1 ] || find_binary
prepare_work
install_everything

BOOT_MODE=
for BOOT_MODE in ro rw; do
  group=()
  for c in "${RUN_CASES[@]}"; do
    [ "$(boot_of "$c")" = "$BOOT_MODE" ] && group+=("$c")
  done
  [ ${#group[@]} -gt 0 ] || continue
  start_container "$BOOT_MODE"
  for c in "${group[@]}"; do
    run_case "$c"
  done
  stop_container
done
# A case with a boot of its own: a tree with only its files (and the
# common ones), booted with the options of its `nspawn` file instead of
# the store bind.
for c in "${RUN_CASES[@]}"; do
  [ "$(boot_of "$c")" = own ] || continue
  BOOT_MODE=own-$c
  prepare_own_root "$c"
  install_common "$OWN_ROOT"
  copy_tree "$HERE/cases/$c/files" "$OWN_ROOT" "$c"
  install_generator_into "$OWN_ROOT"
  nspawn_options=()
  if [ -f "$HERE/cases/$c/nspawn" ]; then
    while IFS= read -r line; do
      [ -n "$line" ] && nspawn_options+=("${line//@STORE_NIX@/$STORE_ROOT/nix}")
    done <"$HERE/cases/$c/nspawn"
  fi
  start_container own "$c" "$OWN_ROOT" "${nspawn_options[@]}"
  run_case "$c"
  stop_container
done

if [ "$FAKE" = 1 ]; then
  log "total $(elapsed) s on $SUITE ($BINDING), with the FAKE generator (NCG_E2E_FAKE_GENERATOR=1)"
else
  log "total $(elapsed) s on $SUITE ($BINDING)"
fi
[ "$FAILED" = 0 ] || log "failed: ${FAILED_NAMES[*]}"
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
