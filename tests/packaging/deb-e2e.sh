#!/usr/bin/env bash
# The Debian package in a booted Debian (systemd-nspawn), with a real Nix
# store bound read-only at /nix:
#   - before the package, an annotated unit guarded by
#     AssertPathExists=<generator> refuses to start;
#   - `dpkg -i` (no manual daemon-reload: the postinst reloads) confines the
#     annotated services: only their closure in /nix/store, no host files,
#     the store read-only; a unit naming an unknown store path is blocked,
#     with the reason in its Description, the journal and `check`; the
#     generator's messages are under `journalctl -t`, and a running
#     service's view is /proc/PID/root (what the man pages say);
#   - `dpkg -r` warns which services lose their confinement (prerm), the
#     postrm reload drops the drop-ins, the guarded unit refuses to start and
#     the unguarded one runs unconfined: what nix-confinement(5) LIMITATIONS
#     says.
# Run as root. Reuses the Debian tree cached by tests/e2e/run.sh when there
# is one, else debootstraps the same tree (about 40 s, cached).
set -uo pipefail
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || {
  echo "deb-e2e.sh: run as root (debootstrap, mount, systemd-nspawn)" >&2
  exit 2
}
need_commands systemd-nspawn=systemd-container debootstrap=debootstrap nix-store=nix-bin \
  nsenter=util-linux make=make scdoc=scdoc dpkg-shlibdeps=dpkg-dev || exit 2
if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' ||
  ! [ -s /usr/share/keyrings/debian-archive-keyring.gpg ]; then
  note "installing busybox-static debian-archive-keyring"
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static debian-archive-keyring >/dev/null || exit 2
fi

SUITE=${NCG_PKG_SUITE:-bookworm}
CACHE=${NCG_E2E_CACHE:-/var/cache/nix-confinement-generator-e2e}

# ---- the package ------------------------------------------------------------

note "make deb"
if ! out=$(make -C "$REPO" --no-print-directory deb 2>&1); then
  fail "deb-e2e: make deb" "$out"
  finish
  exit 1
fi
DEB=$CARGO_TARGET_DIR/debian/${NAME}_${VERSION}-1_$(dpkg --print-architecture).deb
[ -f "$DEB" ] || {
  fail "deb-e2e: make deb builds ${DEB##*/}" "$out"
  finish
  exit 1
}

# ---- the Debian tree (read-only, shared with tests/e2e) ---------------------

mkdir -p "$CACHE"
TREE=
for done_file in $(ls -t "$CACHE"/tree-"$SUITE"-*.done "$CACHE"/pkg-tree-"$SUITE".done 2>/dev/null); do
  [ -d "${done_file%.done}" ] && TREE=${done_file%.done} && break
