echo "$NCG_BINDING" >"$NCG_OUT/binding"
default_case
want=$(printf '%s\n' . .. $(closure_of CHECK DOTDOT ELSEWHERE LINK GREETING BUSYBOX | sed 's|^/nix/store/||') | sort)
got=$(sort "$NCG_OUT/ls-store")
[ "$got" = "$want" ] || die "ls -a /nix/store is not the closure:
$(diff <(printf '%s\n' "$want") <(printf '%s\n' "$got") | sed 's/^/      /')"
ok "ls -a /nix/store is exactly the closure ($(closure_of CHECK DOTDOT ELSEWHERE LINK GREETING BUSYBOX | wc -l) paths)"
