#!/usr/bin/env bash
# The Debian package: `make deb` (cargo-deb) builds it; `dpkg-deb -c` lists
# exactly the expected paths with the expected modes; the control file names
# the package, version and dependencies; the maintainer scripts are there,
# valid, and run `systemctl daemon-reload` only when systemd is running (run
# for real in a private mount namespace, with /run on a tmpfs and a fake
# systemctl); the packaged binary runs and the packaged man pages render.
set -uo pipefail
. "$(dirname "$0")/lib.sh"

need_commands make=make scdoc=scdoc man=man-db dpkg-deb=dpkg dpkg-shlibdeps=dpkg-dev unshare=util-linux || exit 2
if ! command -v cargo-deb >/dev/null && ! cargo deb --version >/dev/null 2>&1; then
  note "cargo install cargo-deb (about 2 minutes)"
  cargo install cargo-deb --locked --version '^3.8' >&2 || {
    fail "deb: cargo-deb installs"
    finish
    exit 1
  }
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

note "make deb (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
if ! out=$(make -C "$REPO" --no-print-directory deb 2>&1); then
  fail "deb: make deb builds the package" "$out"
  finish
  exit 1
fi
arch=$(dpkg --print-architecture)
deb=$CARGO_TARGET_DIR/debian/${NAME}_${VERSION}-1_${arch}.deb
if [ -f "$deb" ]; then
  pass "deb: make deb builds ${deb##*/}"
else
  fail "deb: make deb builds ${deb##*/}" "$out"
  finish
  exit 1
fi

# ---- contents ---------------------------------------------------------------

# "mode owner path [-> target]" for every entry but directories.
contents=$(dpkg-deb -c "$deb" | awk '$1 !~ /^d/ { line = $1 " " $2 " " $6; if ($7 == "->") line = line " -> " $8; print line }' | sed 's| \./| /|' | sort -k3)
expected=$(sort -k3 <<EOF
-rwxr-xr-x 0/0 /usr/lib/systemd/system-generators/$NAME
lrwxrwxrwx 0/0 /usr/bin/$NAME -> ../lib/systemd/system-generators/$NAME
-rw-r--r-- 0/0 /usr/lib/systemd/$NAME.conf
-rw-r--r-- 0/0 /usr/share/man/man8/$NAME.8.gz
-rw-r--r-- 0/0 /usr/share/man/man5/nix-confinement.5.gz
-rw-r--r-- 0/0 /usr/share/doc/$NAME/README.md
-rw-r--r-- 0/0 /usr/share/doc/$NAME/copyright
EOF
)
same "deb: dpkg-deb -c lists exactly the expected files, modes and owners" "$expected" "$contents"
printf '%s\n' "$contents" | sed 's/^/  | /'
dirs=$(dpkg-deb -c "$deb" | awk '$1 ~ /^d/ && $1 != "drwxr-xr-x" { print }')
same "deb: every directory is drwxr-xr-x" "" "$dirs"

# ---- control ----------------------------------------------------------------

field() { dpkg-deb -f "$deb" "$1"; }
same "deb: Package, Version, Architecture" "$NAME ${VERSION}-1 $arch" "$(field Package) $(field Version) $(field Architecture)"
depends=$(field Depends)
if grep -q 'libc6' <<<"$depends" && grep -qw 'systemd' <<<"$depends"; then
  pass "deb: Depends: $depends"
else
  fail "deb: Depends names libc6 and systemd" "$depends"
fi
same "deb: Section, Priority" "admin optional" "$(field Section) $(field Priority)"

# ---- the files themselves -----------------------------------------------------

root=$work/root
dpkg-deb -x "$deb" "$root"
check "deb: the packaged generator runs" "$root/usr/lib/systemd/system-generators/$NAME" --version
same "deb: the packaged generator is the release build" \
  "$("$CARGO_TARGET_DIR/release/$NAME" --version)" "$("$root/usr/lib/systemd/system-generators/$NAME" --version)"
check "deb: the packaged configuration is generator.d/$NAME.conf" \
  cmp "$REPO/generator.d/$NAME.conf" "$root/usr/lib/systemd/$NAME.conf"
for page in "$root/usr/share/man/man8/$NAME.8.gz" "$root/usr/share/man/man5/nix-confinement.5.gz"; do
  warnings=$(MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null)
  if [ -z "$warnings" ] && [ -n "$(MANWIDTH=80 man -l "$page" 2>/dev/null)" ]; then
    pass "deb: ${page##*/} renders with no warnings"
  else
    fail "deb: ${page##*/} renders with no warnings" "$warnings"
  fi
done

# ---- maintainer scripts -----------------------------------------------------

control=$work/control
dpkg-deb -e "$deb" "$control"
same "deb: control archive members" "control postinst postrm prerm" "$(ls "$control" | tr '\n' ' ' | sed 's/ $//')"
for script in postinst prerm postrm; do
  f=$control/$script
  if [ -x "$f" ] && head -n1 "$f" | grep -q '^#!/bin/sh' && sh -n "$f" && cmp -s "$f" "$REPO/packaging/debian/$script"; then
    pass "deb: $script is packaging/debian/$script, executable, #!/bin/sh, valid"
  else
    fail "deb: $script is packaging/debian/$script, executable, #!/bin/sh, valid" "$(ls -l "$f" 2>&1)"
  fi
