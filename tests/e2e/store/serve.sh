#!@BB@/bin/sh
# ncg-serve INSTANCE: one confined instance per connection of the
# socket-activated template case (Accept=yes, StandardInput=socket).
# Line protocol on the connection:
#   server, on start:  "ready INSTANCE confined=yes|no"
#   client "run"   ->  "ok <content of a store file, read by a new process>"
#   client "stop"  ->  "bye", then the instance exits
# EOF from the client ends the instance too.
PATH=@BB@/bin
export PATH
confined=yes
for p in /etc/os-release /usr/bin /var/lib/dpkg; do
  [ -e "$p" ] && confined=no
done
echo "ready ${1:-?} confined=$confined"
while IFS= read -r cmd; do
  case $cmd in
    run)
      if g=$(cat @GREETING@); then echo "ok $g"; else echo "bad"; fi
      ;;
    stop)
      echo bye
      exit 0
      ;;
    *) echo "unknown $cmd" ;;
  esac
done
exit 0
