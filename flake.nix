# tessera's flake: the NixOS module, the package, an example host and a VM
# test of it (docs/NIXOS.md). Only parsed on the development machines (no
# nixpkgs there): `nix flake check` on a NixOS machine builds and runs them.
{
  description = "tessera: Qubes-style compartments (qubes) for Linux, NixOS first";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAll = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      nixosModules.default = { pkgs, ... }: {
        imports = [ ./nix/module.nix ];
        services.tessera.package = nixpkgs.lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.tessera;
      };

      packages = forAll (pkgs: rec {
        tessera = pkgs.callPackage ./nix/package.nix { };
        default = tessera;
      });

      nixosConfigurations.example = nixpkgs.lib.nixosSystem {
        system = "x86_64-linux";
        modules = [ self.nixosModules.default ./nix/example-host.nix ];
      };

      checks = forAll (pkgs: {
        vm = pkgs.testers.runNixOSTest {
          name = "tessera";
          nodes.host = { imports = [ self.nixosModules.default ./nix/example-host.nix ]; };
          testScript = ''
            host.wait_for_unit("tesserad.service")
            host.succeed("tessera ls")
            host.succeed("tessera start work")
            host.succeed("tessera run work -- true")
          '';
        };
      });
    };
}
