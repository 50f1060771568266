# The demo store: real derivations built by nix-build, whose outputs refer to
# each other, so the Nix database holds real references found by Nix's own
# scanner. `busybox` is a static busybox added with `nix-store --add`.
{ busybox }:
let
  lib = import ../e2e/store/lib.nix { };
  bb = builtins.storePath busybox;
in
rec {
  greeting = lib.writeText "demo-greeting" "Hello from inside the confinement";

  hello = lib.writeScriptBin "demo-hello" ''
    #!${bb} sh
    ${bb} cat ${greeting}
  '';

  echo-server = lib.writeScriptBin "demo-echo" ''
    #!${bb} sh
    exec ${bb} cat
  '';
}
