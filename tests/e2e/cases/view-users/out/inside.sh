# as a user that is not root: read everything, write nothing (EROFS)
ls -a /nix/store >/out/ls-store
cat /proc/self/mountinfo >/out/mountinfo
list_writable_targets /nix/store >/out/targets
printf '%s\n' /nix /bin /bin/sh >>/out/targets
probe_writes /out/targets /out/results
expect_erofs_all /out/results
find /nix/store -type f | while IFS= read -r f; do
  cat "$f" >/dev/null 2>&1 || echo "$f" >>/out/unreadable
done
[ ! -s /out/unreadable ] || fail "files of the closure that cannot be read: $(cat /out/unreadable)"
