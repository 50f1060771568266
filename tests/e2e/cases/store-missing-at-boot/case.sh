# After boot, /nix is an empty file system: the store is not there at all.
generator=/usr/lib/systemd/system-generators/nix-confinement-generator
# (the first thing the generator finds missing: X-ConfinementBinSh= names
# a program in the store)
reason="/nix/store does not exist"

# 1. Blocked, and said where an administrator looks.
[ "$(unit_prop "$NCG_UNIT" ActiveState)" != active ] || die "$NCG_UNIT is active"
if [ -e "$NCG_OUT/PRE-RAN" ] || [ -e "$NCG_OUT/verdict" ]; then
  die "$NCG_UNIT ran: $(find "$NCG_OUT" -mindepth 1 -printf '%f ')"
fi
ok "$NCG_UNIT did not start, nothing of it ran"
failed=$(ctl list-units --failed --plain --no-legend)
printf '%s\n' "$failed" | sed 's/^/      --failed| /'
case $failed in
  *nix-confinement-check.service*) ok "systemctl --failed lists nix-confinement-check.service" ;;
  *) die "systemctl --failed does not list nix-confinement-check.service" ;;
esac
state=$(ctl is-system-running) || true
[ "$state" = degraded ] || die "is-system-running: $state, expected degraded"
ok "is-system-running: degraded"
status=$(ctl status -n 20 nix-confinement-check.service 2>&1) || true
printf '%s\n' "$status" | sed 's/^/      status| /'
case $status in
  *"$NCG_UNIT: BLOCKED: "*"$reason"*) ok "systemctl status nix-confinement-check.service names the unit and the reason" ;;
  *) die "systemctl status nix-confinement-check.service does not name $NCG_UNIT and the reason" ;;
esac
case $(in_ct journalctl -b --no-pager -o cat -t nix-confinement-generator) in
  *"$NCG_UNIT: BLOCKED: "*"$reason"*) ok "journalctl -b -t nix-confinement-generator shows it" ;;
  *) die "journalctl -b -t nix-confinement-generator does not show why $NCG_UNIT is blocked" ;;
esac
case $(ctl status -n 0 -- "$NCG_UNIT" 2>&1) in
  *"BLOCKED by nix-confinement-generator"*"$reason"*) ok "systemctl status $NCG_UNIT says BLOCKED and why" ;;
  *) die "systemctl status $NCG_UNIT does not say why it is blocked" ;;
esac
rc=0
report=$(in_ct "$generator" check --loaded) || rc=$?
printf '%s\n' "$report" | sed 's/^/      check --loaded| /'
[ "$rc" = 1 ] || die "check --loaded exited $rc, expected 1"
case $report in
  *"$NCG_UNIT: BLOCKED: "*"$reason"*) ok "check --loaded exits 1 and names $NCG_UNIT BLOCKED" ;;
  *) die "check --loaded does not report $NCG_UNIT blocked" ;;
esac

# 2. The store appears; the next start confines the unit, with no
# daemon-reload by hand: the start waits for the check, which reloads.
in_ct mount --bind /media/nix-store /nix
ok "the store is mounted on /nix by hand"
expect_start_ok "$NCG_UNIT"
expect_confined "$NCG_UNIT"
expect_verdict "$NCG_OUT" PASS
failed=$(ctl list-units --failed --plain --no-legend)
[ -z "$failed" ] || die "still failed: $failed"
ok "no failed unit any more (the check succeeded this time)"
rc=0
report=$(in_ct "$generator" check --loaded) || rc=$?
printf '%s\n' "$report" | sed 's/^/      check --loaded| /'
[ "$rc" = 0 ] || die "check --loaded exited $rc"
ok "check --loaded: clean"
