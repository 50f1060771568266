rc=0
start_unit "$NCG_UNIT" || rc=$?
[ "$rc" != 0 ] || die "systemctl start succeeded: the unit was not blocked"
ok "systemctl start failed (status $rc)"
status=$(ctl status -- "$NCG_UNIT" 2>&1) || true
printf '%s\n' "$status" | sed 's/^/      status| /'
case $status in
  *ncg-e2e-unregistered*) ok "systemctl status names the unregistered path" ;;
  *) die "systemctl status does not say why the unit is blocked" ;;
esac
for m in PRE-RAN UNCONFINED-RAN; do
  [ ! -e "$NCG_OUT/$m" ] || die "$m exists: $(cat "$NCG_OUT/$m")"
done
ok "neither ExecStartPre= nor ExecStart= ran"
[ "$(unit_prop "$NCG_UNIT" ActiveState)" != active ] || die "the unit is active"
journal=$(in_ct journalctl --no-pager -o cat -u "$NCG_UNIT")
printf '%s\n' "$journal" | tail -n 5 | sed 's/^/      journal| /'
case $journal in
  *[Aa]ssert*) ok "the journal shows a failed assertion" ;;
  *) die "no assertion failure in the unit's journal" ;;
esac
# At daemon-reload the generator also sends the reason to the journal with
# OBJECT_SYSTEMD_UNIT=, which `journalctl -u` (and so `systemctl status`)
# includes for messages sent by root.
generator_lines=$(in_ct journalctl --no-pager -o cat -u "$NCG_UNIT" -t nix-confinement-generator)
printf '%s\n' "$generator_lines" | tail -n 3 | sed 's/^/      generator| /'
case $generator_lines in
  *"is not a valid path in the Nix database"*) ok "journalctl -u shows the generator's reason" ;;
  *) die "the generator's reason is not in the unit's journal" ;;
esac
