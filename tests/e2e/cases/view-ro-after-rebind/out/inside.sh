list_writable_targets /nix/store >/out/targets
printf '%s\n' /nix /bin /bin/sh >>/out/targets
probe_writes /out/targets /out/results
expect_erofs_all /out/results
cat /proc/self/mountinfo >/out/mountinfo
