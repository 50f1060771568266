# Minimal builders for the e2e store: there is no nixpkgs here, only
# builtins.derivation with the host's /bin/sh (dash) as builder, run without
# sandbox (nix-build --option sandbox false). Everything an output refers to
# is found by Nix's own reference scanning, so the database holds real
# references.
{ system ? builtins.currentSystem }:
rec {
  # runCommand name env script: $out is whatever `script` makes it.
  runCommand = name: env: script:
    builtins.derivation ({
      inherit name system;
      builder = "/bin/sh";
      args = [ "-eu" "-c" script ];
      PATH = "/usr/bin:/bin";
    } // env);

  # A single-file store path with the given text.
  writeText = name: text:
    runCommand name { inherit text; } ''printf '%s' "$text" > "$out"'';

  # A directory store path with one executable: $out/bin/<name>.
  writeScriptBin = name: text:
    runCommand name { inherit text; } ''
      mkdir -p "$out/bin"
      printf '%s' "$text" > "$out/bin/${name}"
      chmod 0555 "$out/bin/${name}"
    '';

  # Substitute @KEY@ placeholders of a source file with store paths
  # (string context is kept, so the paths become build inputs).
  substitute = file: vars:
    builtins.replaceStrings
      (map (k: "@${k}@") (builtins.attrNames vars))
      (map (k: "${vars.${k}}") (builtins.attrNames vars))
      (builtins.readFile file);
}
