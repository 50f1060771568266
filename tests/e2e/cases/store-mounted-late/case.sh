# Booted as a new administrator would set it up: /nix in fstab, no
# daemon-reload after boot (a case with a boot of its own gets none).
generator=/usr/lib/systemd/system-generators/nix-confinement-generator
in_ct findmnt -n /nix >/dev/null || die "/nix is not mounted"
ok "/nix is mounted from fstab: $(in_ct findmnt -n -o SOURCE,OPTIONS /nix)"

# The enabled unit's start, queued at boot, went on confined.
[ "$(unit_prop "$NCG_UNIT" ActiveState)" = active ] ||
  die "$NCG_UNIT is $(unit_prop "$NCG_UNIT" ActiveState) after boot: $(ctl status -n 0 -- "$NCG_UNIT" 2>&1 | head -n 3)"
ok "$NCG_UNIT started at boot"
expect_confined "$NCG_UNIT"
expect_verdict "$NCG_OUT" PASS

# The generator ran before /nix was mounted and blocked the units; the check
# service, ordered after the store's mount, reloaded systemd before their
# start went on.
journal=$(in_ct journalctl -b --no-pager -o cat -u nix-confinement-check.service)
printf '%s\n' "$journal" | sed 's/^/      check| /'
case $journal in
  *"reloading systemd: $NCG_UNIT: BLOCKED: "*"does not exist (the cause is gone"*) ok "the check service found the unit blocked at boot and reloaded systemd" ;;
  *) die "the check service did not reload systemd for $NCG_UNIT blocked at boot" ;;
esac

# Nothing failed, the system is running.
failed=$(ctl list-units --failed --plain --no-legend)
[ -z "$failed" ] || die "failed units after boot: $failed"
state=$(ctl is-system-running) || true
[ "$state" = running ] || die "is-system-running: $state"
ok "no failed unit, is-system-running: running"

# A unit started by hand later is confined too.
expect_start_ok ncg-store-mounted-late-static.service
expect_confined ncg-store-mounted-late-static.service
expect_verdict "$NCG_OUT/static" PASS

# And the running systemd agrees.
rc=0
report=$(in_ct "$generator" check --loaded) || rc=$?
printf '%s\n' "$report" | sed 's/^/      check --loaded| /'
[ "$rc" = 0 ] || die "check --loaded exited $rc"
case $report in
  *"$NCG_UNIT: confined (active"*) ok "check --loaded: $NCG_UNIT confined" ;;
  *) die "check --loaded does not say $NCG_UNIT is confined" ;;
esac
