# Port of nixpkgs' concurrent-runner test: clients connect to an Accept=yes
# socket; each connection is one confined instance of a template. Protocol:
# tests/e2e/store/serve.sh. Runs in the container's network namespace.
PORT=7010
ctl start ncg-template-socket.socket
ok "socket listening"

declare -a FD INST
connect() { # connect N: open client N, read its greeting
  local f line
  exec {f}<>"/dev/tcp/127.0.0.1/$PORT" || die "client $1: cannot connect"
  FD[$1]=$f
  IFS= read -r -t 30 line <&"$f" || die "client $1: no greeting"
  case $line in
    "ready "*" confined=yes") ;;
    *) die "client $1: greeting '$line'" ;;
  esac
  INST[$1]="ncg-template-socket@${line#ready }"
  INST[$1]="${INST[$1]% confined=yes}.service"
}
request() { # request N CMD EXPECTED
  local line
  printf '%s\n' "$2" >&"${FD[$1]}" || die "client $1: cannot send $2"
  IFS= read -r -t 30 line <&"${FD[$1]}" || die "client $1: no answer to $2 (instance ${INST[$1]})"
  [ "$line" = "$3" ] || die "client $1: answer '$line' to $2, expected '$3'"
}
close() { local f=${FD[$1]}; exec {f}>&-; }
active_instances() { ctl list-units --plain --no-legend --state=active 'ncg-template-socket@*.service' | awk '{ print $1 }'; }
inactive() { [ "$(unit_prop "$1" ActiveState)" != active ] && [ "$(unit_prop "$1" ActiveState)" != deactivating ]; }

for i in 1 2 3 4 5; do connect "$i"; done
n=$(active_instances | wc -l)
[ "$n" = 5 ] || die "$n instances active, expected 5: $(active_instances | tr '\n' ' ')"
ok "5 clients connected, 5 instances active at once"

roots=
for i in 1 2 3 4 5; do
  expect_confined "${INST[$i]}"
  roots="$roots $(unit_prop "${INST[$i]}" RootDirectory)"
done
[ "$(tr ' ' '\n' <<<"$roots" | sed '/^$/d' | sort -u | wc -l)" = 5 ] || die "instances share a root:$roots"
ok "5 distinct roots"

for i in 1 2 3 4 5; do request "$i" run "ok hello from the store"; done
ok "every client served"

# client 1 leaves the protocol's way; instance 2 is stopped by systemctl
request 1 stop bye
close 1
wait_for 20 "${INST[1]} to stop" inactive "${INST[1]}"
ctl stop "${INST[2]}"
wait_for 20 "${INST[2]} to stop" inactive "${INST[2]}"
close 2
ok "instance 1 ended, instance 2 stopped with systemctl stop"

for round in 1 2; do
  for i in 3 4 5; do request "$i" run "ok hello from the store"; done
done
ok "instances 3, 4, 5 still served after the others stopped"

connect 6
request 6 run "ok hello from the store"
expect_confined "${INST[6]}"
ok "a new instance starts and is served"

for i in 3 4 5 6; do
  request "$i" stop bye
  close "$i"
done
for i in 3 4 5 6; do wait_for 20 "${INST[$i]} to stop" inactive "${INST[$i]}"; done
failed=$(ctl list-units --plain --no-legend --state=failed 'ncg-template-socket@*.service' | awk '{ print $1 }')
[ -z "$failed" ] || die "failed instances: $failed"
for i in 1 3 4 5 6; do
  r=$(unit_prop "${INST[$i]}" Result)
  # units that ended are garbage-collected: an empty Result is fine
  [ -z "$r" ] || [ "$r" = success ] || die "${INST[$i]}: Result=$r"
done
ok "no instance failed"
ctl stop ncg-template-socket.socket
