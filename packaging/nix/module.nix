# NixOS module: services.nix-confinement-generator.
#
#   imports = [ ./packaging/nix/module.nix ];   # or the flake's nixosModules.default
#   services.nix-confinement-generator.enable = true;
#
#   # Confine a service to its Nix store closure:
#   systemd.services.foo.serviceConfig."X-ConfinementEnable" = true;
#
# The generator then runs at boot and at every `systemctl daemon-reload`, and
# the annotated services run in an empty root where only their closure is
# visible, read-only, from their next start. The keys are documented in
# nix-confinement(5):
#
#   systemd.services.foo.serviceConfig = {
#     ExecStart = "${pkgs.foo}/bin/foo";
#     "X-ConfinementEnable" = true;                 # confinement.enable
#     "X-ConfinementMode" = "chroot-only";          # confinement.mode
#     "X-ConfinementFullUnit" = true;               # confinement.fullUnit
#     "X-ConfinementPackages" = [ pkgs.curl ];      # confinement.packages
#     "X-ConfinementBinSh" = "${pkgs.dash}/bin/dash"; # confinement.binSh ("" for none)
#   };
#
# Unlike the option `systemd.services.<name>.confinement`, this needs no
# rebuild of the unit to change, works for units NixOS does not generate
# (`systemctl edit`, /etc/systemd/system), and binds the closure in linear
# time. Do not combine the two on one service: a unit that sets
# RootDirectory= itself is blocked by the generator.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  cfg = config.services.nix-confinement-generator;

  # systemd's boolean spellings, as the generator reads them.
  isOn =
    value:
    lib.elem (lib.toLower (toString value)) [
      "1"
      "yes"
      "y"
      "true"
      "t"
      "on"
    ];
  annotated = lib.attrNames (
    lib.filterAttrs (
      _name: service: isOn (service.serviceConfig.X-ConfinementEnable or false)
    ) config.systemd.services
  );

  configFile = ''
    # Written by the NixOS module services.nix-confinement-generator.
    # See nix-confinement-generator(8).

    [Nix]
    StoreDir=${cfg.storeDir}
    StateDir=${cfg.stateDir}

    [Units]
    SearchPath=${lib.concatStringsSep " " cfg.unitSearchPath}

    [Defaults]
    Mode=${cfg.mode}
    BinSh=${if cfg.binSh == null then "" else cfg.binSh}
  '';
in
{
  options.services.nix-confinement-generator = {
    enable = lib.mkOption {
      type = lib.types.bool;
      default = false;
      example = true;
      description = ''
        Whether to install nix-confinement-generator, the systemd generator
        that confines services annotated with `X-ConfinementEnable=yes` to
        their Nix store closure. Annotate a service from Nix with

        ```nix
        systemd.services.<name>.serviceConfig."X-ConfinementEnable" = true;
        ```

        and, optionally, `"X-ConfinementMode" = "chroot-only";`,
        `"X-ConfinementFullUnit" = true;`,
        `"X-ConfinementPackages" = [ pkgs.curl ];` or
        `"X-ConfinementBinSh" = "''${pkgs.dash}/bin/dash";` (see
        nix-confinement(5)). Units written by hand or with `systemctl edit`
        can carry the same keys. Check with `nix-confinement-generator check`.

        Without the generator, systemd ignores these keys and the service
        runs unconfined: while this option is false, a system whose
        `systemd.services` carry `X-ConfinementEnable` does not build.
      '';
    };

    package = lib.mkOption {
      type = lib.types.package;
      default = pkgs.nix-confinement-generator or (pkgs.callPackage ./package.nix { });
      defaultText = lib.literalExpression "pkgs.callPackage ./package.nix { }";
      description = "The nix-confinement-generator package.";
    };

    mode = lib.mkOption {
      type = lib.types.enum [
        "full-apivfs"
        "chroot-only"
      ];
      default = "full-apivfs";
      description = ''
        The mode of services that do not set `X-ConfinementMode`
        (`[Defaults] Mode=`).
      '';
    };

    binSh = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = "/bin/sh";
      example = lib.literalExpression ''"''${pkgs.dash}/bin/dash"'';
      description = ''
        The program bound at /bin/sh inside the confinement of services that
        do not set `X-ConfinementBinSh`, used when it resolves into the store
        (`[Defaults] BinSh=`). `null`: none.
      '';
    };

    unitSearchPath = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [
        "/etc/systemd/system.control"
        "/run/systemd/system.control"
        "/run/systemd/transient"
        "/etc/systemd/system"
        "/etc/systemd-mutable/system"
        "/nix/var/nix/profiles/default/lib/systemd/system"
        "/etc/systemd/system.attached"
        "/run/systemd/system"
        "/run/systemd/system.attached"
        "${config.systemd.package}/lib/systemd/system"
      ];
      defaultText = lib.literalExpression ''
        [
          "/etc/systemd/system.control" "/run/systemd/system.control" "/run/systemd/transient"
          "/etc/systemd/system" "/etc/systemd-mutable/system"
          "/nix/var/nix/profiles/default/lib/systemd/system"
          "/etc/systemd/system.attached" "/run/systemd/system" "/run/systemd/system.attached"
          "''${config.systemd.package}/lib/systemd/system"
        ]
      '';
      description = ''
        The unit search path the generator reads, highest priority first
        (`[Units] SearchPath=`): NixOS's systemd does not search /usr/lib and
        /usr/local/lib, and adds its own directories (older releases also
        /etc/systemd-mutable/system). It must match what
        `systemd-analyze unit-paths` prints, minus the generator directories.
      '';
    };

    storeDir = lib.mkOption {
      type = lib.types.str;
      default = builtins.storeDir;
      description = "The Nix store directory (`[Nix] StoreDir=`).";
    };

    stateDir = lib.mkOption {
      type = lib.types.str;
      default = "/nix/var/nix";
      description = "Nix's state directory, which holds the database (`[Nix] StateDir=`).";
    };
  };

  config = lib.mkMerge [
    {
      assertions = [
        {
          assertion = cfg.enable || annotated == [ ];
          message = ''
            services.nix-confinement-generator.enable is false, but these services
            set X-ConfinementEnable: ${lib.concatMapStringsSep ", " (name: "${name}.service") annotated}.
            Without the generator systemd ignores the key and they would run unconfined.
          '';
        }
      ];
    }

    (lib.mkIf cfg.enable {
      # NixOS links the package's lib/systemd/system-generators/* into
      # /etc/systemd/system-generators. (Listing it in systemd.generators as
      # well would link the same name twice and fail the build.)
      systemd.packages = [ cfg.package ];
      # `nix-confinement-generator explain|check` and the man pages.
      environment.systemPackages = [ cfg.package ];
      environment.etc."systemd/nix-confinement-generator.conf".text = configFile;
    })
  ];
}
