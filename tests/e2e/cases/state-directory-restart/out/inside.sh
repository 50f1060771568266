# nixpkgs: "check if StateDirectory works". The first run writes the state
# and fails on purpose; systemd restarts the unit; the second run finds it.
echo "run as $(id -u)" >>/out/runs
[ -e /tmp/canary ] && fail "/tmp/canary is there: /tmp is not fresh"
: >/tmp/canary || fail "cannot create /tmp/canary"
if [ -e /var/lib/ncg-e2e-state/foo ]; then
  expect_content /var/lib/ncg-e2e-state/foo works
else
  echo works >/var/lib/ncg-e2e-state/foo || fail "cannot write /var/lib/ncg-e2e-state/foo"
  if [ -z "$FAILS" ]; then
    note "first run: state written, exiting with failure to be restarted"
    exit 1
  fi
fi
