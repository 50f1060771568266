#!/usr/bin/env bash
# `make install` into a scratch DESTDIR: every installed file, with its mode
# (and a link's target), compared with the expected list, for the default
# PREFIX with the generator directory from pkg-config, for PREFIX=/usr/local
# without pkg-config (the fallback directory), and with the directory given
# on the command line; then `make uninstall` removes every file again.
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

finish
