# as root: only the mounts can stop these writes
for p in /nix /nix/store @BB@ @BB@/bin @GREETING@ @CHECK@/bin/ncg-check @BUSYBOX@ /bin/sh; do
  expect_no_write "$p"
done
expect_fail mkdir /nix/store/ncg-e2e-new
expect_fail ln -s @GREETING@ /nix/store/ncg-e2e-new-link
