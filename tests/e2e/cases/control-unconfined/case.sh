rc=0
start_unit "$NCG_UNIT" || rc=$?
expect_not_confined "$NCG_UNIT"
expect_verdict "$NCG_OUT" FAIL
n=$(grep -c 'exists, expected absent' "$NCG_OUT/verdict" || true)
[ "$n" = 3 ] || die "the checker reported $n host paths, expected 3"
ok "the checker reports the host's files when not confined"
