roots=(CHECK SERVE PROFILE LINK HELLO FOOBAR BUSYBOX)
want=$(printf '%s\n' . .. $(closure_of "${roots[@]}" | sed 's|^/nix/store/||') | sort)
for unit in "$NCG_UNIT" ncg-view-users-private.service; do
  dir=$NCG_OUT
  [ "$unit" = "$NCG_UNIT" ] || dir=$NCG_OUT/private
  say "--- $unit"
  expect_start_ok "$unit"
  expect_confined "$unit"
  expect_verdict "$dir" PASS
  got=$(sort "$dir/ls-store")
  [ "$got" = "$want" ] || die "$unit: ls -a /nix/store is not the closure:
$(diff <(printf '%s\n' "$want") <(printf '%s\n' "$got") | sed 's/^/      /')"
  ok "$unit: ls -a /nix/store is exactly the closure"
  expect_closure_probed "$dir" "${roots[@]}"
  expect_all_erofs "$dir"
  expect_view_mounts "$dir/mountinfo" "$(view_digest "$unit")"
done
