unit() { echo "ncg-view-template-shared@$1.service"; }
stop_all() { ctl stop 'ncg-view-template-shared@*.service' || true; }
trap stop_all EXIT
n=6
cursor=$(in_ct journalctl -n 0 --show-cursor -o cat | sed -n 's/^-- cursor: //p')
mounts_logged() { # how often the view unit said it mounted the view since the case began
  in_ct journalctl --no-pager -o cat --after-cursor="$cursor" -u "$(view_unit "$1")" | grep -c "view $1: mounted at" || true
}

pids=()
for i in $(seq "$n"); do
  start_unit "$(unit "$i")" &
  pids+=($!)
done
for p in "${pids[@]}"; do
  wait "$p" || die "a concurrent start failed"
done
ok "$n instances started at once"

d=$(view_digest "$(unit 1)")
for i in $(seq 2 "$n"); do
  [ "$(view_digest "$(unit "$i")")" = "$d" ] || die "$(unit "$i") requires another view: $(view_digest "$(unit "$i")")"
done
ok "all $n instances require the view $d"
expect_view_mounted "$d"
[ "$(mounts_logged "$d")" = 1 ] || die "the view was mounted $(mounts_logged "$d") times"
ok "$(view_unit "$d") mounted it once"

dev=$(in_ct findmnt -n -o MAJ:MIN "$VIEWS/$d" | tr -d " ")
want=$(names_of $(closure_of BB GREETING))
for i in $(seq "$n"); do
  pid=$(main_pid "$(unit "$i")")
  got=$(in_ct awk '$5 == "/nix/store" { print $3 }' "/proc/$pid/mountinfo")
  [ "$got" = "$dev" ] || die "$(unit "$i"): /nix/store is device $got, the view is $dev"
  [ "$(store_names_seen_by "$(unit "$i")")" = "$want" ] || die "$(unit "$i") sees $(store_names_seen_by "$(unit "$i")" | tr '\n' ' ')"
done
ok "every instance's /nix/store is the one view (device $dev) and lists exactly the closure ($(printf '%s\n' "$want" | wc -l) paths)"

for i in $(seq 2 "$n"); do ctl stop "$(unit "$i")"; done
expect_view_mounted "$d"
[ "$(store_names_seen_by "$(unit 1)")" = "$want" ] || die "$(unit 1) lost its store"
ok "with one instance left the view stays"
ctl stop "$(unit 1)"
expect_view_stopped "$d"
in_ct test -f "$VIEW_RECORDS/$d" || die "the record $VIEW_RECORDS/$d is gone"
ok "its record stays for the next start"

expect_start_ok "$(unit again)"
expect_view_mounted "$d"
[ "$(mounts_logged "$d")" = 2 ] || die "the view was mounted $(mounts_logged "$d") times in all, expected 2"
[ "$(store_names_seen_by "$(unit again)")" = "$want" ] || die "$(unit again) does not see the closure"
ok "the next start mounted it again"
