#!@BB@/bin/sh
# demo-look: run inside each of the demo's services, it reports what the
# service itself sees, one finding a line (tests/demo/run.sh reads it back
# and compares it with what it expects):
#
#   uid: 0
#   root: dev nix out proc ...             what / holds
#   store: <name>                          one line per /nix/store entry
#   write /: Read-only file system         a real write attempt (touch), or
#   write /nix/store: ...                  "allowed" when it succeeded (the
#   write <its own store path>: ...        file is removed again)
#   host /etc/passwd: absent               or present, for a few of the
#                                          host's files
#   other files: 0                         how many files (not directories)
#                                          there are outside /nix, /out and
#                                          the API file systems
#
# Real writes, not `test -w`: busybox's test says yes to root even on a
# read-only mount.
bb=@BB@/bin/busybox
self=${0%/bin/*}

try_write() { # try_write DIR
  probe=${1%/}/.demo-write-probe
  if err=$($bb touch "$probe" 2>&1); then
    $bb rm -f "$probe"
    echo "write $1: allowed"
  else
    echo "write $1: ${err##*: }"
  fi
}

echo "uid: $($bb id -u)"
echo "root:" $($bb ls -A /)
for entry in $($bb ls -A /nix/store); do
  echo "store: $entry"
done
try_write /
try_write /nix/store
try_write "$self"
for path in /etc/passwd /etc/os-release /usr/bin /home /var/lib/dpkg; do
  if [ -e "$path" ] || [ -L "$path" ]; then
    echo "host $path: present"
  else
    echo "host $path: absent"
  fi
done
# In a confinement the rest of / is empty directories (systemd makes some,
# such as /etc and /usr, as mount points): not one file.
echo "other files: $($bb find / \( -path /nix -o -path /out -o -path /dev -o -path /proc \
  -o -path /sys -o -path /run -o -path /tmp -o -path /var/tmp \) -prune -o ! -type d -print |
  $bb wc -l)"
