# The store is bound read-write into the container here. A masked mount unit
# is never started; seen on 252: RequiresMountsFor= then adds no dependency
# on it at all (it skips mount units that are not loaded), so only what the
# drop-in itself requires can stop the start.
trap restore_store_view EXIT

baseline() {
  start_expect_safe "$NCG_UNIT" "$NCG_OUT"
  [ "$SAFE_OUTCOME" = read-only ] || die "the unit does not start with the view as generated"
  expect_view_ro
}

# masked: as after a reboot with the unit masked: not mounted, masked, and
# the units loaded again (daemon-reload) in that state
masked() {
  unmount_view
  ctl mask "$STORE_VIEW_UNIT"
  ctl daemon-reload
  expect_view_unit_masked
}

masked_empty() {
  masked
  in_ct mkdir -p "$STORE_VIEW"
  expect_refused "$NCG_UNIT" "$NCG_OUT"
}

masked_symlink() {
  masked
  in_ct rmdir "$STORE_VIEW"
  in_ct ln -s /nix/store "$STORE_VIEW"
  expect_view_writable
  expect_refused "$NCG_UNIT" "$NCG_OUT"
}

masked_rw_bind() {
  masked
  in_ct mkdir -p "$STORE_VIEW"
  in_ct mount --bind /nix/store "$STORE_VIEW"
  view_state
  expect_view_writable
  expect_refused "$NCG_UNIT" "$NCG_OUT"
}

scenario "baseline: the view as generated" baseline
scenario "mount unit masked, $STORE_VIEW unmounted (an empty directory)" masked_empty
restore_store_view
scenario "mount unit masked, $STORE_VIEW a symlink to /nix/store" masked_symlink
restore_store_view
scenario "mount unit masked, /nix/store bound read-write at $STORE_VIEW by hand" masked_rw_bind
restore_store_view
scenario "unmasked again: the unit starts, read-only" baseline
scenarios_done
