# The store path is a symlink to /etc/ncg-hostdir on the host: bound from
# its target, read-only (the checker's walk also finds nothing writable
# under /nix).
expect_content @FOOBAR@/file "host directory"
expect_no_write @FOOBAR@
expect_no_write @FOOBAR@/file
