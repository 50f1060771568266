expect_content @GREETING@ "hello from the store"
expect_no_write @GREETING@
expect_no_write /nix/store
