list_writable_targets /nix/store >/out/targets
printf '%s\n' /bin/sh >>/out/targets
probe_writes /out/targets /out/results
expect_erofs_all /out/results
