rc=0
start_unit "$NCG_UNIT" || rc=$?
say "first start: status $rc (the first run fails on purpose)"
wait_for 30 "the restarted run's verdict" test -f "$NCG_OUT/verdict"
settled() { [ "$(unit_prop "$NCG_UNIT" ActiveState)" != activating ]; }
wait_for 30 "$NCG_UNIT to settle" settled
expect_confined "$NCG_UNIT"
expect_verdict "$NCG_OUT" PASS
runs=$(wc -l <"$NCG_OUT/runs")
[ "$runs" = 2 ] || die "the service ran $runs times, expected 2"
# NRestarts= cannot be read afterwards: a static unit that ended is
# garbage-collected (its properties reset), so ask the journal.
in_ct journalctl --no-pager -o cat -u "$NCG_UNIT" | grep -q 'restart counter is at 1' ||
  die "no restart in the unit's journal"
ok "ran twice (restarted by systemd), state kept, /tmp fresh"
r=$(unit_prop "$NCG_UNIT" Result)
[ "$r" = success ] || die "Result=$r"
