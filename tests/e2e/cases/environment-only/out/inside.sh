# nixpkgs: "check if only Exec* dependencies are included"
[ "${FOOBAR:-}" = @FOOBAR@ ] || fail "FOOBAR is '${FOOBAR:-}'"
expect_absent "$FOOBAR"
expect_fail cat "$FOOBAR"
