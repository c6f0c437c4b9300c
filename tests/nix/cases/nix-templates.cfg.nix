# Templates built by Nix reach the description as store paths (the module
# builds them; here they are given as the module would).
{
  templates.env = { from = "packages"; image = "squashfs"; };
  templates.os = { from = "nixos"; };
  builtTemplates = {
    env = { root = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-tessera-template-env"; closure = "/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-closure-info/store-paths"; };
    os = { root = "/nix/store/cccccccccccccccccccccccccccccccc-nixos-system-os"; closure = "/nix/store/dddddddddddddddddddddddddddddddd-closure-info/store-paths"; };
  };
  qubes.work = { template = "env"; };
}
