# The example host of flake.nix (nixosConfigurations.example and the VM
# check): the configuration.nix of docs/NIXOS.md, minus what a real machine
# needs (boot loader, file systems), which the VM test provides.
{ pkgs, ... }:
{
  boot.loader.grub.device = "nodev";
  fileSystems."/" = { device = "/dev/disk/by-label/nixos"; fsType = "ext4"; };
  system.stateVersion = "24.11";

  services.tessera = {
    enable = true;
    adminGroup = "wheel";
    templates.base = { from = "packages"; packages = with pkgs; [ busybox ]; label = "black"; };
    templates.tiny = { from = "busybox"; };
    qubes = {
      sys-net = { template = "tiny"; providesNetwork = true; uplink = "host-nat"; memory = 256; label = "red"; };
      sys-firewall = { template = "tiny"; providesNetwork = true; netvm = "sys-net"; memory = 256; label = "green"; };
      work = {
        template = "base";
        netvm = "sys-firewall";
        label = "blue";
        memory = 2048;
        apps = [ "sh" ];
        firewall = [
          { action = "accept"; specialtarget = "dns"; }
          { action = "accept"; proto = "tcp"; dstports = "443"; }
        ];
      };
      vault = { template = "tiny"; label = "black"; };
      dvm = { class = "disposable-template"; template = "tiny"; idleTimeout = 300; };
    };
    policy.files."30-user.policy" = ''
      qubes.Filecopy * work vault ask default_target=vault
    '';
    hardening = "standard";
  };
}
