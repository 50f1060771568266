ls -a /nix/store >/out/ls-store
ls -a /nix >/out/ls-nix
cat /proc/self/mountinfo >/out/mountinfo
