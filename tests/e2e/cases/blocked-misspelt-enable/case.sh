rc=0
start_unit "$NCG_UNIT" || rc=$?
[ "$rc" != 0 ] || die "systemctl start succeeded: the unit was not blocked"
ok "systemctl start failed (status $rc)"
[ ! -e "$NCG_OUT/UNCONFINED-RAN" ] || die "the unit ran: $(cat "$NCG_OUT/UNCONFINED-RAN")"
ok "ExecStart= did not run"
status=$(ctl status -- "$NCG_UNIT" 2>&1) || true
printf '%s\n' "$status" | sed 's/^/      status| /'
case $status in
  *"X-ConfinementEnabled=yes asks to confine the unit"*"did you mean X-ConfinementEnable= in [Service]?"*)
    ok "systemctl status names the misspelt key and the key it probably meant" ;;
  *) die "systemctl status does not say why the unit is blocked" ;;
esac
