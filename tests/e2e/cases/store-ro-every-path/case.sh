# X-ConfinementBinSh= joins the roots as the store path of the file it
# resolves to (sh2/bin/sh -> bb/bin/sh -> busybox), not as sh2
roots=(CHECK SERVE PROFILE LINK HELLO FOOBAR BUSYBOX)

opts=$(in_ct findmnt -n -o OPTIONS --target /nix/store)
case ,$opts, in
  *,rw,*) ok "the store is bound read-write into the container ($opts)" ;;
  *) die "the store is not writable in the container: $opts" ;;
esac

for unit in "$NCG_UNIT" ncg-store-ro-every-path-chroot.service; do
  dir=$NCG_OUT
  [ "$unit" = "$NCG_UNIT" ] || dir=$NCG_OUT/chroot
  say "--- $unit"
  expect_start_ok "$unit"
  expect_confined "$unit"
  expect_verdict "$dir" PASS
  expect_closure_probed "$dir" "${roots[@]}"
  expect_all_erofs "$dir"
done
expect_store_mounts "$NCG_OUT/mountinfo" "$NCG_UNIT" "${roots[@]}"
if [ "$NCG_BINDING" = per-path ]; then
  expect_view_ro
else
  # oneshot services: the view is needed while one runs, then stops
  expect_view_stopped "$(view_digest "$NCG_UNIT")"
fi

say "--- control"
start_unit ncg-store-ro-every-path-control.service || die "the control failed to start"
expect_not_confined ncg-store-ro-every-path-control.service
n=$(grep -c . "$NCG_OUT/control/targets")
[ "$n" -gt 0 ] || die "the control probed nothing"
bad=$(grep -v '^OK|' "$NCG_OUT/control/results" || true)
[ -z "$bad" ] || die "unconfined, these writes failed (so the check proves nothing for them):
$bad"
ok "control: unconfined, all $n writes into the same store paths succeed"
