for n in 1 2; do
  rm -f "$NCG_OUT/verdict"
  expect_start_ok "$NCG_UNIT"
  expect_verdict "$NCG_OUT" PASS
  runs=$(cat "$NCG_OUT/runs")
  [ "$runs" = "$n" ] || die "start $n: the state directory holds $runs runs"
done
expect_confined "$NCG_UNIT"
ok "state kept across two starts"
