# The long names are made here, not shipped as files: a 250-byte drop-in of
# the unit, which would undo the confinement if it were applied after ours
# (an empty BindReadOnlyPaths= resets every bind, BindPaths= too: the
# closure's would be gone, and the program with them), and an annotated unit
# of 254 bytes.
generator=/usr/lib/systemd/system-generators/nix-confinement-generator
late=zzz$(printf 'x%.0s' $(seq 242)).conf
long=ncg-long-names-$(printf 'b%.0s' $(seq 231)).service
[ "${#late}" = 250 ] && [ "${#long}" = 254 ] || die "bad test names: ${#late}, ${#long}"
in_ct mkdir -p "/etc/systemd/system/$NCG_UNIT.d"
printf '[Service]\nBindReadOnlyPaths=\nBindPaths=/out/%s:/out\n' "$NCG_CASE" |
  in_ct sh -c "cat >'/etc/systemd/system/$NCG_UNIT.d/$late'"
printf '[Service]\nType=oneshot\nExecStart=%s/bin/ncg-check\nX-ConfinementEnable=yes\n' "$NCG_S_CHECK" |
  in_ct sh -c "cat >'/etc/systemd/system/$long'"
cleanup() {
  in_ct rm -f "/etc/systemd/system/$NCG_UNIT.d/$late" "/etc/systemd/system/$long"
  ctl daemon-reload
}
trap cleanup EXIT
ctl daemon-reload

default_case
dropins=$(unit_prop "$NCG_UNIT" DropInPaths)
last=${dropins##* }
case $last in
  "/run/systemd/generator/$NCG_UNIT.d/"*) ;;
  *) die "the last drop-in systemd applies is not ours: $dropins" ;;
esac
ours=${last##*/}
[ "${#ours}" -le 255 ] || die "our drop-in's name has ${#ours} bytes"
case " $dropins " in
  *"/$late "*) ;;
  *) die "systemd did not load the ${#late}-byte drop-in: $dropins" ;;
esac
ok "systemd applies our ${#ours}-byte drop-in after the ${#late}-byte one"

[ "$(unit_prop "$long" LoadState)" = loaded ] || die "systemd did not load the ${#long}-byte unit"
[ -z "$(unit_prop "$long" DropInPaths)" ] || die "the ${#long}-byte unit has drop-ins"
[ -z "$(unit_prop "$long" RootDirectory)" ] || die "the ${#long}-byte unit has a RootDirectory"
ok "systemd loads the ${#long}-byte unit without any drop-in: it would start unconfined"

rc=0
report=$(in_ct "$generator" check) || rc=$?
[ "$rc" = 1 ] || die "check exited $rc"
grep -q "^$long: NOT CONFINED: no drop-in can be written for it" <<<"$report" ||
  die "check does not report the ${#long}-byte unit: $report"
in_ct mkdir -p /tmp/ncg-long-names-out
rc=0
log=$(in_ct env SYSTEMD_LOG_TARGET=console "$generator" /tmp/ncg-long-names-out 2>&1) || rc=$?
[ "$rc" = 1 ] || die "the generator exited $rc"
grep -q "$long: NOT CONFINED: no drop-in can be written for it" <<<"$log" ||
  die "the generator does not report the ${#long}-byte unit: $log"
grep -q "1 NOT confined" <<<"$log" || die "the summary does not count it: $(tail -n1 <<<"$log")"
ok "check and the generator report it NOT CONFINED and exit 1"
