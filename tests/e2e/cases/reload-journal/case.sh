# In the container there is no kernel log: at a reload the generator's
# messages must reach the journal all the same, and say what an
# administrator needs (the summary, the unit's warning with file:line).
generator=/usr/lib/systemd/system-generators/nix-confinement-generator
file=/etc/systemd/system/$NCG_UNIT
slip=$NCG_S_BB/bin/busybox/bin/busybox
warning="$file:8: $NCG_UNIT: warning: ExecStartPre: program $slip does not exist ($NCG_S_BUSYBOX is not a directory): systemd cannot run it, the command fails with status 203/EXEC (the unit is confined all the same)"

# 1. The journal after a reload.
if in_ct test -e /dev/kmsg; then
  die "the container has /dev/kmsg: this case is about containers without one"
fi
ok "no /dev/kmsg in the container"
# How often the unit's warning is in the journal: with its unit, and as
# `journalctl -u` shows it. (Counted before and after the reload: journalctl
# 252 finds nothing with both --after-cursor and a field match.)
warnings_with_unit() {
  in_ct journalctl --no-pager -o cat -t nix-confinement-generator OBJECT_SYSTEMD_UNIT="$NCG_UNIT" |
    grep -cxF -- "$warning" || true
}
warnings_of_unit() { in_ct journalctl --no-pager -o cat -u "$NCG_UNIT" | grep -cxF -- "$warning" || true; }
with_unit=$(warnings_with_unit) of_unit=$(warnings_of_unit)
cursor=$(in_ct journalctl -n 0 --show-cursor --no-pager | sed -n 's/^-- cursor: //p')
[ -n "$cursor" ] || die "no journal cursor"
ctl daemon-reload
# (the generator's, not the check service's "N units checked" lines)
generator_journal() {
  in_ct journalctl --no-pager -o cat --after-cursor "$cursor" -t nix-confinement-generator
}
summary() { generator_journal | grep -E '^[0-9]+ units? confined, [0-9]+ blocked'; }
wait_for 10 "the generator's summary in journalctl -t nix-confinement-generator" summary >/dev/null
ok "journalctl -t nix-confinement-generator after the reload: $(summary)"
found=$(($(warnings_with_unit) - with_unit))
[ "$found" = 1 ] || die "the reload put the unit's warning in the journal $found times, expected once:
$(generator_journal | sed 's/^/      /')"
ok "the unit's warning is in the journal once, with OBJECT_SYSTEMD_UNIT=$NCG_UNIT"
found=$(($(warnings_of_unit) - of_unit))
[ "$found" = 1 ] || die "journalctl -u $NCG_UNIT shows the reload's warning $found times, expected once"
ok "journalctl -u $NCG_UNIT shows it"

# 2. check and explain say it too; explain names the real drop-in.
check=$(in_ct "$generator" check 2>&1) || true
grep -qxF -- "$warning" <<<"$check" || die "check does not print the warning:
$check"
ok "check prints the warning"
explain=$(in_ct "$generator" explain "$NCG_UNIT" 2>/dev/null) || die "explain failed"
dropin=/run/systemd/generator/$NCG_UNIT.d/zz-confinement.conf
[ "$(head -n 1 <<<"$explain")" = "# $dropin" ] || die "explain's first line is not '# $dropin':
$(head -n 3 <<<"$explain")"
in_ct test -f "$dropin" || die "$dropin does not exist"
ok "explain's header names $dropin, which exists"
grep -qxF -- "# warning: $warning" <<<"$explain" || die "explain does not print the warning:
$explain"
ok "explain prints the warning"

# 3. What the warning says happens: the command fails with 203/EXEC; the
#    unit is confined all the same.
rc=0
start_unit "$NCG_UNIT" || rc=$?
[ "$rc" != 0 ] || die "systemctl start $NCG_UNIT succeeded, expected the 203/EXEC failure"
expect_confined "$NCG_UNIT"
case $(ctl status -n 0 -- "$NCG_UNIT" 2>&1) in
  *"ExecStartPre=$slip"*"status=203/EXEC"*) ok "systemctl status: ExecStartPre= failed with 203/EXEC, as warned" ;;
  *) die "systemctl status $NCG_UNIT does not show ExecStartPre= failing with 203/EXEC" ;;
esac
ctl reset-failed "$NCG_UNIT"

# 4. With the "-" prefix systemd skips the command, as the warning says.
skipped_unit=ncg-reload-journal-skipped.service
grep -qxF -- "/etc/systemd/system/$skipped_unit:7: $skipped_unit: warning: ExecStartPre: program $slip does not exist ($NCG_S_BUSYBOX is not a directory): systemd cannot run it and skips the command (its \"-\" prefix) (the unit is confined all the same)" <<<"$check" ||
  die "check does not warn about $skipped_unit:
$check"
ok "check: $skipped_unit's command is skipped"
expect_start_ok "$skipped_unit"
expect_confined "$skipped_unit"
