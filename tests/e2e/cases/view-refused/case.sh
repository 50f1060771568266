# Runs in the boot where the container's store is read-only.
keeper=ncg-view-refused-keeper.service
d=$(view_digest "$NCG_UNIT")
[ "$(view_digest "$keeper")" = "$d" ] || die "the keeper has another view: $(view_digest "$keeper")"
view=$VIEWS/$d
record=$VIEW_RECORDS/$d
u=$(view_unit "$d")
saved=/root/ncg-e2e-record-$d

# Whatever a scenario did, undone; then the unit must start as generated.
restore() {
  ctl stop "$keeper" || true
  in_ct rm -f "/etc/systemd/system/$u" /etc/systemd/system/nix-confinement-view@.service
  wait_for 10 "$u to stop" view_inactive "$d"
  local i
  for i in 1 2 3; do
    in_ct umount -l "$view/s" 2>/dev/null || true
    in_ct umount -l "$view" 2>/dev/null || true
  done
  if in_ct test -L "$view"; then in_ct rm -f "$view"; fi
  in_ct rm -f "$record" "$VIEW_RECORDS/.ncg-e2e-moved"
  in_ct cp -a "$saved" "$record"
  in_ct chown root:root "$VIEW_RECORDS"
  in_ct chmod 0700 "$VIEW_RECORDS"
  ctl daemon-reload
  ctl reset-failed "$u" "$NCG_UNIT" 2>/dev/null || true
}
baseline() {
  rm -f "$NCG_OUT/PRE-RAN" "$NCG_OUT/verdict" "$NCG_OUT/results"
  expect_start_ok "$NCG_UNIT"
  expect_verdict "$NCG_OUT" PASS
  expect_all_erofs "$NCG_OUT"
  expect_view_stopped "$d"
}
keep_view() { # the keeper runs: the view unit is active, the view mounted
  expect_start_ok "$keeper"
  expect_view_mounted "$d"
}
trap restore EXIT
in_ct test -f "$record" || die "no record $record"
in_ct cp -a "$record" "$saved"

masked_instance() {
  ctl mask "$u" >/dev/null
  ctl daemon-reload
  [ "$(unit_prop "$u" LoadState)" = masked ] || die "$u is not masked: the setup did not work"
  expect_refused_because "$NCG_UNIT" "$NCG_OUT" "Unit $u is masked." "Loaded: masked"
}
masked_template() {
  ctl mask nix-confinement-view@.service >/dev/null
  ctl daemon-reload
  [ "$(unit_prop "$u" LoadState)" = masked ] || die "$u is $(unit_prop "$u" LoadState), not masked: the setup did not work"
  expect_refused_because "$NCG_UNIT" "$NCG_OUT" "Unit $u is masked."
}
record_missing() {
  in_ct rm "$record"
  expect_refused_because "$NCG_UNIT" "$NCG_OUT" "Dependency failed" "$record: No such file or directory"
}
record_forged() { # one more store path slipped into the closure
  in_ct sh -c '{ head -n 2 "$1"; { tail -n +3 "$1"; echo "${2##*/}"; } | sort; } >/root/forged && cat /root/forged >"$1"' sh "$record" "$NCG_S_FOOBAR"
  in_ct grep -qx "${NCG_S_FOOBAR##*/}" "$record" || die "the record was not changed: the setup did not work"
  expect_refused_because "$NCG_UNIT" "$NCG_OUT" "Dependency failed" "$record: its content does not have the digest it is named by"
}
record_writable() {
  in_ct chmod 0666 "$record"
  expect_refused_because "$NCG_UNIT" "$NCG_OUT" "$record: not a regular file of ours that no one else can write"
}
record_link() {
  in_ct mv "$record" "$VIEW_RECORDS/.ncg-e2e-moved"
  in_ct ln -s .ncg-e2e-moved "$record"
  expect_refused_because "$NCG_UNIT" "$NCG_OUT" "$record: Too many"
}
records_not_root_alone() {
  in_ct chown nobody "$VIEW_RECORDS"
  expect_refused_because "$NCG_UNIT" "$NCG_OUT" "$VIEW_RECORDS: owned by uid 65534"
  in_ct chown root "$VIEW_RECORDS"
  in_ct chmod 0777 "$VIEW_RECORDS"
  expect_refused_because "$NCG_UNIT" "$NCG_OUT" "$VIEW_RECORDS: owned by uid 0 with mode 777"
}
link_in_place() {
  in_ct mkdir -p /run/ncg-e2e-elsewhere
  in_ct ln -s /run/ncg-e2e-elsewhere "$view"
  expect_refused_because "$NCG_UNIT" "$NCG_OUT" "$view: not a directory: a view is not mounted on a link or a file"
  ! in_ct mountpoint -q /run/ncg-e2e-elsewhere || die "the view was mounted through the link"
  ok "nothing was mounted through the link"
}
unmounted_behind_its_back() {
  keep_view
  in_ct umount "$view"
  [ "$(unit_prop "$u" ActiveState)" = active ] || die "$u is not active: the setup did not work"
  expect_refused_because "$NCG_UNIT" "$NCG_OUT" "Assertion failed"
  ctl restart "$u"
  expect_view_mounted "$d"
  baseline_while_kept
}
baseline_while_kept() { # the keeper still runs: the view stays
  rm -f "$NCG_OUT/PRE-RAN" "$NCG_OUT/verdict" "$NCG_OUT/results"
  expect_start_ok "$NCG_UNIT"
  expect_verdict "$NCG_OUT" PASS
  expect_all_erofs "$NCG_OUT"
  ok "restarting $u mounted the view again"
}
writable_over_view() {
  keep_view
  in_ct mount -t tmpfs ncg-e2e-cover "$view"
  expect_refused_because "$NCG_UNIT" "$NCG_OUT" "Assertion failed"
}
store_on_bound_dir() {
  expect_start_ok "$keeper"
  in_ct mount --bind /nix/store "$view/s"
  in_ct test -e "$view/s/${NCG_S_FOOBAR##*/}" || die "the store is not bound on $view/s: the setup did not work"
  expect_refused_because "$NCG_UNIT" "$NCG_OUT" "Assertion failed"
}
mount_below_after_start() {
  expect_start_ok "$keeper"
  local pid
  pid=$(main_pid "$keeper")
  in_ct mount -t tmpfs ncg-e2e-below "$view/s/${NCG_S_SERVE##*/}/bin"
  in_ct touch "$view/s/${NCG_S_SERVE##*/}/bin/ncg-e2e-planted"
  in_ct test -e "/proc/$pid/root$NCG_S_SERVE/bin/ncg-serve" || die "the keeper lost $NCG_S_SERVE/bin/ncg-serve"
  ! in_ct test -e "/proc/$pid/root$NCG_S_SERVE/bin/ncg-e2e-planted" || die "a mount made below the view reached the running keeper"
  ! in_ct grep -q ncg-e2e-below "/proc/$pid/mountinfo" || die "the keeper's mountinfo shows the new mount"
  ok "a writable tmpfs mounted on $view/s/.../bin after the keeper started does not reach it"
  in_ct umount "$view/s/${NCG_S_SERVE##*/}/bin"
  expect_view_mounted "$d"
}

scenario "baseline: the view as generated" baseline
for s in masked_instance masked_template record_missing record_forged record_writable record_link \
  records_not_root_alone link_in_place unmounted_behind_its_back writable_over_view store_on_bound_dir \
  mount_below_after_start; do
  scenario "$s" "$s"
  restore
  scenario "after $s: the unit starts again" baseline
done
scenarios_done
