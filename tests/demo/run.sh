#!/usr/bin/env bash
# The README's first command: what the generator does, then the services
# running confined.
#
#   1. builds the generator (cargo build --release, wherever cargo puts it);
#   2. builds a small real Nix store (nix-build, tests/demo/demo.nix) and four
#      units under a scratch root: hello.service, the template echo@.service
#      with echo.socket, broken.service (blocked) and plain.service (not
#      annotated);
#   3. runs the generator on that root with --root, then `explain` and
#      `check`;
#   4. boots Debian in a container (the end-to-end suite's harness and its
#      cached tree) with that store at /nix, the units, and the generator
#      installed as a real generator; starts the services; each one reports
#      what it sees from inside (tests/demo/look.sh): the demo checks that
#      /nix/store holds exactly its closure, that / and the store refuse
#      writes, that the host's files are absent, and that broken.service is
#      refused.
#
# Run as root on Debian; installs what it needs. Exits 0 when everything is
# as expected, with the last line `demo: N services ran confined, M blocked
# as expected`; non-zero otherwise. Environment: DEMO_DIR (the scratch root's
# directory, default /tmp/nix-confinement-generator-demo), and the end-to-end
# suite's (tests/e2e/README.md): NCG_E2E_SUITE, NCG_E2E_KEEP=1, ...
set -euo pipefail
DEMO=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/e2e/lib/helpers.sh
. "$DEMO/../e2e/lib/helpers.sh"
# shellcheck source=tests/e2e/lib/harness.sh
. "$DEMO/../e2e/lib/harness.sh"
# shellcheck disable=SC2034 # the harness's settings: the work directory's name
WORK_PREFIX=ncg-demo

