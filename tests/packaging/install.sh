#!/usr/bin/env bash
# `make install` into a scratch DESTDIR: every installed file, with its mode
# (and a link's target), compared with the expected list, for the default
# PREFIX with the generator directory from pkg-config, for PREFIX=/usr/local
# without pkg-config (the fallback directory), and with the directory given
# on the command line; then `make uninstall` removes every file again.
# `make install NOBUILD=1` in a tree without built man pages builds them
# (and never cargo); without the program, or without scdoc for missing man
# pages, it fails before installing anything and says what to run.
set -uo pipefail
. "$(dirname "$0")/lib.sh"

need_commands make=make pkg-config=pkg-config scdoc=scdoc man=man-db || exit 2

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# layout DIR: "path mode type link-target", one line per file or link.
layout() { (cd "$1" && find . \( -type f -o -type l \) -printf '%P %m %y %l\n' | sort); }

# expected GENDIR PREFIX: what `make install` must install.
expected() {
  local gendir=${1#/} prefix=${2#/}
  {
    echo "$gendir/$NAME 755 f "
    echo "$prefix/bin/$NAME 777 l /${gendir}/$NAME"
    echo "$prefix/lib/systemd/$NAME.conf 644 f "
    echo "$prefix/share/man/man8/$NAME.8 644 f "
    echo "$prefix/share/man/man5/nix-confinement.5 644 f "
  } | sort
}

pc_dir=$(pkg-config --variable=systemdsystemgeneratordir systemd 2>/dev/null)
gendir=${pc_dir:-/usr/lib/systemd/system-generators}
note "pkg-config's systemdsystemgeneratordir: ${pc_dir:-(none)}"

# 1. The defaults: PREFIX=/usr, the generator directory from pkg-config,
#    building first.
dest=$work/default
if out=$(make -C "$REPO" --no-print-directory install DESTDIR="$dest" 2>&1); then
  pass "install: make install DESTDIR=... builds and installs"
  same "install: layout with PREFIX=/usr, generator directory $gendir (pkg-config)" \
    "$(expected "$gendir" /usr)" "$(layout "$dest")"
  layout "$dest" | sed 's/^/  | /'
  check "install: the installed generator runs" "$dest$gendir/$NAME" --version
  check "install: the installed configuration is generator.d/$NAME.conf" \
    cmp "$REPO/generator.d/$NAME.conf" "$dest/usr/lib/systemd/$NAME.conf"
  for page in "$dest/usr/share/man/man8/$NAME.8" "$dest/usr/share/man/man5/nix-confinement.5"; do
    warnings=$(MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null)
    if [ -z "$warnings" ]; then
      pass "install: the installed ${page##*/} renders with no warnings"
    else
      fail "install: the installed ${page##*/} renders with no warnings" "$warnings"
    fi
  done
  if out=$(make -C "$REPO" --no-print-directory uninstall DESTDIR="$dest" 2>&1) && [ -z "$(layout "$dest")" ]; then
    pass "install: make uninstall removes every installed file"
  else
    fail "install: make uninstall removes every installed file" "$out" "$(layout "$dest")"
  fi
else
  fail "install: make install DESTDIR=... builds and installs" "$out"
fi

# 2. PREFIX=/usr/local without pkg-config: the fallback directory.
dest=$work/local
if out=$(make -C "$REPO" --no-print-directory install NOBUILD=1 PREFIX=/usr/local PKG_CONFIG=false DESTDIR="$dest" 2>&1); then
  same "install: layout with PREFIX=/usr/local and no pkg-config (fallback /usr/lib/systemd/system-generators)" \
    "$(expected /usr/lib/systemd/system-generators /usr/local)" "$(layout "$dest")"
else
  fail "install: make install NOBUILD=1 PREFIX=/usr/local PKG_CONFIG=false" "$out"
fi

# 3. The generator directory given on the command line.
dest=$work/explicit
if out=$(make -C "$REPO" --no-print-directory install NOBUILD=1 SYSTEMD_SYSTEM_GENERATOR_DIR=/opt/gen DESTDIR="$dest" 2>&1); then
  same "install: layout with SYSTEMD_SYSTEM_GENERATOR_DIR=/opt/gen" \
    "$(expected /opt/gen /usr)" "$(layout "$dest")"
else
  fail "install: make install SYSTEMD_SYSTEM_GENERATOR_DIR=/opt/gen" "$out"
fi

# 4. NOBUILD=1 never runs cargo (install as root after building as a user).
if make -C "$REPO" --no-print-directory -n install NOBUILD=1 DESTDIR="$work/n" | grep -q 'cargo'; then
  fail "install: make install NOBUILD=1 does not build" "$(make -C "$REPO" --no-print-directory -n install NOBUILD=1 DESTDIR="$work/n")"
else
  pass "install: make install NOBUILD=1 does not build"
fi

# A copy of what `make install` reads, without built man pages (a fresh
# checkout): "$work/tree".
scratch_tree() {
  rm -rf "$work/tree"
  mkdir -p "$work/tree/packaging/man" "$work/tree/generator.d"
  cp "$REPO/Makefile" "$REPO/Cargo.toml" "$work/tree/"
  cp "$REPO"/generator.d/*.conf "$work/tree/generator.d/"
  cp "$REPO"/packaging/man/*.scd "$work/tree/packaging/man/"
}

# 5. NOBUILD=1 where the program is built but the man pages are not (built
#    with `cargo build --release`, or a checkout where only `make program`
#    ran): the man pages are built, without cargo, and everything installed.
scratch_tree
dest=$work/noman
if [ ! -x "$CARGO_TARGET_DIR/release/$NAME" ]; then
  fail "install: make install NOBUILD=1 builds missing man pages" "no $CARGO_TARGET_DIR/release/$NAME (case 1 builds it)"
elif out=$(make -C "$work/tree" --no-print-directory install NOBUILD=1 CARGO=false DESTDIR="$dest" 2>&1); then
  same "install: make install NOBUILD=1 builds missing man pages (no cargo) and installs everything" \
    "$(expected "$gendir" /usr)" "$(layout "$dest")"
else
  fail "install: make install NOBUILD=1 builds missing man pages (no cargo) and installs everything" "$out"
fi

# 6. NOBUILD=1 without the program: it says what to run, installs nothing.
scratch_tree
dest=$work/noprogram
if out=$(make -C "$work/tree" --no-print-directory install NOBUILD=1 CARGO=false \
  CARGO_TARGET_DIR="$work/no-target" DESTDIR="$dest" 2>&1); then
  fail "install: make install NOBUILD=1 without the program fails" "$out"
elif grep -q "is not built: run \`make\`" <<<"$out" && [ ! -e "$dest" ]; then
  pass "install: make install NOBUILD=1 without the program fails, says to run make, installs nothing"
else
  fail "install: make install NOBUILD=1 without the program fails, says to run make, installs nothing" \
    "$out" "$( [ -e "$dest" ] && layout "$dest")"
fi

# 7. NOBUILD=1 without built man pages nor scdoc: it says what to install.
scratch_tree
dest=$work/noscdoc
if out=$(make -C "$work/tree" --no-print-directory install NOBUILD=1 CARGO=false \
  SCDOC=/nonexistent/scdoc DESTDIR="$dest" 2>&1); then
  fail "install: make install NOBUILD=1 without man pages nor scdoc fails" "$out"
elif grep -q "scdoc not found: install scdoc" <<<"$out" && [ ! -e "$dest" ]; then
  pass "install: make install NOBUILD=1 without man pages nor scdoc fails, says to install scdoc, installs nothing"
else
  fail "install: make install NOBUILD=1 without man pages nor scdoc fails, says to install scdoc, installs nothing" \
    "$out" "$( [ -e "$dest" ] && layout "$dest")"
fi

finish
