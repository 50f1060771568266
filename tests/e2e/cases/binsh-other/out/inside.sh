# nixpkgs: "check if we can set /bin/sh to something different" (GNU hello -g)
expect_present /bin/sh
expect_output foo /bin/sh -g foo
