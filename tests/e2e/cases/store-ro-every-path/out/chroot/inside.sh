# chroot-only: no user namespace, uid 0 with every capability
list_writable_targets /nix/store >/out/chroot/targets
printf '%s\n' /nix /bin /bin/sh >>/out/chroot/targets
probe_writes /out/chroot/targets /out/chroot/results
expect_erofs_all /out/chroot/results
