# Just enough of nixpkgs' `lib`, `pkgs` and the NixOS module system to
# evaluate packaging/nix/*.nix and flake.nix without nixpkgs (there is none
# on the test machines). Each function does what its nixpkgs namesake does
# for the arguments these files give it; `buildRustPackage` returns its
# arguments, so that tests can look at them.
{ repo }:

let
  inherit (builtins)
    attrNames
    concatStringsSep
    filter
    foldl'
    functionArgs
    intersectAttrs
    isAttrs
    isFunction
    listToAttrs
    stringLength
    substring
    ;

  hasPrefix = prefix: s: substring 0 (stringLength prefix) s == prefix;
  hasSuffix =
    suffix: s:
    let
      ls = stringLength s;
      lx = stringLength suffix;
    in
    ls >= lx && substring (ls - lx) lx s == suffix;
  removePrefix =
    prefix: s: if hasPrefix prefix s then substring (stringLength prefix) (stringLength s) s else s;
  recursiveUpdate =
    a: b:
    a
    // listToAttrs (
      map (n: {
        name = n;
        value = if isAttrs (a.${n} or null) && isAttrs b.${n} then recursiveUpdate a.${n} b.${n} else b.${n};
      }) (attrNames b)
    );
  genAttrs =
    names: f:
    listToAttrs (
      map (n: {
        name = n;
        value = f n;
      }) names
    );

  lib = {
    inherit
      hasPrefix
      hasSuffix
      removePrefix
      recursiveUpdate
      genAttrs
      concatStringsSep
      ;
    importTOML = path: builtins.fromTOML (builtins.readFile path);
    cleanSource = src: src;
    cleanSourceWith =
      {
        src,
        filter ? (_: _: true),
        ...
      }:
      {
        _type = "cleanSourceWith";
        inherit src filter;
      };
    licenses.mit = "mit";
    platforms.linux = [
      "x86_64-linux"
      "aarch64-linux"
    ];
    elem = builtins.elem;
    toLower =
      s:
      builtins.replaceStrings
        (builtins.genList (i: builtins.substring i 1 "ABCDEFGHIJKLMNOPQRSTUVWXYZ") 26)
        (builtins.genList (i: builtins.substring i 1 "abcdefghijklmnopqrstuvwxyz") 26)
        s;
    attrNames = builtins.attrNames;
    filterAttrs = pred: set: listToAttrs (map (n: { name = n; value = set.${n}; }) (filter (n: pred n set.${n}) (attrNames set)));
    concatMapStringsSep = sep: f: list: concatStringsSep sep (map f list);
    # Options: the declaration itself, so that tests read type and default.
    mkOption = decl: decl // { _type = "option"; };
    mkEnableOption = name: {
      _type = "option";
      type = "bool";
      default = false;
      description = "Whether to enable ${name}.";
    };
    literalExpression = text: {
      _type = "literalExpression";
      inherit text;
    };
    types = {
      bool = "bool";
      str = "str";
      package = "package";
      path = "path";
      enum = values: { enum = values; };
      listOf = t: { listOf = t; };
      nullOr = t: { nullOr = t; };
    };
    mkIf = condition: content: {
      _type = "if";
      inherit condition content;
    };
    mkMerge = contents: {
      _type = "merge";
      inherit contents;
    };
  };

  rustPlatform.buildRustPackage = args: args // { _type = "buildRustPackage"; };

  # callPackage: the function's own arguments from the package set.
  callPackageWith =
    autoArgs: fn: args:
    let
      f = if isFunction fn then fn else import fn;
    in
    f (intersectAttrs (functionArgs f) autoArgs // args);

  pkgsFor =
    system:
    let
      self = {
        inherit lib rustPlatform;
        scdoc = "scdoc";
        installShellFiles = "installShellFiles";
        stdenv.hostPlatform.system = system;
        callPackage = callPackageWith self;
      };
    in
    self;

  # The module system, reduced to what module.nix uses: option defaults
  # overridden by `settings`, mkIf and mkMerge resolved.
  resolve =
    value:
    if (value._type or null) == "if" then
      (if value.condition then resolve value.content else { })
    else if (value._type or null) == "merge" then
      foldl' (acc: v: recursiveUpdate acc (resolve v)) { } value.contents
    else
      value;

  evalModule =
    {
      settings ? { },
      services ? { },
      systemdPackage ? "/nix/store/00000000000000000000000000000000-systemd-257.8",
    }:
    let
      module = import (repo + "/packaging/nix/module.nix") {
        inherit config lib;
        pkgs = pkgsFor "x86_64-linux";
      };
      declared = module.options.services.nix-confinement-generator;
      config = {
        services.nix-confinement-generator = builtins.mapAttrs (_: o: o.default) declared // settings;
        systemd.package = systemdPackage;
        systemd.services = services;
      };
    in
    {
      options = declared;
      config = resolve module.config;
    };
in
{
  inherit
    lib
    pkgsFor
    evalModule
    genAttrs
    ;
  nixpkgs = {
    lib = lib;
    legacyPackages = genAttrs [ "x86_64-linux" "aarch64-linux" ] pkgsFor;
  };
}
