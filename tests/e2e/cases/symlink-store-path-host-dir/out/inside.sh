# The store path is a symlink to /etc/ncg-hostdir on the host (the checker's
# walk also finds nothing writable under /nix).
if [ "$(cat /out/binding)" = view ]; then
  # the view shows the symlink as it is; the host's directory is not there
  expect_output /etc/ncg-hostdir readlink @FOOBAR@
  expect_absent /etc/ncg-hostdir
  expect_absent @FOOBAR@/file
else
  # bound from its target, read-only
  expect_content @FOOBAR@/file "host directory"
  expect_no_write @FOOBAR@
  expect_no_write @FOOBAR@/file
fi
