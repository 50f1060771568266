# nixpkgs: "existence of bind-mounted /etc": Path('/etc/passwd').read_text()
[ -s /etc/passwd ] || fail "/etc/passwd is empty or missing"
read -r first </etc/passwd || fail "cannot read /etc/passwd"
case ${first:-} in root:*) ;; *) fail "/etc/passwd starts with '${first:-}'" ;; esac