done
if [ -z "$TREE" ]; then
  TREE=$CACHE/pkg-tree-$SUITE
  exec 9>"$CACHE/.lock"
  flock -w 3600 9
  if ! [ -e "$TREE.done" ]; then
    mirror=$(grep -hEo 'https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 | tr -d ' ')
    mirror=${mirror:-http://deb.debian.org/debian}
    note "debootstrap $SUITE from $mirror into $TREE (about 40 s)"
    rm -rf "$TREE.tmp" "$TREE"
    if ! debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus \
      --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
      "$SUITE" "$TREE.tmp" "${mirror%/}" >"$CACHE/pkg-debootstrap-$SUITE.log" 2>&1; then
      fail "deb-e2e: debootstrap $SUITE" "$(tail -n 20 "$CACHE/pkg-debootstrap-$SUITE.log")"
      finish
      exit 1
    fi
    rm -f "$TREE.tmp"/var/cache/apt/archives/*.deb
    mv "$TREE.tmp" "$TREE"
    touch "$TREE.done"
  fi
  flock -u 9
fi
note "Debian $SUITE tree: $TREE"

# ---- work directory, store, units -----------------------------------------------

WORK=$(mktemp -d /var/tmp/ncg-pkg-e2e.XXXXXX)
ROOT=$WORK/root
OUT=$WORK/out
STORE=$WORK/store
NSPAWN_PID=
CT_PID=
OVERLAY=0

stop_container() {
  [ -n "$NSPAWN_PID" ] || return 0
  [ -n "$CT_PID" ] && timeout 10 nsenter -t "$CT_PID" -a -- systemctl poweroff --no-block >/dev/null 2>&1
  local i
  for i in $(seq 300); do
    kill -0 "$NSPAWN_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$NSPAWN_PID" 2>/dev/null && kill -KILL "$NSPAWN_PID" 2>/dev/null
  wait "$NSPAWN_PID" 2>/dev/null
  NSPAWN_PID=
  CT_PID=
}
cleanup() {
  stop_container
  [ "$OVERLAY" = 1 ] && { umount "$ROOT" 2>/dev/null || umount -l "$ROOT"; }
  if [ -n "${NCG_PKG_KEEP:-}" ]; then note "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$ROOT" "$OUT" "$STORE" "$WORK/upper" "$WORK/ovwork"
if mount -t overlay overlay -o "lowerdir=$TREE,upperdir=$WORK/upper,workdir=$WORK/ovwork" "$ROOT" 2>/dev/null; then
  OVERLAY=1
else
  cp -a "$TREE/." "$ROOT/"
fi

# A real store: busybox (static) and a probe script, both added with
# nix-store --add; the unit names both, so they are the whole closure. The
# unit runs busybox with argv[0] "busybox" (ExecStart=@), whose sh then runs
# its own applets without a PATH.
BB=$(nix-store --store "local?root=$STORE" --add /bin/busybox)
cat >"$WORK/ncg-pkg-probe" <<EOF
ls -1 /nix/store > /out/store
for p in /etc/os-release /usr/bin /var/lib/dpkg /bin/sh; do
  if test -e \$p; then echo "\$p present"; else echo "\$p absent"; fi
done > /out/host
if ( : >> $BB ) 2>/dev/null; then echo writable; else echo read-only; fi > /out/store-write
echo done > /out/done
EOF
PROBE=$(nix-store --store "local?root=$STORE" --add "$WORK/ncg-pkg-probe")
MISSING=/nix/store/1111111111111111111111111111ncgz-ncg-pkg-missing

unit() { # unit NAME GUARD EXEC
  cat >"$ROOT/etc/systemd/system/ncg-pkg-$1.service" <<EOF
[Unit]
Description=packaging e2e: $1
${2:+AssertPathExists=/usr/lib/systemd/system-generators/$NAME}

[Service]
Type=oneshot
ExecStart=$3
BindPaths=/out/$1:/out
X-ConfinementEnable=yes
EOF
  mkdir -p "$OUT/$1"
  chmod 0777 "$OUT/$1"
}
unit guarded yes "@$BB busybox sh $PROBE"
unit unguarded "" "@$BB busybox sh $PROBE"
unit blocked "" "$MISSING/bin/daemon"
unit running "" "@$BB busybox sleep 600"
sed -i 's/^Type=oneshot$/Type=exec/' "$ROOT/etc/systemd/system/ncg-pkg-running.service"
cp "$DEB" "$ROOT/root/"
DEB_IN=/root/${DEB##*/}

# ---- the container ------------------------------------------------------------

in_ct() { nsenter -t "$CT_PID" -a -- "$@"; }
ctl() { timeout 120 nsenter -t "$CT_PID" -a -- systemctl --no-pager "$@"; }

note "booting $SUITE with systemd-nspawn"
systemd-nspawn --quiet -D "$ROOT" --boot --register=no --keep-unit --console=pipe \
  --private-network --machine="ncg-pkg-$$" --bind-ro="$STORE/nix:/nix" --bind="$OUT:/out" \
  </dev/null >"$WORK/console.log" 2>&1 &
NSPAWN_PID=$!
state=
for _ in $(seq 600); do
  kill -0 "$NSPAWN_PID" 2>/dev/null || break
  CT_PID=$(pgrep -P "$NSPAWN_PID" | head -n1)
  if [ -n "$CT_PID" ] && [ "$(cat "/proc/$CT_PID/comm" 2>/dev/null)" = systemd ]; then
    state=$(timeout 5 nsenter -t "$CT_PID" -a -- systemctl is-system-running 2>/dev/null)
    case $state in running | degraded) break ;; esac
  fi
  sleep 0.1
