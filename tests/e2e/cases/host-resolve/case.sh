# X-ConfinementHostPaths=@resolve with the host's resolver laid out as
# systemd-resolved does: /etc/resolv.conf a link to
# ../run/systemd/resolve/stub-resolv.conf, a file the resolver replaces by
# renaming a new one over it. Two DNS servers in the container (perl, see
# ncg-dnsd.pl) answer www.ncg.test differently: 127.0.0.2 with 10.0.0.2,
# 127.0.0.3 with 10.0.0.3 (neither is busybox nslookup's fallback,
# 127.0.0.1, so an answer proves resolv.conf was read).

restore() {
  ctl stop "$NCG_UNIT" ncg-dnsd@127.0.0.2.service ncg-dnsd@127.0.0.3.service || true
  in_ct sh -c 'rm -f /etc/hosts && cp -a /root/ncg-saved/. /etc/ && rm -rf /root/ncg-saved /run/systemd/resolve' || true
  ctl daemon-reload || true
}
in_ct sh -c 'mkdir -p /root/ncg-saved && for f in /etc/resolv.conf /etc/hosts; do [ ! -e "$f" ] || cp -a "$f" /root/ncg-saved/; done'
trap restore EXIT

in_ct sh -c '
  mkdir -p /run/systemd/resolve &&
  printf "nameserver 127.0.0.2\n" >/run/systemd/resolve/stub-resolv.conf &&
  ln -sfn ../run/systemd/resolve/stub-resolv.conf /etc/resolv.conf &&
  printf "127.0.0.1 localhost\n10.1.1.1 before.ncg.test\n" >/etc/hosts'
# The resolver's own socket, as systemd-resolved has it: hidden inside.
in_ct perl -MIO::Socket::UNIX -e 'IO::Socket::UNIX->new(Type => SOCK_STREAM(), Local => "/run/systemd/resolve/io.systemd.Resolve", Listen => 1) or die "socket: $!"'
ctl start ncg-dnsd@127.0.0.2.service ncg-dnsd@127.0.0.3.service
for server in 127.0.0.2 127.0.0.3; do
  for _ in $(seq 50); do
    busybox nslookup www.ncg.test "$server" 2>/dev/null | grep -q "10.0.0.${server##*.}" && break
    sleep 0.1
  done
  busybox nslookup www.ncg.test "$server" | grep -q "10.0.0.${server##*.}" ||
    die "the DNS server on $server does not answer"
done
ok "DNS servers answer on 127.0.0.2 and 127.0.0.3 in the container"
ctl daemon-reload

wait_for() { # FILE: written by the service
  local i
  for i in $(seq 100); do
    [ -e "$1" ] && return 0
    sleep 0.1
  done
  die "the service did not write ${1#"$NCG_OUT"/}"
}

rm -f "$NCG_OUT"/{ready,go,done}
expect_start_ok "$NCG_UNIT"
expect_confined "$NCG_UNIT"
wait_for "$NCG_OUT/ready"
[ "$(cat "$NCG_OUT/link")" = ../run/systemd/resolve/stub-resolv.conf ] ||
  die "/etc/resolv.conf inside is not the host's link: $(cat "$NCG_OUT/link")"
ok "inside, /etc/resolv.conf is the host's link ../run/systemd/resolve/stub-resolv.conf"
grep -q 'Address: 10.0.0.2' "$NCG_OUT/first" ||
  die "www.ncg.test did not resolve through 127.0.0.2: $(cat "$NCG_OUT/first")"
ok "inside, www.ncg.test resolves to 10.0.0.2 through the nameserver of the host's resolv.conf"
[ "$(cat "$NCG_OUT/socket")" = "socket 0" ] ||
  die "the resolver's socket is not hidden inside: $(cat "$NCG_OUT/socket")"
ok "the resolver's socket is hidden inside (an inaccessible node)"
want_etc=$(printf '%s\n' . .. gai.conf host.conf hosts nsswitch.conf resolv.conf | sort)
got_etc=$(sort "$NCG_OUT/etc")
# (gai.conf and host.conf only where the tree has them)
for f in gai.conf host.conf; do
  in_ct test -e "/etc/$f" || want_etc=$(grep -vx "$f" <<<"$want_etc")
done
[ "$got_etc" = "$want_etc" ] || die "/etc inside is not what @resolve lists:
$(diff <(echo "$want_etc") <(echo "$got_etc"))"
ok "/etc inside holds exactly what @resolve lists (no shadow, no passwd, nothing else)"

# The resolver replaces its file by rename while the service runs; so
# does an administrator with /etc/hosts (a plain file in /etc).
in_ct sh -c '
  printf "nameserver 127.0.0.3\n" >/run/systemd/resolve/.stub.new &&
  mv /run/systemd/resolve/.stub.new /run/systemd/resolve/stub-resolv.conf &&
  printf "127.0.0.1 localhost\n10.1.1.2 after.ncg.test\n" >/etc/.hosts.new &&
  mv /etc/.hosts.new /etc/hosts'
touch "$NCG_OUT/go"
wait_for "$NCG_OUT/done"
grep -q 'nameserver 127.0.0.3' "$NCG_OUT/resolv-second" ||
  die "the running service still reads the old resolv.conf: $(cat "$NCG_OUT/resolv-second")"
grep -q 'Address: 10.0.0.3' "$NCG_OUT/second" ||
  die "after the rename www.ncg.test did not resolve through 127.0.0.3: $(cat "$NCG_OUT/second")"
ok "after the resolver's file was replaced by rename, the running service resolves through the new nameserver (10.0.0.3)"
# The documented limit: a plain file bound on its own keeps the inode the
# service started with; the next start sees the new one.
cmp -s "$NCG_OUT/hosts-first" "$NCG_OUT/hosts-second" ||
  die "a file renamed over /etc/hosts reached the running service (expected the documented limit)"
grep -q before.ncg.test "$NCG_OUT/hosts-second" || die "/etc/hosts: $(cat "$NCG_OUT/hosts-second")"
ok "a file renamed over the plain /etc/hosts is not seen by the running service (the documented limit)"
rm -f "$NCG_OUT"/{ready,go,done}
ctl restart "$NCG_UNIT"
wait_for "$NCG_OUT/ready"
grep -q after.ncg.test "$NCG_OUT/hosts-first" ||
  die "after a restart /etc/hosts is still the old file: $(cat "$NCG_OUT/hosts-first")"
ok "after a restart the service sees the new /etc/hosts"
