[ "${STATE_DIRECTORY:-}" = /var/lib/ncg-e2e-dynamic ] || fail "STATE_DIRECTORY is '${STATE_DIRECTORY:-}'"
echo "$(id -u)" >>/var/lib/ncg-e2e-dynamic/runs || fail "cannot write the state directory"
wc -l </var/lib/ncg-e2e-dynamic/runs >/out/runs