done
if command -v checkbashisms >/dev/null; then
  check "deb: the maintainer scripts have no bashisms" checkbashisms "$control/postinst" "$control/prerm" "$control/postrm"
fi

# run_script SYSTEMD_RUNNING SCRIPT ARGS...: runs a maintainer script in a
# private mount namespace where /run is an empty tmpfs (with
# /run/systemd/system when SYSTEMD_RUNNING is yes) and `systemctl` is a fake
# that logs its arguments; prints what systemctl was called with.
fakebin=$work/bin
mkdir -p "$fakebin"
printf '#!/bin/sh\necho "systemctl $*" >> "$SYSTEMCTL_LOG"\n' >"$fakebin/systemctl"
chmod 755 "$fakebin/systemctl"
run_script() {
  local running=$1 script=$2 log=$work/systemctl.log
  shift 2
  : >"$log"
  unshare -m sh -c '
    mount -t tmpfs tmpfs /run || exit 99
    [ "$1" = yes ] && mkdir -p /run/systemd/system
    shift
    exec "$@"' unshare-run "$running" \
    env PATH="$fakebin:$PATH" SYSTEMCTL_LOG="$log" "$control/$script" "$@" >/dev/null 2>&1 || echo "exit $?"
  cat "$log"
}
reload="systemctl --system daemon-reload"
for args in configure abort-upgrade; do
  same "deb: postinst $args, systemd running: daemon-reload, the watch started" "$reload
systemctl --system start nix-confinement-check.path" "$(run_script yes postinst $args)"
done
same "deb: postinst configure, systemd not running (chroot, image build): nothing" "" "$(run_script no postinst configure 0.0.9-1)"
for args in remove purge; do
  same "deb: postrm $args, systemd running: daemon-reload" "$reload" "$(run_script yes postrm $args)"
  same "deb: postrm $args, systemd not running: nothing" "" "$(run_script no postrm $args)"
done
same "deb: postrm upgrade: nothing (the new postinst reloads)" "" "$(run_script yes postrm upgrade 0.1.1-1)"
same "deb: prerm upgrade, failed-upgrade: nothing" "" "$(run_script yes prerm upgrade 0.1.1-1; run_script yes prerm failed-upgrade 0.1.1-1)"
same "deb: prerm remove, systemd running: the watch stopped" \
  "systemctl --system stop nix-confinement-check.path nix-confinement-check.service" "$(run_script yes prerm remove)"
same "deb: prerm remove, systemd not running: nothing" "" "$(run_script no prerm remove)"

# prerm remove warns about the annotated services, from `check`'s report: a
# fake generator stands in at the packaged path (in the private namespace).
fakegen=$work/gen
mkdir -p "$fakegen"
cat >"$fakegen/$NAME" <<'EOF'
#!/bin/sh
[ "$1" = check ] || exit 2
cat <<'REPORT'
echo@.service: confined, 2 store paths (mode chroot-only)
    X-ConfinementEnable=yes  (/etc/systemd/system/echo@.service.d/override.conf:2)
broken.service: BLOCKED (mode full-apivfs)
    X-ConfinementEnable=yes  (/etc/systemd/system/broken.service:3)
foo@bar.service: opts out of its template's confinement (mode full-apivfs)
/etc/systemd/system/broken.service:2: broken.service: ExecStart: /nix/store/0123456789abcdfghijklmnpqrsvwxyz-not-built is not a valid path in the Nix database /nix/var/nix/db/db.sqlite
3 annotated units, 1 blocked, 1 problem
REPORT
exit 1
EOF
chmod 755 "$fakegen/$NAME"
warning=$(unshare -m sh -c '
  mkdir -p /usr/lib/systemd/system-generators &&
  mount --bind "$1" /usr/lib/systemd/system-generators &&
  exec "$2" remove' unshare-prerm "$fakegen" "$control/prerm" 2>&1 >/dev/null)
if grep -q 'UNCONFINED' <<<"$warning" && grep -q 'echo@.service broken.service' <<<"$warning" && ! grep -q 'foo@bar' <<<"$warning"; then
  pass "deb: prerm remove warns which annotated services will run unconfined"
  printf '%s\n' "$warning" | sed 's/^/  | /'
else
  fail "deb: prerm remove warns which annotated services will run unconfined" "$warning"
fi
if out=$(unshare -m sh -c '
  mkdir -p /usr/lib/systemd/system-generators &&
  mount -t tmpfs tmpfs /usr/lib/systemd/system-generators &&
  exec "$1" remove' unshare-prerm "$control/prerm" 2>&1); then
  same "deb: prerm remove without the generator (half-installed): silent, exit 0" "" "$out"
else
  fail "deb: prerm remove without the generator (half-installed): exit 0" "$out"
fi

finish
