# Runs in the boot where the store is a private copy bound read-write.
roots=(CHECK SERVE LINK BB BUSYBOX)
keeper=ncg-view-ro-after-rebind-keeper.service
d=$(view_digest "$NCG_UNIT")
[ "$(view_digest "$keeper")" = "$d" ] || die "the keeper has another view"
view=$VIEWS/$d
binds=()
undo() {
  ctl stop "$keeper" || true
  local i
  for ((i = ${#binds[@]} - 1; i >= 0; i--)); do in_ct umount -l "${binds[$i]}" || true; done
  binds=()
  for i in 1 2 3; do
    in_ct umount -l "$view/s" 2>/dev/null || true
    in_ct umount -l "$view" 2>/dev/null || true
  done
  ctl reset-failed "$(view_unit "$d")" "$NCG_UNIT" 2>/dev/null || true
}
trap undo EXIT

# run WHAT: the next start is confined, read-only everywhere, on the view
run() {
  say "--- start after: $*"
  rm -f "$NCG_OUT/PRE-RAN" "$NCG_OUT/verdict" "$NCG_OUT/results" "$NCG_OUT/mountinfo"
  expect_start_ok "$NCG_UNIT"
  expect_confined "$NCG_UNIT"
  expect_verdict "$NCG_OUT" PASS
  expect_closure_probed "$NCG_OUT" "${roots[@]}"
  expect_all_erofs "$NCG_OUT"
  expect_view_mounts "$NCG_OUT/mountinfo" "$d"
}
keep_view() {
  expect_start_ok "$keeper"
  expect_view_mounted "$d"
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

# while a view is mounted (the keeper runs), the host binds and remounts
# its store: the view's layers are its own, the next start shares it
keep_view
in_ct mount -o remount,bind,ro /nix/store
in_ct mount -o remount,bind,rw /nix/store
in_ct mount --bind /nix/store /nix/store
binds+=(/nix/store)
expect_store_writable_outside
run "with the view mounted: mount -o remount,bind,ro then rw /nix/store; mount --bind /nix/store /nix/store"
expect_view_mounted "$d"
undo

# the view itself remounted read-write
keep_view
rc=0
out=$(in_ct mount -o remount,rw "$view" 2>&1) || rc=$?
if [ "$rc" != 0 ]; then
  ok "mount -o remount,rw of the view fails: $out"
else
  say "mount -o remount,rw of the view succeeded: the next start must be refused"
  expect_refused_because "$NCG_UNIT" "$NCG_OUT" "Assertion failed"
fi
in_ct mount -o remount,bind,rw "$view"
say "mount -o remount,bind,rw of the view: $(in_ct findmnt -n -o OPTIONS "$view")"
! in_ct touch "$view/s/.ncg-e2e-probe" 2>/dev/null || die "the view can be written after mount -o remount,bind,rw"
ok "it still rejects writes: the overlay has no upper layer"
run "mount -o remount,bind,rw of the view"
undo

# the store, read-write, bound on the view's bound directory
keep_view
in_ct mount --bind /nix/store "$view/s"
in_ct touch "$view/s/.ncg-e2e-probe" || die "the store on $view/s is not writable: the setup did not work"
in_ct rm "$view/s/.ncg-e2e-probe"
expect_refused_because "$NCG_UNIT" "$NCG_OUT" "Assertion failed"
undo
run "the view as generated"
