# nixpkgs: "check if /bin/sh works"
expect_present /bin/sh
expect_output bar /bin/sh -c 'echo -n bar'
