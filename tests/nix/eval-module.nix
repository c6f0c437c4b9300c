# nix/module.nix through nixpkgs' module system (lib.evalModules), with a
# stub of the NixOS options it sets and reads and of the pkgs functions it
# calls (nothing is built). run.sh step 5, when TESSERA_NIXPKGS_LIB is set:
#   module: the description the module makes from module.cfg.nix;
#   direct: to-system.nix of the same values (they must be equal);
#   badMemory: the module system's message for memory = 0 (via tryEval on
#   a forced value is not possible for type errors; run.sh evaluates it).
{ lib, cfg ? import ./module.cfg.nix }:
let
  drv = name: { type = "derivation"; inherit name; outPath = "/nix/store/00000000000000000000000000000000-${name}"; };
  pkgs = {
    path = "/nonexistent-nixpkgs";
    stdenv.hostPlatform.system = "x86_64-linux";
    writeText = name: _: drv name;
    runCommand = name: _: _: drv name;
    buildEnv = { name, ... }: drv name;
    closureInfo = _: drv "closure-info";
    makeDesktopItem = { name, ... }: drv name;
    callPackage = _: _: drv "tessera";
  };
  inherit (lib) mkOption types;
  any = mkOption { type = types.attrsOf types.anything; default = { }; };
  stub = {
    options = {
      assertions = mkOption { type = types.listOf types.anything; default = [ ]; };
      warnings = mkOption { type = types.listOf types.str; default = [ ]; };
      users = any;
      environment = any;
      systemd = any;
      system = any;
      security = {
        allowUserNamespaces = mkOption { type = types.bool; default = true; };
        lockKernelModules = mkOption { type = types.bool; default = false; };
        protectKernelImage = mkOption { type = types.bool; default = false; };
      };
      boot = {
        kernelParams = mkOption { type = types.listOf types.str; default = [ ]; };
        kernelModules = mkOption { type = types.listOf types.str; default = [ ]; };
        kernel.sysctl = any;
      };
    };
    config._module.args.pkgs = pkgs;
  };
  evaluated = lib.evalModules {
    modules = [ ../../nix/module.nix stub { services.tessera = cfg // { enable = true; }; } ];
  };
in
{
  module = evaluated.config.services.tessera.description;
  direct = import ../../nix/to-system.nix cfg;
  failedAssertions = map (a: a.message) (builtins.filter (a: !a.assertion) evaluated.config.assertions);
}