done
case $state in
  running | degraded) pass "deb-e2e: Debian $SUITE boots ($(ctl --version | head -n1))" ;;
  *)
    fail "deb-e2e: Debian $SUITE boots" "state '$state'" "$(tail -n 30 "$WORK/console.log")"
    finish
    exit 1
    ;;
esac

# expect_start UNIT ok|fail NAME: start UNIT and check the outcome.
start_out=
expect_start() {
  local rc=0
  start_out=$(ctl start "$1" 2>&1) || rc=$?
  if { [ "$2" = ok ] && [ "$rc" = 0 ]; } || { [ "$2" = fail ] && [ "$rc" != 0 ]; }; then
    pass "$3"
  else
    fail "$3" "systemctl start $1: status $rc" "$start_out" "$(ctl status -n 20 "$1" 2>&1)"
  fi
}
prop() { ctl show -p "$2" --value "$1" 2>&1; }
gen_dir=/run/systemd/generator

# 1. Not installed yet.
expect_start ncg-pkg-guarded.service fail \
  "deb-e2e: before the package, the unit guarded by AssertPathExists=<generator> refuses to start"

# 2. dpkg -i, and nothing else.
if out=$(in_ct dpkg -i "$DEB_IN" 2>&1); then
  pass "deb-e2e: dpkg -i ${DEB##*/}"
else
  fail "deb-e2e: dpkg -i ${DEB##*/}" "$out"
fi
if in_ct test -f "$gen_dir/ncg-pkg-guarded.service.d/zz-confinement.conf" &&
  in_ct test -f "$gen_dir/run-nix\\x2dconfinement\\x2dstore.mount"; then
  pass "deb-e2e: the postinst reloaded systemd: drop-ins and mount unit are in $gen_dir"
else
  fail "deb-e2e: the postinst reloaded systemd: drop-ins and mount unit are in $gen_dir" "$(in_ct ls -R "$gen_dir" 2>&1 | head -n 40)"
fi
same "deb-e2e: the postinst started the watch for unit files written later" active "$(prop nix-confinement-check.path ActiveState)"

for u in guarded unguarded; do
  rm -f "$OUT/$u"/*
  expect_start "ncg-pkg-$u.service" ok "deb-e2e: ncg-pkg-$u.service starts confined"
  same "deb-e2e: ncg-pkg-$u.service: RootDirectory" "/run/confinement/ncg-pkg-$u.service" "$(prop "ncg-pkg-$u.service" RootDirectory)"
  same "deb-e2e: ncg-pkg-$u.service sees exactly its closure in /nix/store" \
    "$(printf '%s\n' "${BB##*/}" "${PROBE##*/}" | sort)" "$(sort "$OUT/$u/store" 2>&1)"
  same "deb-e2e: ncg-pkg-$u.service sees no host file, and the store is read-only" \
    "/etc/os-release absent
/usr/bin absent
/var/lib/dpkg absent
/bin/sh absent
read-only" "$(cat "$OUT/$u/host" "$OUT/$u/store-write" 2>&1)"
done

expect_start ncg-pkg-blocked.service fail "deb-e2e: ncg-pkg-blocked.service (unknown store path) does not start"
if grep -q 'Assertion failed' <<<"$start_out"; then
  pass "deb-e2e: systemctl start says: $(head -n1 <<<"$start_out")"
else
  fail "deb-e2e: systemctl start of the blocked unit reports a failed assertion" "$start_out"
fi
description=$(prop ncg-pkg-blocked.service Description)
case $description in
  "BLOCKED by $NAME: "*"$MISSING is not a valid path in the Nix database"*)
    pass "deb-e2e: the blocked unit's Description gives the reason" ;;
  *) fail "deb-e2e: the blocked unit's Description gives the reason" "$description" ;;
esac
journal=$(in_ct journalctl --no-pager -o cat -u ncg-pkg-blocked.service 2>&1)
if grep -q "$MISSING is not a valid path" <<<"$journal"; then
  pass "deb-e2e: journalctl -u ncg-pkg-blocked.service shows the reason (from the postinst's reload)"
