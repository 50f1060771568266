unit() { echo "ncg-view-template-shared@$1.service"; }
stop_all() { ctl stop 'ncg-view-template-shared@*.service' || true; }
trap stop_all EXIT
n=6
# How often the view was mounted: each mount is a start of its unit, with
# an invocation id of its own. (Counting the unit's journal lines is not
# reliable: a line of a process that has exited may reach the journal
# without its unit.)
invocation() { unit_prop "$(view_unit "$1")" InvocationID; }
mounts_at() { in_ct awk -v p="$VIEWS/$1" '$5 == p' /proc/self/mountinfo | wc -l; }

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
first=$(invocation "$d")
[ -n "$first" ] || die "$(view_unit "$d") has no invocation"
[ "$(mounts_at "$d")" = 1 ] || die "$VIEWS/$d is mounted $(mounts_at "$d") times"
ok "$(view_unit "$d") mounted it once (invocation $first)"

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
[ "$(invocation "$d")" = "$first" ] || die "the view unit was started again while an instance ran"
[ "$(store_names_seen_by "$(unit 1)")" = "$want" ] || die "$(unit 1) lost its store"
ok "with one instance left the view stays"
ctl stop "$(unit 1)"
expect_view_stopped "$d"
in_ct test -f "$VIEW_RECORDS/$d" || die "the record $VIEW_RECORDS/$d is gone"
ok "its record stays for the next start"

expect_start_ok "$(unit again)"
expect_view_mounted "$d"
[ "$(invocation "$d")" != "$first" ] || die "the view unit was not started again"
[ "$(mounts_at "$d")" = 1 ] || die "$VIEWS/$d is mounted $(mounts_at "$d") times"
[ "$(store_names_seen_by "$(unit again)")" = "$want" ] || die "$(unit again) does not see the closure"
ok "the next start mounted it again"
