# Shared by the packaging tests (sourced, not run).
#
# Every check prints one line, "PASS name" or "FAIL name" followed by what it
# saw, indented with "  | "; a script ends with `finish`, which prints
# "N passed, M failed" and returns non-zero when a check failed.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
case $TARGET_DIR in /*) ;; *) TARGET_DIR=$REPO/$TARGET_DIR ;; esac
export CARGO_TARGET_DIR=$TARGET_DIR
NAME=nix-confinement-generator
VERSION=$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$REPO/Cargo.toml" | head -n 1)

PASSED=0
FAILED=0

pass() {
  PASSED=$((PASSED + 1))
  echo "PASS $1"
}

# fail NAME [DETAIL...]: each detail may span several lines.
fail() {
  FAILED=$((FAILED + 1))
  echo "FAIL $1"
  shift
  local detail
  for detail in "$@"; do
    printf '%s\n' "$detail" | sed 's/^/  | /'
  done
}

# check NAME COMMAND...: passes when the command succeeds; on failure shows
# its output.
check() {
  local name=$1 out
  shift
  if out=$("$@" 2>&1); then
    pass "$name"
  else
    fail "$name" "$out"
  fi
}

# same NAME EXPECTED ACTUAL: passes when the two texts are equal; on failure
# shows a diff.
same() {
  if [ "$2" = "$3" ]; then
    pass "$1"
  else
    fail "$1" "$(diff -u <(printf '%s\n' "$2") <(printf '%s\n' "$3") | tail -n +3)"
  fi
}

finish() {
  echo "$PASSED passed, $FAILED failed"
  [ "$FAILED" = 0 ]
}

# Progress, on stderr, so that stdout is only check lines.
note() { printf '# %s\n' "$*" >&2; }

# need_commands COMMAND=PACKAGE...: installs the Debian packages of the
# missing commands (one apt-get update, only when something is missing).
need_commands() {
  local spec missing=()
  for spec in "$@"; do
    command -v "${spec%%=*}" >/dev/null 2>&1 || missing+=("${spec#*=}")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  if [ "$(id -u)" != 0 ]; then
    note "missing: ${missing[*]} (run as root to install them)"
    return 1
  fi
  note "installing ${missing[*]}"
  apt-get update -qq >&2 &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# The release binary, built once.
build_release() {
  if [ -z "${NCG_PKG_NO_BUILD:-}" ]; then
    note "cargo build --release (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
    (cd "$REPO" && cargo build --release --quiet) >&2 || return 1
  fi
  [ -x "$CARGO_TARGET_DIR/release/$NAME" ]
}
