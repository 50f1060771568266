# Every way to the store lists the closure; .. stops at the service's root.
ls -a /nix/store >/out/ls-store
dotdot=@DOTDOT@
expect_output "$(ls -a /nix/store)" ls -a @DOTDOT@/store
expect_output "$(ls -a /nix/store)" ls -a @DOTDOT@/store/
expect_output "$(ls -a /nix/store)" ls -a "@DOTDOT@/store/${dotdot##*/}/store"
expect_output "$(ls -a /nix/store)" ls -a @DOTDOT@/..
expect_output "$(ls -a /nix/store)" ls -a /nix/store/../store
expect_output ". .. store" sh -c 'ls -a /nix/store/.. | tr "\n" " " | sed "s/ $//"'
expect_output ". .. store" sh -c 'ls -a @DOTDOT@/../.. | tr "\n" " " | sed "s/ $//"'
expect_output "$(ls -A /)" ls -A @DOTDOT@/root
expect_output "$(ls -A /)" ls -A @DOTDOT@/root/..
expect_output "$(ls -A /)" ls -A @DOTDOT@/../../..
expect_output "$(ls -A /)" ls -A /nix/store/../../../../..
# paths in the store but not in the closure, by every route
foobar=@FOOBAR@
profile=@PROFILE@
for route in /nix/store @DOTDOT@/store @DOTDOT@/.. @DOTDOT@/root/nix/store; do
  expect_absent "$route/${foobar##*/}"
  expect_absent "$route/${profile##*/}"
done
# symlinks that leave the store point to nothing inside
expect_output /etc/ncg-elsewhere readlink @DOTDOT@/elsewhere
expect_fail cat @DOTDOT@/elsewhere/file
expect_output /nix/var/nix/profiles/ncg-e2e readlink @DOTDOT@/profile
expect_fail ls @DOTDOT@/profile/
# a symlink store path to another store path resolves in the closure (per
# path it is bound as its target)
expect_content @LINK@ "got me"
expect_content @GREETING@ "hello from the store"
# a symlink store path out of the store
if [ "$(cat /out/binding)" = view ]; then
  # the view shows symlink store paths as they are; what this one points
  # to is not there
  expect_output @TARGET@ readlink @LINK@
  expect_output /etc/ncg-elsewhere readlink @ELSEWHERE@
  expect_fail cat @ELSEWHERE@/file
else
  # bound from its target, read-only, as the NixOS module does
  expect_content @ELSEWHERE@/file "host file"
  expect_no_write @ELSEWHERE@
  expect_no_write @ELSEWHERE@/file
fi
