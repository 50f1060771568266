# as a user that is not root: read everything, write nothing (EROFS)
ls -a /nix/store >/out/private/ls-store
cat /proc/self/mountinfo >/out/private/mountinfo
list_writable_targets /nix/store >/out/private/targets
printf '%s\n' /nix /bin /bin/sh >>/out/private/targets
probe_writes /out/private/targets /out/private/results
expect_erofs_all /out/private/results
find /nix/store -type f | while IFS= read -r f; do
  cat "$f" >/dev/null 2>&1 || echo "$f" >>/out/private/unreadable
done
[ ! -s /out/private/unreadable ] || fail "files of the closure that cannot be read: $(cat /out/private/unreadable)"
