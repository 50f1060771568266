# The host's files through X-ConfinementHostPaths=: the TLS bundle and a
# link of the TLS store into /usr/share/ca-certificates (files/), the time
# zone as a link into /usr/share/zoneinfo, the user database, and a
# NixOS-style /etc/ncg-nixos -> /etc/static/ncg-nixos with /etc/static a
# link into the store (the ETC store path), set up here and undone after.

restore() {
  in_ct sh -c 'ln -sfn /usr/share/zoneinfo/Etc/UTC /etc/localtime && rm -f /etc/static /etc/ncg-nixos' || true
  ctl daemon-reload || true
}
trap restore EXIT
in_ct sh -c "ln -sfn /usr/share/zoneinfo/Europe/Berlin /etc/localtime &&
  ln -sfn $NCG_S_ETC/etc /etc/static && ln -sfn /etc/static/ncg-nixos /etc/ncg-nixos"
ctl daemon-reload

expect_start_ok "$NCG_UNIT"
expect_confined "$NCG_UNIT"
expect_verdict "$NCG_OUT" PASS
[ "$(cat "$NCG_OUT/tls")" = "$(in_ct cat /etc/ssl/certs/ca-certificates.crt)" ] ||
  die "the TLS bundle inside is not the host's"
ok "the TLS bundle inside equals the host's"
host_tz=$(in_ct date +%Z)
[ "$(cat "$NCG_OUT/tz")" = "$host_tz" ] && [ "$host_tz" != UTC ] ||
  die "date inside says $(cat "$NCG_OUT/tz"), the host $host_tz"
ok "date inside shows the host's time zone ($host_tz)"
# The store inside: the closure of the unit's programs and of the store
# path the NixOS-style link ends in (hello), not the etc store path.
want=$(printf '%s\n' . .. $(closure_of CHECK BB HELLO | sed 's|^/nix/store/||') | sort)
got=$(sort "$NCG_OUT/ls-store")
[ "$got" = "$want" ] || die "ls -a /nix/store is not the closure with hello's:
$(diff <(printf '%s\n' "$want") <(printf '%s\n' "$got"))"
ok "/etc/ncg-nixos -> /etc/static/ncg-nixos -> store: hello and its closure are in the store inside, the etc store path is not"
want_etc=$(printf '%s\n' . .. group localtime ncg-nixos nsswitch.conf passwd ssl timezone | sort)
in_ct test -e /etc/timezone || want_etc=$(grep -vx timezone <<<"$want_etc")
[ "$(sort "$NCG_OUT/etc")" = "$want_etc" ] || die "/etc inside: $(tr '\n' ' ' <"$NCG_OUT/etc")"
ok "/etc inside holds exactly the listed paths"
