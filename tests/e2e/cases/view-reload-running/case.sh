unit() { echo "ncg-view-reload-running@$1.service"; }
packages=/etc/systemd/system/ncg-view-reload-running@.service.d/packages.conf
restore() {
  ctl stop 'ncg-view-reload-running@*.service' || true
  printf '[Service]\nX-ConfinementPackages=%s\n' "$NCG_S_HELLO" | in_ct tee "$packages" >/dev/null || true
  ctl daemon-reload || true
}
trap restore EXIT
old_closure=$(names_of $(closure_of BB HELLO))
new_closure=$(names_of $(closure_of BB HELLO FOOBAR))

expect_start_ok "$(unit old)"
d1=$(view_digest "$(unit old)")
pid=$(main_pid "$(unit old)")
expect_view_mounted "$d1"
[ "$(store_names_seen_by "$(unit old)")" = "$old_closure" ] || die "$(unit old) does not see its closure"
ok "$(unit old) (pid $pid) runs with the view $d1"

printf '[Service]\nX-ConfinementPackages=%s %s\n' "$NCG_S_HELLO" "$NCG_S_FOOBAR" | in_ct tee "$packages" >/dev/null
ctl daemon-reload
d2=$(view_digest "$(unit old)")
[ "$d2" != "$d1" ] || die "the closure changed, the view did not"
ok "after the reload the template requires the view $d2"
[ "$(main_pid "$(unit old)")" = "$pid" ] || die "$(unit old) was restarted"
expect_view_stopped "$d1"
# (the record goes unless another unit of the suite has the same closure)
if in_ct grep -rqs "nix-confinement-view@$d1" /run/systemd/generator; then
  say "another unit needs the view $d1: its record stays"
else
  in_ct test ! -e "$VIEW_RECORDS/$d1" || die "the old record $VIEW_RECORDS/$d1 is still there"
  ok "the old view's record is gone"
fi
[ "$(store_names_seen_by "$(unit old)")" = "$old_closure" ] || die "$(unit old) lost its store: $(store_names_seen_by "$(unit old)" | tr '\n' ' ')"
in_ct grep -q ncg-hello "/proc/$pid/root$NCG_S_HELLO/bin/ncg-hello" || die "$(unit old) cannot read $NCG_S_HELLO/bin/ncg-hello"
in_ct grep -q " /nix/store .*lowerdir=$VIEW_RECORDS/.layer-$d1-" "/proc/$pid/mountinfo" || die "$(unit old)'s /nix/store is not the old view:
$(in_ct grep ' /nix/store ' "/proc/$pid/mountinfo")"
ok "$(unit old) still has the old view: its closure listed and read through its own mount"

expect_start_ok "$(unit new)"
[ "$(view_digest "$(unit new)")" = "$d2" ] || die "$(unit new) requires $(view_digest "$(unit new)")"
expect_view_mounted "$d2"
[ "$(store_names_seen_by "$(unit new)")" = "$new_closure" ] || die "$(unit new) sees $(store_names_seen_by "$(unit new)" | tr '\n' ' ')"
[ "$(store_names_seen_by "$(unit old)")" = "$old_closure" ] || die "$(unit old) now sees $(store_names_seen_by "$(unit old)" | tr '\n' ' ')"
ok "$(unit new) sees the new closure, $(unit old) still the old one"
views=$(in_ct findmnt -rn -o TARGET | grep -c "^$VIEWS/" || true)
[ "$views" = 1 ] || die "$views views are mounted, expected 1: $(in_ct findmnt -rn -o TARGET | grep "^$VIEWS/" | tr '\n' ' ')"
ok "one view is mounted on the host"

ctl stop "$(unit old)" "$(unit new)"
expect_view_stopped "$d2"
