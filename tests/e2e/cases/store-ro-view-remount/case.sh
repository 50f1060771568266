# Root in the container can change the generator's view of the store. Seen
# on 252 and 257 (kernel 6.x): `mount -o remount,bind,rw` of the view
# succeeds (so does a plain `mount -o remount,rw`, which also reconfigures the
# superblock of the file system under the store, so it is not done here),
# and a bind over the view hides it; the mount unit stays "active (mounted)"
# either way. Binds taken from a writable view are writable: the unit must
# then refuse to start.
trap restore_store_view EXIT

baseline() {
  start_expect_safe "$NCG_UNIT" "$NCG_OUT"
  [ "$SAFE_OUTCOME" = read-only ] || die "the unit does not start with the view as generated"
  expect_view_ro
}

remount_rw() {
  in_ct mount -o remount,bind,rw "$STORE_VIEW"
  view_state
  expect_view_writable
  start_expect_safe "$NCG_UNIT" "$NCG_OUT"
}

bind_over() {
  in_ct mount --bind /nix/store "$STORE_VIEW"
  view_state
  expect_view_writable
  start_expect_safe "$NCG_UNIT" "$NCG_OUT"
}

scenario "baseline: the view as generated" baseline
scenario "mount -o remount,bind,rw $STORE_VIEW" remount_rw
restore_store_view
scenario "mount --bind /nix/store $STORE_VIEW (a read-write bind over the view)" bind_over
restore_store_view
scenario "the view restored: the unit starts again, read-only" baseline
scenarios_done
