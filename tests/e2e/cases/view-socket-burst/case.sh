# Each connection is an instance of a confined template; nothing else needs
# the view, so it is mounted for an instance and stopped after it, again
# and again. Runs in the container's network namespace.
PORT=7011
n=20
ctl start ncg-view-socket-burst.socket
ok "socket listening"
d=$(view_digest ncg-view-socket-burst@probe.service)
view=$(view_unit "$d")

# A unit ordered after the view keeps its unit loaded (a unit nothing
# refers to is unloaded once stopped, and starts afresh), as a monitor's
# queries or units ordered after it do on a real system; each connection
# waits until the view has stopped: every connection starts it again.
in_ct sh -c "cat >/run/systemd/system/ncg-view-socket-burst-ref.service" <<UNIT
[Unit]
Description=e2e view-socket-burst: ordered after the view, not needing it
After=$view

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/true
UNIT
ctl daemon-reload
ctl start ncg-view-socket-burst-ref.service
trap 'ctl stop ncg-view-socket-burst-ref.service || true; in_ct rm -f /run/systemd/system/ncg-view-socket-burst-ref.service' EXIT
served=0 failed=0 invocations=()
t0=$(date +%s.%N)
for i in $(seq "$n"); do
  line=
  if exec {f}<>"/dev/tcp/127.0.0.1/$PORT"; then
    IFS= read -r -t 30 line <&"$f" || true
    exec {f}>&-
  fi
  if [ "$line" = ok ]; then served=$((served + 1)); else failed=$((failed + 1)); fi
  invocations+=("$(unit_prop "$view" InvocationID)")
  wait_for 10 "$view to stop" view_inactive "$d"
done
took=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
result=$(unit_prop "$view" Result)
[ "$failed" = 0 ] || die "$failed of $n connections not served in $took s; $view: Result=$result"
ok "all $n connections served in $took s, one after the other"
started=$(printf '%s\n' "${invocations[@]}" | sed '/^$/d' | sort -u | wc -l)
[ "$started" -gt 5 ] || die "$view was started only $started times: the case did not go past the default start limit"
[ "$result" = success ] || die "$view: Result=$result"
ok "$view was started $started times in $took s (the default limit is 5 in 10 s): Result=$result"
failed_units=$(ctl list-units --all --plain --no-legend --state=failed 'ncg-view-socket-burst*' 'nix-confinement-view@*' | awk '{ print $1 }')
[ -z "$failed_units" ] || die "failed units: $failed_units"
ok "no instance and no view unit failed"
ctl stop ncg-view-socket-burst.socket
