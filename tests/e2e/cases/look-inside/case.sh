# What README.md ("Inside a confined service") says an administrator sees
# and does, on a running confined service.
hosts_unit=ncg-look-inside-hosts.service
cleanup() {
  ctl stop "$NCG_UNIT" "$hosts_unit" || true
  ctl reset-failed ncg-look-inside-missing.service || true
}
trap cleanup EXIT

# 1. /etc is empty inside: a name in the host's /etc/hosts does not resolve.
expect_start_ok "$NCG_UNIT"
expect_confined "$NCG_UNIT"
wait_for 10 "the service's report" test -f "$NCG_OUT/etc"
in_ct grep -q ncg-look-inside-host /etc/hosts || die "the container's /etc/hosts lacks the name"
[ -z "$(cat "$NCG_OUT/etc")" ] || die "/etc inside is not empty: $(cat "$NCG_OUT/etc")"
ok "/etc inside is empty (the container's has $(in_ct ls -A /etc | wc -l) entries)"
grep -q "bad address 'ncg-look-inside-host'" "$NCG_OUT/ping" || die "the name resolved, or another error:
$(cat "$NCG_OUT/ping")"
ok "a name of the host's /etc/hosts does not resolve: $(head -n 1 "$NCG_OUT/ping")"

# 2. Looking inside from outside: the main process, its root, its mounts.
pid=$(ctl show -p MainPID --value "$NCG_UNIT")
[ -n "$pid" ] && [ "$pid" != 0 ] || die "systemctl show -p MainPID: '$pid'"
ok "systemctl show -p MainPID --value $NCG_UNIT: $pid"
root=$(in_ct ls -A "/proc/$pid/root" | tr '\n' ' ')
for entry in nix etc; do
  case " $root " in *" $entry "*) ;; *) die "ls /proc/$pid/root: $root (no $entry)" ;; esac
done
for host_only in home boot; do
  in_ct test -e "/$host_only" || continue
  case " $root " in *" $host_only "*) die "ls /proc/$pid/root shows the host's /$host_only" ;; esac
done
ok "ls /proc/$pid/root: $root"
[ -z "$(in_ct ls -A "/proc/$pid/root/etc")" ] || die "ls /proc/$pid/root/etc is not empty"
# Its RootDirectory= seen from outside holds only the mount points systemd
# made: the mounts are in the service's own mount namespace.
outside=$(in_ct ls -A "/run/confinement/$NCG_UNIT/nix/store")
[ -z "$outside" ] || die "ls /run/confinement/$NCG_UNIT/nix/store from outside: $outside"
ok "ls /run/confinement/$NCG_UNIT from outside: $(in_ct ls -A "/run/confinement/$NCG_UNIT" | tr '\n' ' '), nix/store empty"
store=$(in_ct ls -A "/proc/$pid/root/nix/store" | sort)
[ "$store" = "$(closure_of BB | sed 's|^/nix/store/||')" ] || die "ls /proc/$pid/root/nix/store is not the closure: $store"
ok "ls /proc/$pid/root/nix/store: exactly the closure of its ExecStart= ($(wc -l <<<"$store") paths)"
mounts=$(in_ct findmnt -N "$pid" -n -o TARGET,OPTIONS /nix/store) || die "findmnt -N $pid /nix/store failed"
case $mounts in
  /nix/store*ro,*|/nix/store*ro) ok "findmnt -N $pid /nix/store: $mounts" ;;
  *) die "findmnt -N $pid /nix/store: $mounts" ;;
esac

# 3. nsenter into its mount namespace: its root is the confined one, where
#    there is no ls; a program of the closure, by its store path, runs.
if out=$(in_ct nsenter -t "$pid" -m ls / 2>&1); then
  die "nsenter -t $pid -m ls / ran: $out"
fi
case $out in
  *"failed to execute ls"*) ok "nsenter -t $pid -m ls /: $out" ;;
  *) die "nsenter -t $pid -m ls /: $out" ;;
esac
if out=$(in_ct nsenter -t "$pid" -m -r ls / 2>&1); then
  die "nsenter -t $pid -m -r ls / ran: $out"
fi
ok "nsenter -t $pid -m -r ls /: $out"
inside=$(in_ct nsenter -t "$pid" -m "$NCG_S_BB/bin/ls" -A / | tr '\n' ' ') ||
  die "nsenter -t $pid -m $NCG_S_BB/bin/ls -A / failed"
[ "$inside" = "$root" ] || die "nsenter -t $pid -m ls sees '$inside', /proc/$pid/root shows '$root'"
ok "nsenter -t $pid -m $NCG_S_BB/bin/ls -A /: the same root"
ctl stop "$NCG_UNIT"

# 4. BindReadOnlyPaths=/etc/hosts: that one file, and the name resolves.
expect_start_ok "$hosts_unit"
expect_confined "$hosts_unit"
wait_for 10 "the service's report" test -f "$NCG_OUT/hosts/etc"
[ "$(cat "$NCG_OUT/hosts/etc")" = hosts ] || die "/etc inside holds: $(cat "$NCG_OUT/hosts/etc")"
ok "with BindReadOnlyPaths=/etc/hosts, /etc inside holds: hosts"
grep -q "PING ncg-look-inside-host (192.0.2.7)" "$NCG_OUT/hosts/ping" || die "the name does not resolve:
$(cat "$NCG_OUT/hosts/ping")"
ok "the name resolves: $(head -n 1 "$NCG_OUT/hosts/ping")"
pid=$(ctl show -p MainPID --value "$hosts_unit")
[ "$(in_ct cat "/proc/$pid/root/etc/hosts")" = "$(in_ct cat /etc/hosts)" ] ||
  die "cat /proc/$pid/root/etc/hosts is not the container's /etc/hosts"
ok "cat /proc/$pid/root/etc/hosts: the container's /etc/hosts"

# 5. A bound host file that is missing fails every start; "-" skips it.
in_ct test ! -e /etc/ncg-look-inside-missing || die "/etc/ncg-look-inside-missing exists"
rc=0
start_unit ncg-look-inside-missing.service || rc=$?
[ "$rc" != 0 ] || die "ncg-look-inside-missing.service started with its bound file missing"
case $(ctl status -n 5 ncg-look-inside-missing.service 2>&1) in
  *"status=226/NAMESPACE"*) ok "BindReadOnlyPaths= of a missing file: the start fails with 226/NAMESPACE" ;;
  *) die "ncg-look-inside-missing.service did not fail with 226/NAMESPACE:
$(ctl status -n 5 ncg-look-inside-missing.service 2>&1)" ;;
esac
say "  $(in_ct journalctl --no-pager -o cat -u ncg-look-inside-missing.service | grep -m 1 'mount namespacing')"
expect_start_ok ncg-look-inside-optional.service
expect_confined ncg-look-inside-optional.service
