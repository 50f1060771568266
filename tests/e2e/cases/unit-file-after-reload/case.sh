# Unit files written while the system runs, as an administrator writes them:
# no daemon-reload, then systemctl start.
generator=/usr/lib/systemd/system-generators/nix-confinement-generator
late=ncg-unit-file-after-reload-late.service
template=ncg-unit-file-after-reload-tpl@.service
restore() {
  ctl stop "$late" "${template%@.service}@one.service" >/dev/null 2>&1 || true
  in_ct rm -f "/etc/systemd/system/$NCG_UNIT" "/etc/systemd/system/$late" "/etc/systemd/system/$template"
  ctl daemon-reload || true
  ctl start nix-confinement-check.path || true
}
trap restore EXIT
write_unit() { # write_unit NAME TEXT: as `cat > /etc/systemd/system/NAME` would
  in_ct sh -c 'cat > "/etc/systemd/system/$1"' write-unit "$1" <<<"$2"
}
generated() { in_ct test -e "/run/systemd/generator/$1.d/zz-confinement.conf"; }

# 1. The new unit is confined from its first start (the watch reloads
# systemd; given up to 10 s, it takes a fraction of one).
write_unit "$NCG_UNIT" "[Service]
Type=oneshot
ExecStart=$NCG_S_CHECK/bin/ncg-check
BindPaths=/out/$NCG_CASE:/out
X-ConfinementEnable=yes
X-ConfinementBinSh=$NCG_S_BB/bin/sh"
for _ in $(seq 100); do generated "$NCG_UNIT" && break; sleep 0.1; done
expect_start_ok "$NCG_UNIT"
expect_confined "$NCG_UNIT"
expect_verdict "$NCG_OUT" PASS
[ "$(unit_prop nix-confinement-check.path ActiveState)" = active ] || die "nix-confinement-check.path is not active"
ok "nix-confinement-check.path is active"

# 2. Without it (the known limit of every generator), a unit started right
# after its file was written runs unconfined, and check --loaded says so.
ctl stop nix-confinement-check.path
check_idle() { [ "$(unit_prop nix-confinement-check.service ActiveState)" != activating ]; }
wait_for 30 "nix-confinement-check.service to finish" check_idle
write_unit "$late" "[Service]
ExecStart=$NCG_S_BB/bin/sleep 600
X-ConfinementEnable=yes
X-ConfinementBinSh=$NCG_S_BB/bin/sh"
write_unit "$template" "[Service]
ExecStart=$NCG_S_BB/bin/sleep 600
X-ConfinementEnable=yes
X-ConfinementBinSh=$NCG_S_BB/bin/sh"
expect_start_ok "$late"
expect_start_ok "${template%@.service}@one.service"
[ -z "$(unit_prop "$late" RootDirectory)" ] || die "$late got a RootDirectory without a reload: the limit is gone?"
ok "$late runs unconfined (no daemon-reload since its file appeared)"
report() { # report ARGS: check --loaded ARGS, its status in REPORT_RC
  REPORT_RC=0
  REPORT=$(in_ct "$generator" check --loaded "$@") || REPORT_RC=$?
  printf '%s\n' "$REPORT" | sed 's/^/      check --loaded| /'
}
expect_line() { # expect_line TEXT...: a line of REPORT starts with TEXT
  local line
  for line in "$@"; do
    grep -qF -- "$line" <<<"$REPORT" || die "no line with: $line"
    ok "reported: $line"
  done
}
report
[ "$REPORT_RC" = 1 ] || die "check --loaded exited $REPORT_RC, expected 1"
expect_line "$late: UNCONFINED: systemd loaded it without its confinement drop-in" \
  "$late: RUNNING UNCONFINED: process" \
  "$template: UNCONFINED: no confinement drop-in" \
  "${template%@.service}@one.service: UNCONFINED: " \
  "${template%@.service}@one.service: RUNNING UNCONFINED: process"

# --reload reloads systemd: the units are loaded confined, but the processes
# started before keep running unconfined until they are restarted.
report --reload
[ "$REPORT_RC" = 1 ] || die "check --loaded --reload exited $REPORT_RC, expected 1"
expect_line "reloading systemd: $late: annotated, but no confinement drop-in was generated" \
  "$late: RUNNING UNCONFINED: process"
if grep -qF "$late: UNCONFINED: " <<<"$REPORT"; then die "$late still loaded without its drop-in after --reload"; fi
ctl restart "$late" "${template%@.service}@one.service"
expect_confined "$late"
report
if grep -E "^(${late//./\\.}|${template%@.service}@)[^:]*: [A-Z ]+: " <<<"$REPORT"; then
  die "problems left after the restart"
fi
expect_line "$late: confined (active, 1 process in /run/confinement/$late)" \
  "${template%@.service}@one.service: confined (active, 1 process in /run/confinement/${template%@.service}@one.service)"
