expect_content @FOOBAR@ eek
expect_content @TARGET@ "got me"
expect_content @GREETING@ "hello from the store"
