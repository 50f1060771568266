# Sourced by ncg-check inside the confined service.
B=@BB@/bin
expect_output ncg-testuser $B/id -un
expect_output ncg-testgroup $B/id -gn
$B/date +%Z >/out/tz 2>&1
$B/cat /etc/ssl/certs/ca-certificates.crt >/out/tls 2>&1 || fail "cannot read the TLS bundle"
expect_content /etc/ssl/certs/ncg-root.pem "$($B/cat /usr/share/ca-certificates/ncg/ncg-root.crt)"
expect_output /usr/share/zoneinfo/Europe/Berlin $B/readlink /etc/localtime
expect_output @HELLO@/bin/ncg-hello $B/readlink /etc/ncg-nixos
expect_output 'Hello, world!' /etc/ncg-nixos
$B/ls -a /nix/store >/out/ls-store
$B/ls -a /etc >/out/etc
