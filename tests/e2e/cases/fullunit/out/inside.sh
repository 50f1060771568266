# nixpkgs: "check if fullUnit includes all dependencies"
[ "${FOOBAR:-}" = @FOOBAR@ ] || fail "FOOBAR is '${FOOBAR:-}'"
expect_content "$FOOBAR" eek
