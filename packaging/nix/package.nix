# nix-confinement-generator, built from this repository.
#
#   nix build                      # with flakes, at the top of the repository
#   nix-build -E 'with import <nixpkgs> { }; callPackage ./packaging/nix/package.nix { }'
#
# Installs
#   $out/lib/systemd/system-generators/nix-confinement-generator   the generator
#   $out/bin/nix-confinement-generator                             a link to it (explain, check)
#   $out/lib/systemd/nix-confinement-generator.conf                the documented defaults
#   $out/share/man/man8/nix-confinement-generator.8.gz
#   $out/share/man/man5/nix-confinement.5.gz
#
# NixOS links $out/lib/systemd/system-generators/* into
# /etc/systemd/system-generators when the package is in `systemd.packages`
# (see module.nix). The crate needs Rust >= 1.95 (edition 2024): a nixpkgs
# whose rustc is that recent (nixos-unstable at the time of writing).
{
  lib,
  rustPlatform,
  scdoc,
  installShellFiles,
}:

let
  repo = ../..;
  cargoToml = lib.importTOML (repo + "/Cargo.toml");
  # Build outputs a checkout may hold are not sources: cargo's target
  # directory and the man pages `make man` writes next to their sources.
  isBuildOutput =
    path:
    let
      rel = lib.removePrefix (toString repo + "/") (toString path);
    in
    rel == "target"
    || lib.hasPrefix "target/" rel
    || rel == "result"
    || lib.hasPrefix "result-" rel
    || rel == "packaging/man/nix-confinement-generator.8"
    || rel == "packaging/man/nix-confinement.5";
in
rustPlatform.buildRustPackage {
  pname = cargoToml.package.name;
  inherit (cargoToml.package) version;

  src = lib.cleanSourceWith {
    src = lib.cleanSource repo;
    filter = path: _type: !(isBuildOutput path);
  };
  cargoLock.lockFile = repo + "/Cargo.lock";

  nativeBuildInputs = [
    scdoc
    installShellFiles
  ];

  # The unit tests only: the integration tests build a Nix store and boot
  # systemd, which the build sandbox has neither of.
  cargoTestFlags = [ "--lib" ];

  # The man pages, from their scdoc sources, as `make` builds them.
  postBuild = ''
    make man SCDOC=scdoc PKG_CONFIG=false
  '';

  postInstall = ''
    mkdir -p $out/lib/systemd/system-generators
    mv $out/bin/nix-confinement-generator $out/lib/systemd/system-generators/
    ln -s ../lib/systemd/system-generators/nix-confinement-generator $out/bin/nix-confinement-generator
    install -Dm644 generator.d/nix-confinement-generator.conf -t $out/lib/systemd/
    installManPage packaging/man/nix-confinement-generator.8 packaging/man/nix-confinement.5
  '';

  meta = {
    description = "systemd generator that confines services to their Nix store closure";
    longDescription = ''
      Add X-ConfinementEnable=yes to a service, in its unit file or any
      drop-in, and after systemctl daemon-reload the service runs in an empty
      root where only the store paths it needs are visible, read-only: what
      the NixOS option systemd.services.<name>.confinement does, done by a
      systemd generator at boot and at every reload. See
      nix-confinement-generator(8) and nix-confinement(5).
    '';
    license = lib.licenses.mit;
    platforms = lib.platforms.linux;
    mainProgram = "nix-confinement-generator";
  };
}