# The harness's progress lines, in the demo's style and on stdout.
log() { printf '   %s\n' "$*"; }
section() { printf '\n== %s\n' "$*"; }
PROBLEMS=()
problem() {
  printf '   !! %s\n' "$1"
  [ $# -lt 2 ] || printf '%s\n' "$2" | sed 's/^/      /'
  PROBLEMS+=("$1")
}
pass() { printf '   ok: %s\n' "$*"; }
quote() { sed 's/^/     | /'; }
name_of() { basename "$1" | cut -d- -f2-; } # a store path's name, without its hash

[ "$(id -u)" = 0 ] || fatal "run as root: the demo installs packages and boots a container"
trap cleanup EXIT
trap 'exit 130' INT TERM
ensure_tools

section "Building the generator (cargo build --release: minutes the first time)"
find_binary
log "$BINARY"

demo=${DEMO_DIR:-/tmp/nix-confinement-generator-demo}
mkdir -p "$(dirname "$demo")"
exec 8>"$demo.lock"
flock -w 600 8 || fatal "another demo is running ($demo.lock)"
rm -rf "$demo"
root="$demo/root"
out="$demo/out"
mkdir -p "$root/etc/systemd/system" "$root/usr/lib/systemd/system" "$out"
store="local?root=$root"

section "A small real Nix store under $root (nix-build, no daemon)"
cp /bin/busybox "$demo/busybox"
busybox=$(nix-store --store "$store" --add "$demo/busybox")
attrs=(bb look hello echo-server)
attr_args=()
for a in "${attrs[@]}"; do attr_args+=(-A "$a"); done
mapfile -t paths < <(nix-build --store "$store" --no-out-link --quiet \
  --option substituters '' --option sandbox false --option build-users-group '' \
  --option sandbox-paths '/bin /lib /lib64 /usr' \
  "$DEMO/demo.nix" --argstr busybox "$busybox" "${attr_args[@]}")
[ ${#paths[@]} = ${#attrs[@]} ] || fatal "nix-build returned ${#paths[@]} paths for ${#attrs[@]} attributes"
bb=${paths[0]} look=${paths[1]} hello=${paths[2]} echo_server=${paths[3]}
for path in "$busybox" "$bb" "$look" "$hello" "$echo_server"; do
  refs=$(nix-store --store "$store" -q --references "$path" |
    while read -r r; do [ "$r" = "$path" ] || name_of "$r"; done | sort | paste -sd ' ')
  printf '   %s%s\n' "$path" "${refs:+  -> $refs}"
done

# A plain annotated unit. Each service writes what it sees to /out, a
# directory of the host that the demo reads (in the container only).
cat >"$root/etc/systemd/system/hello.service" <<UNIT
[Unit]
Description=Says hello from its Nix store closure

[Service]
Type=oneshot
ExecStart=$hello/bin/demo-hello
BindPaths=/out/hello:/out
X-ConfinementEnable=yes
UNIT

# A distribution's template and socket in /usr/lib, annotated by an
# administrator's drop-in (what `systemctl edit echo@.service` writes).
cat >"$root/usr/lib/systemd/system/echo@.service" <<UNIT
[Unit]
Description=Echo server for connection %i

[Service]
ExecStart=$echo_server/bin/demo-echo %i
StandardInput=socket
StandardError=journal
BindPaths=/out/echo:/out
UNIT
cat >"$root/usr/lib/systemd/system/echo.socket" <<UNIT
[Unit]
Description=Echo server socket

[Socket]
ListenStream=127.0.0.1:7777
Accept=yes
UNIT
mkdir -p "$root/etc/systemd/system/echo@.service.d"
cat >"$root/etc/systemd/system/echo@.service.d/override.conf" <<UNIT
[Service]
X-ConfinementEnable=yes
X-ConfinementMode=chroot-only
UNIT

# A unit naming a store path that is on disk but not in the Nix database:
# blocked. Were it ever run, it would leave /out/RAN.
unknown=/nix/store/0123456789abcdfghijklmnpqrsvwxyz-not-in-the-database
mkdir -p "$root$unknown/bin"
printf '#!/bin/sh\necho "ran, unconfined" > /out/RAN\n' >"$root$unknown/bin/daemon"
chmod 0555 "$root$unknown/bin/daemon" "$root$unknown/bin" "$root$unknown"
cat >"$root/etc/systemd/system/broken.service" <<UNIT
[Service]
Type=oneshot
ExecStart=$unknown/bin/daemon
BindPaths=/out/broken:/out
X-ConfinementEnable=yes
UNIT

# Not annotated: the generator leaves it alone. The same program as
# hello.service, run as a control: unconfined, it does see the host.
cat >"$root/etc/systemd/system/plain.service" <<UNIT
[Service]
Type=oneshot
ExecStart=$hello/bin/demo-hello
BindPaths=/out/plain:/out
UNIT

section "Units under $root"
printf '   %-48s %s\n' \
  /etc/systemd/system/hello.service "X-ConfinementEnable=yes" \
  /usr/lib/systemd/system/echo@.service "a distribution's template, with echo.socket (Accept=yes)" \
  /etc/systemd/system/echo@.service.d/override.conf "X-ConfinementEnable=yes, X-ConfinementMode=chroot-only" \
  /etc/systemd/system/broken.service "X-ConfinementEnable=yes; ExecStart= a path Nix does not know" \
  /etc/systemd/system/plain.service "not annotated"

# What each confined service must see in /nix/store: the closure of its
# unit's store paths, as Nix computes it; and the control, the whole store.
closure() { nix-store --store "$store" -q --requisites "$@" | while read -r p; do basename "$p"; done | sort; }
closure_hello=$(closure "$hello")
closure_echo=$(closure "$echo_server")
whole_store=$(ls -A "$root/nix/store" | sort)

section "nix-confinement-generator --root $root $out"
log "(what systemd runs at boot and at every daemon-reload, here on the scratch root)"
status=0
SYSTEMD_LOG_TARGET=console "$BINARY" --root "$root" "$out" 2>&1 | quote || status=${PIPESTATUS[0]}
if [ "$status" = 1 ]; then
  log "exit status 1: a unit was blocked"
else
  problem "exit status $status, expected 1 (broken.service is blocked)"
fi
log "wrote: $(cd "$out" && find . -type f | sed 's|^\./||' | sort | tr '\n' ' ')"

section "nix-confinement-generator --root $root explain hello.service"
"$BINARY" --root "$root" explain hello.service | quote ||
  problem "explain hello.service failed"

section "nix-confinement-generator --root $root check"
status=0
"$BINARY" --root "$root" check 2>&1 | quote || status=${PIPESTATUS[0]}
[ "$status" = 1 ] || problem "check: exit status $status, expected 1 (broken.service would be blocked)"

section "Booting Debian $SUITE: this store at /nix, these units, the generator in /usr/lib/systemd/system-generators"
build_cached build_tree
prepare_work
install_generator
cp -a "$root/etc/systemd/system/." "$ROOT/etc/systemd/system/"
cp -a "$root/usr/lib/systemd/system/." "$ROOT/usr/lib/systemd/system/"
mkdir -p "$OUT"/hello "$OUT"/echo "$OUT"/plain "$OUT"/broken
chmod 0777 "$OUT"/*
# shellcheck disable=SC2034 # read by start_container: the container's /nix (bound read-only)
STORE_ROOT=$root BOOT_MODE=ro
start_container ro

# inspect REPORT CLOSURE ROOT: compare what a service reported (look.sh) with what
# confinement means; prints one line per finding; 0 when all are as expected.
inspect() {
  local report=$1 want=$2 what=$3 got writes bad host
  if [ ! -s "$report" ]; then
    problem "no report in ${report#"$OUT"}: the service did not run to its end"
    return 1
  fi
  bad=${#PROBLEMS[@]}
  got=$(sed -n 's/^store: //p' "$report" | sort)
  if [ "$got" = "$want" ]; then
    pass "/nix/store holds exactly the closure of $what (nix-store -qR): $(grep -c . <<<"$want") paths, nothing else"
  else
    problem "/nix/store is not the closure (< the closure, > what the service saw):" \
      "$(diff <(printf '%s\n' "$want") <(printf '%s\n' "$got") | grep '^[<>]')"
  fi
  writes=$(grep '^write ' "$report")
  if [ "$(grep -c . <<<"$writes")" = 3 ] && ! grep -qv ': Read-only file system$' <<<"$writes"; then
    pass "writes to /, to /nix/store and to a store path fail: Read-only file system"
  else
    problem "writes that did not fail with \"Read-only file system\":" "$(grep -v ': Read-only file system$' <<<"$writes")"
  fi
  host=$(grep '^host ' "$report")
  if [ "$(grep -c . <<<"$host")" = 5 ] && ! grep -qv ': absent$' <<<"$host" &&
    grep -qx 'other files: 0' "$report"; then
    pass "the host's files are absent ($(sed 's/^host \(.*\): absent$/\1/' <<<"$host" | paste -sd ' '))"
    pass "no file at all outside /nix, /out and the API file systems (/dev /proc /sys /run /tmp)"
  else
    problem "the host's files are visible:" "$(grep -v ': absent$' <<<"$host"; grep '^other files:' "$report")"
  fi
  [ "${#PROBLEMS[@]}" = "$bad" ]
}

CONFINED=0
BLOCKED=0

section "hello.service: confined (mode full-apivfs, the default)"
rc=0
start_unit hello.service 2>&1 | quote || rc=${PIPESTATUS[0]}
if [ "$rc" = 0 ]; then
  log "systemctl start hello.service: done"
  said=
  for _ in $(seq 50); do
    said=$(in_ct journalctl --no-pager -o cat -u hello.service | grep -F 'Hello from') && break
    sleep 0.1
  done
  log "it printed (journalctl -u hello.service): ${said:-nothing}"
  [ -n "$said" ] || problem "hello.service printed nothing to the journal"
  log "it wrote what it sees to /out/seen:"
  [ ! -f "$OUT/hello/seen" ] || quote <"$OUT/hello/seen"
  inspect "$OUT/hello/seen" "$closure_hello" demo-hello && CONFINED=$((CONFINED + 1))
else
  problem "systemctl start hello.service failed (status $rc)" "$(ctl status -n 10 hello.service 2>&1)"
fi

section "echo@.service: one confined instance per connection to echo.socket (mode chroot-only)"
if ctl start echo.socket; then
  log "systemctl start echo.socket: listening on 127.0.0.1:7777 (in the container)"
  for client in 1 2; do
    before=$(ls "$OUT/echo")
    answer=$(nsenter -t "$NCG_PID" -n -- bash -c '
      exec 3<>/dev/tcp/127.0.0.1/7777 && printf "%s\n" "$1" >&3 && IFS= read -r -t 20 line <&3 &&
        printf "%s\n" "$line"' client "ping $client" 2>&1) || true
    instance=$(comm -13 <(printf '%s\n' "$before") <(ls "$OUT/echo"))
    log "client $client sent \"ping $client\", got back \"$answer\" from echo@$instance.service, which reports:"
    [ "$answer" = "ping $client" ] || problem "client $client: the echo server did not answer \"ping $client\""
    if [ -n "$instance" ] && [ "$(grep -c . <<<"$instance")" = 1 ]; then
      inspect "$OUT/echo/$instance" "$closure_echo" demo-echo && CONFINED=$((CONFINED + 1))
    else
      problem "client $client: expected one new report in /out, found: ${instance:-none}"
    fi
  done
  # Both clients are gone: their instances end, and none may have failed.
  for _ in $(seq 100); do
    [ -z "$(ctl list-units --plain --no-legend --state=active,activating,deactivating 'echo@*.service')" ] && break
    sleep 0.1
  done
  mapfile -t failed < <(ctl list-units --plain --no-legend --state=failed 'echo@*.service' | awk '{ print $1 }')
  if [ ${#failed[@]} = 0 ]; then
    log "both instances ended when their client left; none failed"
  else
    problem "instances failed: ${failed[*]}" "$(ctl status -n 10 "${failed[@]}" 2>&1)"
  fi
else
  problem "systemctl start echo.socket failed" "$(ctl status -n 10 echo.socket 2>&1)"
fi

section "plain.service: the same program as hello.service, not annotated (a control)"
rc=0
start_unit plain.service 2>&1 | quote || rc=${PIPESTATUS[0]}
report=$OUT/plain/seen
if [ "$rc" != 0 ] || [ ! -s "$report" ]; then
  problem "plain.service did not run (status $rc)" "$(ctl status -n 10 plain.service 2>&1)"
elif [ "$(sed -n 's/^store: //p' "$report" | sort)" = "$whole_store" ] &&
  grep -qx 'write /: allowed' "$report" && [ "$(grep -c '^host .*: present$' "$report")" = 5 ] &&
  ! grep -qx 'other files: 0' "$report"; then
  log "unconfined, it sees the whole store ($(grep -c . <<<"$whole_store") entries), / accepts writes,"
  log "the host's files are present ($(sed -n 's/^other files: //p' "$report") files outside /nix, /out and the API file systems)."
  log "So the checks above can fail: they passed because of the confinement."
else
  problem "the control saw less than the host: the checks above may prove nothing" "$(cat "$report")"
fi

section "broken.service: blocked (its ExecStart= path is not in the Nix database)"
rc=0
start_unit broken.service >/dev/null 2>&1 || rc=$?
status_text=$(ctl status -n 3 broken.service 2>&1) || true
if [ "$rc" != 0 ]; then
  log "systemctl start broken.service: refused (status $rc)"
else
  problem "systemctl start broken.service succeeded"
fi
log "systemctl status broken.service:"
quote <<<"$status_text"
description=$(unit_prop broken.service Description)
if [ "$rc" != 0 ] && [ ! -e "$OUT/broken/RAN" ] && [[ $description == *BLOCKED* ]] &&
  [[ $status_text == *"${unknown#/nix/store/}"* ]]; then
  pass "refused before anything ran; its status says BLOCKED and names the unknown path"
  BLOCKED=$((BLOCKED + 1))
else
  [ ! -e "$OUT/broken/RAN" ] || problem "broken.service RAN: $(cat "$OUT/broken/RAN")"
  [[ $description == *BLOCKED* ]] || problem "its Description= does not say BLOCKED: $description"
  [[ $status_text == *"${unknown#/nix/store/}"* ]] || problem "systemctl status does not name the unknown path"
fi

stop_container
echo
if [ ${#PROBLEMS[@]} = 0 ] && [ "$CONFINED" = 3 ] && [ "$BLOCKED" = 1 ]; then
  echo "demo: $CONFINED services ran confined, $BLOCKED blocked as expected"
else
  [ "$KEEP" = 1 ] || log "(NCG_E2E_KEEP=1 keeps the container's files and journal)"
  problems=problems
  [ ${#PROBLEMS[@]} != 1 ] || problems=problem
  echo "demo: FAILED, ${#PROBLEMS[@]} $problems: $CONFINED of 3 services ran confined as expected, $BLOCKED of 1 blocked"
  exit 1
fi
