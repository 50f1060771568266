# every directory and regular file below /nix/store (each closure path is a
# bind from the generator's read-only view), /bin/sh (a bind of busybox, the
# running shell), and the root's own /nix and /bin
list_writable_targets /nix/store >/out/targets
printf '%s\n' /nix /bin /bin/sh >>/out/targets
probe_writes /out/targets /out/results
expect_erofs_all /out/results
cat /proc/self/mountinfo >/out/mountinfo
