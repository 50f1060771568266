# control (unconfined, root): expected to FAIL on every line
for p in /nix/store @BB@ @GREETING@ @CHECK@/bin/ncg-check @BUSYBOX@; do
  expect_no_write "$p"
done
