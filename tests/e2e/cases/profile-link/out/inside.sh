# the program is bound at its original path, so the command line works
expect_present @PROFILE_LINK@/bin/ncg-check
expect_present @CHECK@/bin/ncg-check
