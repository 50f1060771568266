# nixpkgs: "check if suppressing /bin/sh works" (even with a configured default)
expect_absent /bin/sh
expect_fail /bin/sh -c 'echo foo'
