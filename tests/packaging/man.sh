#!/usr/bin/env bash
# The man pages: they build from their scdoc sources, render with no
# warnings (`MANWIDTH=80 man --warnings -l PAGE 2>&1 >/dev/null` prints
# nothing), have a NAME line mandb can index, and still document what the
# code does: every annotation key, environment variable and configuration
# setting the code reads, every directive the generator writes, and the mount
# unit exactly as it is generated.
set -uo pipefail
. "$(dirname "$0")/lib.sh"

need_commands scdoc=scdoc man=man-db make=make || exit 2

PAGES=("$REPO/packaging/man/$NAME.8" "$REPO/packaging/man/nix-confinement.5")
MAN8=${PAGES[0]}
MAN5=${PAGES[1]}

check "man: make man builds the pages from scdoc" make -C "$REPO" --no-print-directory man

for page in "${PAGES[@]}"; do
  base=${page##*/}
  if [ ! -s "$page" ]; then
    fail "man: $base exists"
    continue
  fi
  warnings=$(MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null)
  if [ -z "$warnings" ]; then
    pass "man: $base renders with no warnings (MANWIDTH=80 man --warnings -l)"
  else
    fail "man: $base renders with no warnings (MANWIDTH=80 man --warnings -l)" "$warnings"
  fi
  if command -v lexgrog >/dev/null; then
    check "man: $base has a NAME line for whatis (lexgrog)" lexgrog "$page"
  fi
  rendered=$(MANWIDTH=80 man -l "$page" 2>/dev/null)
  if grep -q '@VERSION@' <<<"$rendered" || ! grep -q "nix-confinement-generator $VERSION" <<<"$rendered"; then
    fail "man: $base carries the version $VERSION"
  else
    pass "man: $base carries the version $VERSION"
  fi
done

text8=$(MANWIDTH=200 man --nh --nj -l "$MAN8" 2>/dev/null)
text5=$(MANWIDTH=200 man --nh --nj -l "$MAN5" 2>/dev/null)

# mentions NAME TEXT WORD...: every word appears in the rendered page.
mentions() {
  local name=$1 text=$2 word missing=()
  shift 2
  for word in "$@"; do
    grep -qF -- "$word" <<<"$text" || missing+=("$word")
  done
  if [ ${#missing[@]} = 0 ]; then
    pass "$name"
  else
    fail "$name" "not documented: ${missing[*]}"
  fi
}

# The annotation keys the code knows (src/annotation.rs).
mapfile -t keys < <(sed -n 's/^pub const KEY_[A-Z_]*: &str = "\(X-Confinement[A-Za-z]*\)";/\1/p' "$REPO/src/annotation.rs")
if [ ${#keys[@]} -lt 5 ]; then
  fail "man: nix-confinement.5 documents every annotation key" "found only ${#keys[@]} keys in src/annotation.rs"
else
  mentions "man: nix-confinement.5 documents every annotation key (${#keys[@]})" "$text5" "${keys[@]/%/=}"
fi

# The environment variables the code reads.
mapfile -t envs < <(grep -rhoE 'env::var(_os)?\("[A-Z_]+"\)' "$REPO/src" | sed 's/.*("\(.*\)")/\1/' | sort -u | grep -v '^JOURNAL_STREAM$')
mentions "man: $NAME.8 documents every environment variable the code reads (${envs[*]})" "$text8" "${envs[@]}"

# The configuration settings (src/config.rs).
mapfile -t settings < <(sed -n 's/^ *("\([A-Za-z]*\)", "\([A-Za-z]*\)") =>.*/[\1] \2/p' "$REPO/src/config.rs")
words=()
for s in "${settings[@]}"; do words+=("${s%% *}" "${s#* }="); done
if [ ${#settings[@]} -lt 5 ]; then
  fail "man: $NAME.8 documents every configuration setting" "found only ${#settings[@]} settings in src/config.rs"
else
  mentions "man: $NAME.8 documents every configuration setting (${settings[*]})" "$text8" "${words[@]}"
fi

mentions "man: $NAME.8 documents the invocation, exit status and files" "$text8" \
  --root explain check "EXIT STATUS" SYSTEMD_LOG_LEVEL /dev/kmsg OBJECT_SYSTEMD_UNIT \
  /usr/lib/systemd/system-generators/nix-confinement-generator \
  'run-nix\x2dconfinement\x2dstore.mount' /run/nix-confinement-store zz-confinement.conf
mentions "man: nix-confinement.5 documents verifying, failing closed and the limitations" "$text5" \
  "systemctl cat" "nix-confinement-generator explain" "nix-confinement-generator check" \
  "FAILING CLOSED" AssertPathExists= \
  "Without the generator installed, the keys are ignored and the service runs unconfined"

# --help names the pages that exist.
if build_release; then
  help=$("$CARGO_TARGET_DIR/release/$NAME" --help)
  named=$(grep -oE '[a-z.-]+\([0-9]\)' <<<"$help" | sort -u | tr '\n' ' ')
  ok=1
  for ref in $named; do
    [ -s "$REPO/packaging/man/${ref%(*}.${ref//[^0-9]/}" ] || ok=0
  done
  if [ "$ok" = 1 ] && [ -n "$named" ]; then
    pass "man: the pages --help names exist ($named)"
  else
    fail "man: the pages --help names exist" "$help"
  fi

  # A tiny root: one annotated unit over a one-path Nix database (loaded
  # with nix-store when it is there), so that the generator writes the mount
  # unit and a real drop-in.
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  root=$work/root
  mkdir -p "$root/etc/systemd/system" "$work/out"
  hash=0123456789abcdfghijklmnpqrsvwxyz
  store_path=/nix/store/$hash-ncg-man-test
  cat >"$root/etc/systemd/system/ncg-man.service" <<EOF
[Service]
ExecStart=$store_path/bin/test
X-ConfinementEnable=yes
X-ConfinementMode=chroot-only
EOF
  have_db=0
  if command -v nix-store >/dev/null; then
    mkdir -p "$root$store_path/bin"
    printf '%s\nsha256:%064d\n0\n\n0\n' "$store_path" 0 |
      nix-store --store "local?root=$root" --load-db >/dev/null 2>&1 && have_db=1
  fi
  SYSTEMD_LOG_TARGET=console "$CARGO_TARGET_DIR/release/$NAME" --root "$root" "$work/out" 2>/dev/null
  mount_unit="$work/out/run-nix\\x2dconfinement\\x2dstore.mount"
  if [ -f "$mount_unit" ]; then
    # The page's copy, from "[Unit]" to "Options=", with its indentation removed.
    documented=$(awk '/^ *\[Unit\]$/ { on = 1 } on { sub(/^ +/, ""); print } on && /^Options=/ { exit }' <<<"$text8")
    generated=$(grep -v '^#' "$mount_unit")
    same "man: $NAME.8 shows the generated mount unit exactly" "$generated" "$documented"
  else
    fail "man: the generator writes the mount unit" "$(ls -R "$work/out")"
  fi
  if [ "$have_db" = 1 ]; then
    dropin=$work/out/ncg-man.service.d/zz-confinement.conf
    mapfile -t directives < <(grep -v '^#' "$dropin" 2>/dev/null | grep '=' | cut -d= -f1 | sort -u)
    if [ ${#directives[@]} -gt 5 ]; then
      mentions "man: nix-confinement.5 documents every directive of a generated drop-in (${#directives[@]})" "$text5" "${directives[@]/%/=}"
    else
      fail "man: the generator writes a confinement drop-in" "$(cat "$dropin" 2>&1)"
    fi
  else
    note "nix-store not found: the drop-in directives are not compared"
  fi
else
  fail "man: the release binary builds"
fi

finish
