#!/usr/bin/env bash
# The Nix packaging, without nixpkgs (there is none here): every file parses
# (`nix-instantiate --parse`); package.nix, module.nix and flake.nix evaluate
# against the stubs in stubs.nix; the package's install script, run with the
# release binary, lays out $out as documented; the configuration file the
# module writes is accepted by the real generator, whose search path then
# finds units where NixOS's systemd finds them (and not in /usr/lib).
set -uo pipefail
. "$(dirname "$0")/lib.sh"

need_commands nix-instantiate=nix-bin nix-store=nix-bin scdoc=scdoc make=make python3=python3-minimal || exit 2

HERE=$REPO/tests/packaging
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

FILES=(flake.nix packaging/nix/package.nix packaging/nix/module.nix tests/packaging/stubs.nix)
for f in "${FILES[@]}"; do
  check "nix: $f parses (nix-instantiate --parse)" nix-instantiate --parse "$REPO/$f"
done

# eval EXPR: evaluates EXPR (with `stubs`, `repo` and `flake` in scope) to JSON.
eval_json() {
  nix-instantiate --eval --strict --json -E "
    let
      repo = $REPO;
      stubs = import $HERE/stubs.nix { inherit repo; };
      flake = import $REPO/flake.nix;
      outputs = flake.outputs { self = outputs; nixpkgs = stubs.nixpkgs; };
    in $1" 2>&1
}
# json_field JSON KEY: one top-level field of a JSON object, as text.
json_field() { python3 -c 'import json,sys; v=json.loads(sys.argv[1])[sys.argv[2]]; print(v if isinstance(v,str) else json.dumps(v))' "$1" "$2"; }

# ---- package.nix -------------------------------------------------------------

