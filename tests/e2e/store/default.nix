# The e2e test store. Built by tests/e2e/run.sh with
#   nix-build --store "local?root=$STORE_ROOT" ... --argstr busybox <path> -A <attr>...
# `busybox` is the store path of the static busybox that run.sh added with
# `nix-store --add /bin/busybox` (a single executable file, no references).
#
# Reference graph (-> = reference registered by Nix's scanner):
#   bb        -> busybox          bin/busybox -> busybox, bin/<applet> -> busybox
#   check     -> bb               access-level checker (busybox sh script)
#   serve     -> bb, greeting     server for the socket-activated template case
#   hello     -> bb               "another program" to bind as /bin/sh
#   sh2       -> bb               bin/sh -> bb/bin/sh: a symlink chain into busybox
#   link      -> target           the store path itself is a symlink
#   greeting, target, foobar      data files
#   profile   -> check, greeting  bin/ncg-check -> check/bin/ncg-check, used
#                                 through /nix/var/nix/profiles/ncg-e2e
#   elsewhere                     the store path itself is a symlink out of
#                                 the store: /etc/ncg-elsewhere
#   dotdot                        symlinks that climb out of it (store -> ..,
#                                 root -> ../../..) or leave the store
#                                 (/etc/ncg-elsewhere, the profile)
#   etc       -> hello            a NixOS-style etc: etc/ncg-nixos -> hello's
#                                 program, reached from the container's
#                                 /etc/ncg-nixos -> /etc/static/ncg-nixos
{ busybox }:
let
  lib = import ./lib.nix { };
  inherit (lib) runCommand writeText writeScriptBin substitute;
  busyboxPath = builtins.storePath busybox;
in
rec {
  bb = runCommand "ncg-bb" { busybox = busyboxPath; } ''
    mkdir -p "$out/bin"
    ln -s "$busybox" "$out/bin/busybox"
    for a in $("$out/bin/busybox" --list); do
      [ "$a" = busybox ] || ln -s busybox "$out/bin/$a"
    done
  '';

  check = writeScriptBin "ncg-check" (substitute ./check.sh { BB = bb; });

  greeting = writeText "ncg-greeting" "hello from the store";

  serve = writeScriptBin "ncg-serve" (substitute ./serve.sh { BB = bb; GREETING = greeting; });

  hello = writeScriptBin "ncg-hello" (substitute ./hello.sh { BB = bb; });

  sh2 = runCommand "ncg-sh2" { inherit bb; } ''
    mkdir -p "$out/bin"
    ln -s "$bb/bin/sh" "$out/bin/sh"
  '';

  target = writeText "ncg-symlink-target" "got me";

  link = runCommand "ncg-symlink" { inherit target; } ''ln -s "$target" "$out"'';

  foobar = writeText "ncg-foobar" "eek";

  elsewhere = runCommand "ncg-symlink-elsewhere" { } ''ln -s /etc/ncg-elsewhere "$out"'';

  dotdot = runCommand "ncg-dotdot" { } ''
    mkdir -p "$out"
    ln -s .. "$out/store"
    ln -s ../../.. "$out/root"
    ln -s /etc/ncg-elsewhere "$out/elsewhere"
    ln -s /nix/var/nix/profiles/ncg-e2e "$out/profile"
  '';

  etc = runCommand "ncg-etc" { inherit hello; } ''
    mkdir -p "$out/etc"
    ln -s "$hello/bin/ncg-hello" "$out/etc/ncg-nixos"
  '';

  profile = runCommand "ncg-profile-env" { inherit check greeting; } ''
    mkdir -p "$out/bin" "$out/share"
    ln -s "$check/bin/ncg-check" "$out/bin/ncg-check"
    ln -s "$greeting" "$out/share/greeting"
  '';
}
