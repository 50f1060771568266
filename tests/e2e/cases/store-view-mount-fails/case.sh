# Runs in the boot where the container's /nix is read-only. systemd creates
# the source directory of a bind mount unit when it is missing: a missing
# What= under the read-only /nix cannot be created, so the mount fails; one
# in a writable place would be created empty (the empty-What= scenario).
trap restore_store_view EXIT
override='/etc/systemd/system/'$STORE_VIEW_UNIT'.d'

baseline() {
  start_expect_safe "$NCG_UNIT" "$NCG_OUT"
  [ "$SAFE_OUTCOME" = read-only ] || die "the unit does not start with the view as generated"
  expect_view_ro
}

# expect_what WHAT: the override took: the view's unit mounts WHAT (asked
# once it is unmounted: a mounted unit shows what is mounted).
expect_what() {
  local what
  what=$(unit_prop "$STORE_VIEW_UNIT" What)
  [ "$what" = "$1" ] || die "$STORE_VIEW_UNIT has What=$what, not $1: the override did not take"
  ok "the setup worked: $STORE_VIEW_UNIT has What=$1"
}

what_missing() {
  in_ct mkdir -p "$override"
  printf '[Mount]\nWhat=/nix/ncg-e2e-missing-store\n' | in_ct tee "$override/50-e2e.conf" >/dev/null
  ctl daemon-reload
  unmount_view
  expect_what /nix/ncg-e2e-missing-store
  expect_refused "$NCG_UNIT" "$NCG_OUT"
}

what_empty() {
  in_ct mkdir -p "$override" /run/ncg-e2e-empty-store
  printf '[Mount]\nWhat=/run/ncg-e2e-empty-store\n' | in_ct tee "$override/50-e2e.conf" >/dev/null
  ctl daemon-reload
  unmount_view
  expect_what /run/ncg-e2e-empty-store
  expect_refused "$NCG_UNIT" "$NCG_OUT"
}

where_file() {
  unmount_view
  in_ct rmdir "$STORE_VIEW"
  in_ct touch "$STORE_VIEW"
  in_ct test -f "$STORE_VIEW" || die "$STORE_VIEW is not a regular file: the setup did not work"
  expect_refused "$NCG_UNIT" "$NCG_OUT"
}

where_symlink() {
  unmount_view
  in_ct rmdir "$STORE_VIEW"
  in_ct mkdir -p /run/ncg-e2e-elsewhere
  in_ct ln -s /run/ncg-e2e-elsewhere "$STORE_VIEW"
  in_ct test -L "$STORE_VIEW" || die "$STORE_VIEW is not a symlink: the setup did not work"
  expect_refused "$NCG_UNIT" "$NCG_OUT"
  in_ct mountpoint -q /run/ncg-e2e-elsewhere && die "the view was mounted through the symlink"
  return 0
}

scenario "baseline: the view as generated" baseline
scenario "the mount unit's What= overridden (/etc drop-in) with a directory that does not exist" what_missing
restore_store_view
scenario "the mount unit's What= overridden with an empty directory" what_empty
restore_store_view
scenario "$STORE_VIEW unmounted and replaced by a regular file" where_file
restore_store_view
scenario "$STORE_VIEW unmounted and replaced by a symlink" where_symlink
restore_store_view
scenario "the view restored: the unit starts again, read-only" baseline
scenarios_done
