# Run inside ncg-host-resolve.service (confined): resolves a name, waits for
# the case to replace the resolver's file by rename, resolves it again.
B=@BB@/bin
$B/readlink /etc/resolv.conf >/out/link 2>&1
$B/nslookup www.ncg.test >/out/first 2>&1
$B/cat /etc/hosts >/out/hosts-first 2>&1
$B/stat -c '%F %a' /run/systemd/resolve/io.systemd.Resolve >/out/socket 2>&1
$B/ls -a /etc >/out/etc 2>&1
: >/out/ready
while [ ! -e /out/go ]; do $B/sleep 0.1; done
$B/nslookup www.ncg.test >/out/second 2>&1
$B/cat /etc/resolv.conf >/out/resolv-second 2>&1
$B/cat /etc/hosts >/out/hosts-second 2>&1
: >/out/done
exec $B/sleep 1000
