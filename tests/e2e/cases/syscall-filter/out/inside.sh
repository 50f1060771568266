# nixpkgs: "check if shipped unit file still works": kill(2) fails with ELOOP.
# Without the filter this SIGKILLs the checker, and no verdict is written.
if out=$(kill -9 $$ 2>&1); then
  fail "kill(2) succeeded: SystemCallFilter=~kill does not apply"
fi
case $out in
  *"symbolic links"*) ;;
  *) fail "kill failed with '$out', expected ELOOP (Too many levels of symbolic links)" ;;
esac
