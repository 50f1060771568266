ls -a /nix/store >/out/small/ls-store
ls -a /nix >/out/small/ls-nix
cat /proc/self/mountinfo >/out/small/mountinfo
