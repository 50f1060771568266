# expect_visible UNIT DIR ROOT...: what the service listed equals the closure
expect_visible() {
  local unit=$1 dir=$2 want got
  shift 2
  expect_start_ok "$unit"
  expect_confined "$unit"
  expect_verdict "$dir" PASS
  want=$(printf '%s\n' . .. $(closure_of "$@" | sed 's|^/nix/store/||') | sort)
  got=$(sort "$dir/ls-store")
  [ "$got" = "$want" ] || die "$unit: ls -a /nix/store is not the closure of $*:
$(diff <(printf '%s\n' "$want") <(printf '%s\n' "$got") | sed 's/^/      /')"
  ok "$unit: ls -a /nix/store is exactly the $(closure_of "$@" | wc -l) paths of nix-store -qR $*"
  got=$(sort "$dir/ls-nix" | tr '\n' ' ')
  [ "$got" = ". .. store " ] || die "$unit: ls -a /nix is: $got"
  ok "$unit: /nix holds only store"
  expect_store_mounts "$dir/mountinfo" "$unit" "$@"
}

# X-ConfinementBinSh= joins the roots as the store path of the file it
# resolves to (busybox), not sh2; foobar and sh2 are in the store, not here
expect_visible "$NCG_UNIT" "$NCG_OUT" CHECK SERVE PROFILE LINK HELLO BUSYBOX
for p in "$NCG_S_FOOBAR" "$NCG_S_SH2"; do
  grep -qx "${p#/nix/store/}" "$NCG_OUT/ls-store" && die "$p is visible"
done
ok "foobar and sh2 (in the store, not in the closure) are not visible"
# empty X-ConfinementBinSh=: only the checker's closure (3 paths)
expect_visible ncg-store-visibility-exact-small.service "$NCG_OUT/small" CHECK