pkg=$(eval_json '
  let d = (stubs.pkgsFor "x86_64-linux").callPackage ./packaging/nix/package.nix { }; in {
    inherit (d) pname version postBuild postInstall cargoTestFlags nativeBuildInputs;
    lockFile = toString d.cargoLock.lockFile;
    mainProgram = d.meta.mainProgram;
    keeps = map (p: d.src.filter (toString repo + "/" + p) "regular") [ "Cargo.toml" "src/main.rs" "generator.d/nix-confinement-generator.conf" "packaging/man/nix-confinement.5.scd" "Makefile" ];
    drops = map (p: d.src.filter (toString repo + "/" + p) "regular") [ "target" "target/release/nix-confinement-generator" "packaging/man/nix-confinement.5" "packaging/man/nix-confinement-generator.8" ];
  }')
if ! python3 -c 'import json,sys; json.loads(sys.argv[1])' "$pkg" 2>/dev/null; then
  fail "nix: package.nix evaluates with rustPlatform.buildRustPackage" "$pkg"
else
  pass "nix: package.nix evaluates with rustPlatform.buildRustPackage"
  same "nix: package.nix takes name and version from Cargo.toml" "$NAME $VERSION" \
    "$(json_field "$pkg" pname) $(json_field "$pkg" version)"
  same "nix: package.nix uses the repository's Cargo.lock" "$REPO/Cargo.lock" "$(json_field "$pkg" lockFile)"
  same "nix: package.nix keeps the sources and drops build outputs" '[true, true, true, true, true] [false, false, false, false]' \
    "$(json_field "$pkg" keeps) $(json_field "$pkg" drops)"
  same "nix: package.nix builds the man pages with scdoc and runs only the unit tests" \
    '["scdoc", "installShellFiles"] ["--lib"]' "$(json_field "$pkg" nativeBuildInputs) $(json_field "$pkg" cargoTestFlags)"
  same "nix: meta.mainProgram" "$NAME" "$(json_field "$pkg" mainProgram)"

  # The build's postBuild and postInstall, run for real: postBuild in a copy
  # of the sources, postInstall on an $out holding the release binary where
  # cargo's install hook puts it. installManPage as nixpkgs' (before the
  # fixup phase compresses the pages).
  if build_release; then
    src=$work/src
    mkdir -p "$src"
    (cd "$REPO" && tar --exclude=./target --exclude=./.git -cf - .) | tar -C "$src" -xf -
    rm -f "$src"/packaging/man/*.[0-9]
    out=$work/out
    mkdir -p "$out/bin"
    cp "$CARGO_TARGET_DIR/release/$NAME" "$out/bin/"
    script="installManPage() { local p s; for p; do s=\${p##*.}; install -Dm644 \"\$p\" -t \"\$out/share/man/man\$s/\"; done; }
set -e
$(json_field "$pkg" postBuild)
$(json_field "$pkg" postInstall)"
    if log=$(cd "$src" && out=$out bash -c "$script" 2>&1); then
      pass "nix: the package's postBuild and postInstall run"
      layout=$(cd "$out" && find . \( -type f -o -type l \) -printf '%P %m %y %l\n' | sort)
      expected="bin/$NAME 777 l ../lib/systemd/system-generators/$NAME
lib/systemd/$NAME.conf 644 f 
lib/systemd/system-generators/$NAME 755 f 
share/man/man5/nix-confinement.5 644 f 
share/man/man8/$NAME.8 644 f "
      same "nix: \$out layout (path, mode, type, link)" "$expected" "$layout"
      check "nix: \$out/bin/$NAME runs the generator" "$out/bin/$NAME" --version
      check "nix: \$out/lib/systemd/$NAME.conf is the shipped configuration" \
        cmp "$REPO/generator.d/$NAME.conf" "$out/lib/systemd/$NAME.conf"
    else
      fail "nix: the package's postBuild and postInstall run" "$log"
    fi
  else
    fail "nix: the release binary builds"
  fi
fi

# ---- module.nix ----------------------------------------------------------------

PKG=/nix/store/00000000000000000000000000000000-$NAME-$VERSION
SYSTEMD=/nix/store/11111111111111111111111111111111-systemd-257.8
mod=$(eval_json "
  let
    m = stubs.evalModule { settings = { enable = true; package = \"$PKG\"; }; systemdPackage = \"$SYSTEMD\"; };
    off = stubs.evalModule { settings.package = \"$PKG\"; };
  in {
    packages = m.config.systemd.packages;
    systemPackages = m.config.environment.systemPackages;
    generators = m.config.systemd.generators or null;
    etc = builtins.attrNames m.config.environment.etc;
    text = m.config.environment.etc.\"systemd/nix-confinement-generator.conf\".text;
    options = builtins.attrNames m.options;
    enableDefault = m.options.enable.default;
    offConfig = builtins.attrNames (builtins.removeAttrs off.config [ \"assertions\" ]);
  }")
if ! python3 -c 'import json,sys; json.loads(sys.argv[1])' "$mod" 2>/dev/null; then
  fail "nix: module.nix evaluates" "$mod"
else
  pass "nix: module.nix evaluates"
  same "nix: module.nix options" '["binSh", "enable", "mode", "package", "stateDir", "storeDir", "unitSearchPath"] false' \
    "$(json_field "$mod" options) $(json_field "$mod" enableDefault)"
  same "nix: enabled, the package is in systemd.packages (generator link) and environment.systemPackages, not in systemd.generators" \
    "[\"$PKG\"] [\"$PKG\"] None" \
    "$(json_field "$mod" packages) $(json_field "$mod" systemPackages) $(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["generators"])' "$mod")"
  same "nix: enabled, the module writes /etc/systemd/nix-confinement-generator.conf" '["systemd/nix-confinement-generator.conf"]' "$(json_field "$mod" etc)"
  same "nix: disabled, the module sets nothing but its assertion" '[]' "$(json_field "$mod" offConfig)"
  text=$(json_field "$mod" text)
  expected_path="/etc/systemd/system.control /run/systemd/system.control /run/systemd/transient /etc/systemd/system /etc/systemd-mutable/system /nix/var/nix/profiles/default/lib/systemd/system /etc/systemd/system.attached /run/systemd/system /run/systemd/system.attached $SYSTEMD/lib/systemd/system"
  same "nix: the configuration carries NixOS's unit search path" "SearchPath=$expected_path" "$(grep '^SearchPath=' <<<"$text")"

  # The real generator reads what the module writes: an annotated unit in
  # each of /etc/systemd/system and systemd's own directory is confined, one
  # in /usr/lib/systemd/system (not searched on NixOS) is not seen.
  if build_release && command -v nix-store >/dev/null; then
    root=$work/nixos
    mkdir -p "$root/etc/systemd/system" "$root$SYSTEMD/lib/systemd/system" "$root/usr/lib/systemd/system"
    printf '%s' "$text" >"$root/etc/systemd/nix-confinement-generator.conf"
    hello=/nix/store/0123456789abcdfghijklmnpqrsvwxyz-hello-2.12
    mkdir -p "$root$hello/bin"
    printf '#!/bin/sh\n' >"$root$hello/bin/hello"
    chmod 755 "$root$hello/bin/hello"
    printf '%s\nsha256:%064d\n0\n\n0\n' "$hello" 0 | nix-store --store "local?root=$root" --load-db >/dev/null 2>&1
    for unit in etc/systemd/system/a.service "${SYSTEMD#/}/lib/systemd/system/b.service" usr/lib/systemd/system/c.service; do
      printf '[Service]\nExecStart=%s/bin/hello\nX-ConfinementEnable=yes\n' "$hello" >"$root/$unit"
    done
    report=$("$CARGO_TARGET_DIR/release/$NAME" --root "$root" check 2>&1)
    same "nix: the generator accepts the module's configuration and searches NixOS's unit directories" \
      "a.service: confined, 1 store path (mode full-apivfs)
b.service: confined, 1 store path (mode full-apivfs)
2 annotated units, 0 blocked, 0 problems" "$(grep -v '^    ' <<<"$report" | sed 's/; store: .* (mode / (mode /')"
  else
    fail "nix: the release binary builds (and nix-store is there)"
  fi

  # Other settings reach the file.
  text2=$(eval_json "
    (stubs.evalModule { settings = { enable = true; package = \"$PKG\"; mode = \"chroot-only\"; binSh = null; }; }).config.environment.etc.\"systemd/nix-confinement-generator.conf\".text")
  same "nix: mode = \"chroot-only\" and binSh = null reach [Defaults]" '"Mode=chroot-only" "BinSh="' \
    "$(printf '%b' "$text2" | grep -E '^(Mode|BinSh)=' | sed 's/.*/"&"/' | tr '\n' ' ' | sed 's/ $//')"

  # The guard: annotated services while the generator is disabled do not build.
  guard=$(eval_json '
    let
      svc = { foo.serviceConfig."X-ConfinementEnable" = true; bar.serviceConfig."X-ConfinementEnable" = "no"; baz.serviceConfig = { }; };
      a = settings: (builtins.head (stubs.evalModule { inherit settings; services = svc; }).config.assertions);
    in [ (a { }).assertion (a { }).message (a { enable = true; }).assertion
         (builtins.head (stubs.evalModule { services = { bar.serviceConfig."X-ConfinementEnable" = false; }; }).config.assertions).assertion ]')
  same "nix: annotated services with the generator disabled fail the build (assertion), enabled or unannotated they do not" \
    'false true true' "$(python3 -c 'import json,sys; v=json.loads(sys.argv[1]); print(str(v[0]).lower(), str(v[2]).lower(), str(v[3]).lower())' "$guard" 2>&1)"
  if grep -q 'foo.service' <<<"$guard" && ! grep -q 'bar.service' <<<"$guard"; then
    pass "nix: the assertion names the annotated service"
  else
    fail "nix: the assertion names the annotated service" "$guard"
  fi
fi

if grep -qF 'systemd.services.<name>.serviceConfig."X-ConfinementEnable" = true;' "$REPO/packaging/nix/module.nix" &&
  grep -qF 'systemd.services.foo.serviceConfig."X-ConfinementEnable" = true;' "$REPO/packaging/nix/module.nix"; then
  pass "nix: the module's documentation shows how to annotate a unit from Nix"
else
  fail "nix: the module's documentation shows how to annotate a unit from Nix"
fi

# ---- flake.nix -------------------------------------------------------------------

flk=$(eval_json '{
  args = builtins.functionArgs flake.outputs;
  systems = builtins.attrNames outputs.packages;
  default = outputs.packages.x86_64-linux.default.pname;
  aarch64 = outputs.packages.aarch64-linux.nix-confinement-generator.version;
  check = outputs.checks.x86_64-linux.package.pname;
  overlay = (outputs.overlays.default (stubs.pkgsFor "x86_64-linux") { }).nix-confinement-generator.pname;
  module = toString outputs.nixosModules.default;
  nixpkgs = flake.inputs.nixpkgs.url;
}')
if ! python3 -c 'import json,sys; json.loads(sys.argv[1])' "$flk" 2>/dev/null; then
  fail "nix: flake.nix outputs evaluate" "$flk"
else
  pass "nix: flake.nix outputs evaluate"
  same "nix: flake.nix packages, checks and overlay" \
    "[\"aarch64-linux\", \"x86_64-linux\"] $NAME $VERSION $NAME $NAME" \
    "$(json_field "$flk" systems) $(json_field "$flk" default) $(json_field "$flk" aarch64) $(json_field "$flk" check) $(json_field "$flk" overlay)"
  same "nix: flake.nix nixosModules.default is packaging/nix/module.nix" "$REPO/packaging/nix/module.nix" "$(json_field "$flk" module)"
fi

finish
