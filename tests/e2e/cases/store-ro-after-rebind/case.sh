roots=(CHECK SERVE LINK BUSYBOX)
binds=()
undo() {
  local i
  for ((i = ${#binds[@]} - 1; i >= 0; i--)); do in_ct umount "${binds[$i]}" || true; done
  restore_store_view
}
trap undo EXIT

# run: start the unit, everything it can reach in the store is read-only
run() {
  say "--- start after: $*"
  expect_start_ok "$NCG_UNIT"
  expect_confined "$NCG_UNIT"
  expect_verdict "$NCG_OUT" PASS
  expect_closure_probed "$NCG_OUT" "${roots[@]}"
  expect_all_erofs "$NCG_OUT"
  expect_store_mounts_ro "$NCG_OUT/mountinfo" "${roots[@]}"
  expect_view_ro
}

run "boot"

in_ct mount --bind /nix/store /nix/store
binds+=(/nix/store)
expect_store_writable_outside
run "mount --bind /nix/store /nix/store"

in_ct mount --make-shared /nix/store
in_ct mount --bind /nix /nix
binds+=(/nix)
in_ct mount --bind /nix/store /nix/store
binds+=(/nix/store)
expect_store_writable_outside
run "mount --make-shared /nix/store; mount --bind /nix /nix; mount --bind /nix/store /nix/store"

# the view made anew from the shared, read-write /nix/store: still private,
# so a later bind over the store does not reach it
unmount_view
run "umount $STORE_VIEW (the next start mounts it again)"
in_ct mount --bind /nix/store /nix/store
binds+=(/nix/store)
expect_store_writable_outside
run "a view mounted from a shared store, then mount --bind /nix/store /nix/store"