else
  fail "deb-e2e: journalctl -u ncg-pkg-blocked.service shows the reason (from the postinst's reload)" "$journal"
fi
rc=0
report=$(in_ct "$NAME" check 2>&1) || rc=$?
if [ "$rc" = 1 ] && grep -q '^ncg-pkg-guarded.service: confined, 2 store paths' <<<"$report" &&
  grep -q '^ncg-pkg-blocked.service: BLOCKED' <<<"$report"; then
  pass "deb-e2e: $NAME check (through /usr/bin) reports the units and exits 1"
else
  fail "deb-e2e: $NAME check (through /usr/bin) reports the units and exits 1" "exit $rc" "$report"
fi
journal=$(in_ct journalctl --no-pager -b -o cat -t "$NAME" 2>&1)
if grep -q "ncg-pkg-blocked.service: ExecStart: $MISSING is not a valid path" <<<"$journal"; then
  pass "deb-e2e: journalctl -b -t $NAME shows the generator's messages"
else
  fail "deb-e2e: journalctl -b -t $NAME shows the generator's messages" "$journal"
fi
# A running service's own view, from outside (nix-confinement(5) VERIFYING).
expect_start ncg-pkg-running.service ok "deb-e2e: ncg-pkg-running.service (Type=exec) starts confined"
pid=$(prop ncg-pkg-running.service MainPID)
same "deb-e2e: ls /proc/MainPID/root/nix/store shows the running service's closure" \
  "${BB##*/}" "$(in_ct ls /proc/"$pid"/root/nix/store 2>&1)"
ctl stop ncg-pkg-running.service >/dev/null 2>&1
listed=$(in_ct dpkg -L "$NAME" 2>&1)
if grep -qx "/usr/share/man/man8/$NAME.8.gz" <<<"$listed" && grep -qx "/usr/share/man/man5/nix-confinement.5.gz" <<<"$listed" &&
  in_ct test -s "/usr/share/man/man8/$NAME.8.gz"; then
  pass "deb-e2e: the man pages are installed"
else
  fail "deb-e2e: the man pages are installed" "$listed"
fi

# 3. dpkg -r.
if out=$(in_ct dpkg -r "$NAME" 2>&1); then
  pass "deb-e2e: dpkg -r $NAME"
else
  fail "deb-e2e: dpkg -r $NAME" "$out"
fi
if grep -q 'UNCONFINED' <<<"$out" && grep -q 'ncg-pkg-blocked.service ncg-pkg-guarded.service ncg-pkg-running.service ncg-pkg-unguarded.service' <<<"$out"; then
  pass "deb-e2e: the prerm names the services that lose their confinement"
  grep -A2 'WARNING' <<<"$out" | sed 's/^/  | /'
else
  fail "deb-e2e: the prerm names the services that lose their confinement" "$out"
fi
if in_ct test -e "$gen_dir/ncg-pkg-guarded.service.d/zz-confinement.conf" ||
  in_ct test -e "$gen_dir/run-nix\\x2dconfinement\\x2dstore.mount"; then
  fail "deb-e2e: the postrm reloaded systemd: the generated files are gone" "$(in_ct ls -R "$gen_dir" 2>&1 | head -n 40)"
else
  pass "deb-e2e: the postrm reloaded systemd: the generated files are gone"
fi
same "deb-e2e: the prerm stopped the watch" inactive "$(prop nix-confinement-check.path ActiveState)"
expect_start ncg-pkg-guarded.service fail "deb-e2e: after removal, the guarded unit refuses to start"
rm -f "$OUT/unguarded"/*
expect_start ncg-pkg-unguarded.service ok "deb-e2e: after removal, the unguarded unit starts"
same "deb-e2e: ... and runs UNCONFINED: it sees the host (the documented limitation)" \
  "/etc/os-release present
/usr/bin present
/var/lib/dpkg present" "$(grep -v '^/bin/sh' "$OUT/unguarded/host" 2>&1)"

stop_container
finish
