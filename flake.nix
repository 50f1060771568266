# nix-confinement-generator: package, overlay and NixOS module.
# The expressions live in packaging/nix/; this file only wires them up, at the
# top of the repository so that `nix build`, `nix run` and
# `inputs.nix-confinement-generator.url = "github:OWNER/nix-confinement-generator"`
# work without a `?dir=`.
#
#   nix build                                   # ./result/lib/systemd/system-generators/...
#   nix run . -- check                          # validate this machine's annotated units
#
#   # in a NixOS configuration flake:
#   modules = [
#     nix-confinement-generator.nixosModules.default
#     { services.nix-confinement-generator.enable = true;
#       systemd.services.foo.serviceConfig."X-ConfinementEnable" = true; }
#   ];
{
  description = "systemd generator that confines services to their Nix store closure";

  # rustc >= 1.95 (edition 2024, rust-version in Cargo.toml).
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      packages = forAllSystems (pkgs: {
        nix-confinement-generator = pkgs.callPackage ./packaging/nix/package.nix { };
        default = self.packages.${pkgs.stdenv.hostPlatform.system}.nix-confinement-generator;
      });

      overlays.default = final: _prev: {
        nix-confinement-generator = final.callPackage ./packaging/nix/package.nix { };
      };

      # The module's default package is pkgs.nix-confinement-generator when
      # the overlay is applied, else the package built from this source.
      nixosModules.default = ./packaging/nix/module.nix;
      nixosModules.nix-confinement-generator = ./packaging/nix/module.nix;

      checks = forAllSystems (pkgs: {
        package = self.packages.${pkgs.stdenv.hostPlatform.system}.nix-confinement-generator;
      });
    };
}
