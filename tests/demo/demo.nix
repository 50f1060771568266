# The demo store: real derivations built by nix-build, whose outputs refer to
# each other, so the Nix database holds real references found by Nix's own
# scanner. `busybox` is a static busybox added with `nix-store --add`.
#
#   hello        -> greeting, look, bb, busybox
#   echo-server  -> look, bb, busybox
#   look         -> bb, busybox     (look.sh: reports what a service sees)
#   bb           -> busybox         (bin/busybox and bin/sh, links to it)
{ busybox }:
let
  lib = import ../e2e/store/lib.nix { };
in
rec {
  # busybox picks its applet by the name it was run as: it must be run as
  # .../busybox or .../sh, not as the store path's <hash>-busybox.
  bb = lib.runCommand "demo-busybox-links" { busybox = builtins.storePath busybox; } ''
    mkdir -p "$out/bin"
    ln -s "$busybox" "$out/bin/busybox"
    ln -s "$busybox" "$out/bin/sh"
  '';

  greeting = lib.writeText "demo-greeting" "Hello from inside the confinement";

  look = lib.writeScriptBin "demo-look" (lib.substitute ./look.sh { BB = bb; });

  # Says hello, then writes what it sees to /out/seen.
  hello = lib.writeScriptBin "demo-hello" ''
    #!${bb}/bin/sh
    ${bb}/bin/busybox cat ${greeting}
    echo
    ${look}/bin/demo-look > /out/seen
  '';

  # One instance per connection (stdin and stdout are the connection): writes
  # what it sees to /out/<its argument>, then echoes what the client sends.
  echo-server = lib.writeScriptBin "demo-echo" ''
    #!${bb}/bin/sh
    ${look}/bin/demo-look > "/out/$1"
    exec ${bb}/bin/busybox cat
  '';
}
