generator=/usr/lib/systemd/system-generators/nix-confinement-generator
conf=/etc/systemd/nix-confinement-generator.conf.d/50-e2e-views-elsewhere.conf
elsewhere=/run/ncg-e2e-views
restore() {
  local i
  for i in 1 2 3; do in_ct umount "$VIEW_RECORDS" 2>/dev/null || true; done
  in_ct chown root:root "$VIEW_RECORDS" || true
  in_ct chmod 0700 "$VIEW_RECORDS" || true
  in_ct rm -f "$conf"
  in_ct rm -rf "$elsewhere" /run/ncg-e2e-generator-out
  ctl daemon-reload || true
}
trap restore EXIT

# generator_says TEXT: the generator, run by hand as at a reload (into a
# scratch directory, its log on the console), logs TEXT.
generator_says() {
  local log
  in_ct rm -rf /run/ncg-e2e-generator-out
  in_ct mkdir -p /run/ncg-e2e-generator-out
  log=$(in_ct env SYSTEMD_LOG_TARGET=console "$generator" /run/ncg-e2e-generator-out 2>&1) || true
  grep -qF -- "$1" <<<"$log" || die "the generator does not say '$1':
$log"
  ok "the generator says: $(grep -F -- "$1" <<<"$log")"
}
runs() { # runs BINDING: confined that way, and the checker passes
  rm -f "$NCG_OUT/verdict"
  expect_start_ok "$NCG_UNIT"
  NCG_EXPECT_BINDING=$1 expect_confined "$NCG_UNIT"
  expect_verdict "$NCG_OUT" PASS
}
check_says() { # what `check` says of the unit's store (reported)
  say "  check: $(in_ct "$generator" check 2>&1 | grep "^$NCG_UNIT:" || true)"
}

say "--- views as generated"
runs view
check_says

say "--- a ramfs (no extended attributes) on $VIEW_RECORDS"
in_ct mount -t ramfs ncg-e2e-ramfs "$VIEW_RECORDS"
generator_says "closure views not used (trusted extended attributes cannot be set here ($VIEW_RECORDS: "
ctl daemon-reload
runs per-path
check_says
in_ct umount "$VIEW_RECORDS"
ctl daemon-reload
runs view
ok "with the ramfs gone, views again"

say "--- $VIEW_RECORDS not root's alone"
in_ct chown nobody "$VIEW_RECORDS"
generator_says "closure views not used ($VIEW_RECORDS: owned by uid 65534 with mode 700"
ctl daemon-reload
runs per-path
in_ct chown root "$VIEW_RECORDS"
ctl daemon-reload
runs view

say "--- [Generator] Views=$elsewhere"
in_ct mkdir -p "${conf%/*}"
printf '[Generator]\nViews=%s\n' "$elsewhere" | in_ct tee "$conf" >/dev/null
ctl daemon-reload
d=$(view_digest "$NCG_UNIT")
in_ct test -f "$elsewhere/$d" || die "no record $elsewhere/$d"
# (the default directory still holds the record of the reload before)
in_ct rm -f "$VIEW_RECORDS/$d"
ok "the record is kept in $elsewhere, and only there"
runs view
restore
runs view
