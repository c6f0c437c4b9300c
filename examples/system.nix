# The tessera example system in Nix: the same model as examples/system.toml (a
# test proves it). Evaluated by `nix-instantiate --eval --strict --json`.
let
  lib = import ./lib.nix;
  inherit (lib) appQube dnsRule;

  # Both network qubes look alike except for their place in the chain.
  netQube = { label, netvm ? "none" }: appQube {
    inherit label netvm;
    provides_network = true;
    memory = 512;
    autostart = true;
    tags = [ "network" ];
  };
in
{
  policy_dir = "/etc/tessera/policy.d";
  default_dispvm = "default-dvm";

  qubes = {
    base = {
      class = "template";
      source = "busybox";
      label = "black";
      memory = 1024;
    };

    sys-net = netQube { label = "red"; };
    sys-firewall = netQube { label = "green"; netvm = "sys-net"; };

    work = appQube {
      netvm = "sys-firewall";
      label = "blue";
      memory = 2048;
      private_size = "10G";
      cpus = 2;
      tags = [ "work" ];
      features = { gui = "1"; };
      firewall = [
        dnsRule
        { action = "accept"; dsthost = "10.0.0.0/8"; proto = "tcp"; dstports = "443";
          comment = "company intranet, HTTPS only"; }
        { action = "accept"; proto = "icmp"; icmptype = 8; }
        { action = "drop"; }
      ];
    };

    personal = appQube {
      netvm = "sys-firewall";
      label = "yellow";
      memory = 2048;
      tags = [ "personal" ];
    };

    vault = appQube {
      netvm = "none";
      label = "black";
      memory = 512;
      default_dispvm = "none";
    };

    default-dvm = {
      class = "disposable-template";
      template = "base";
      netvm = "sys-firewall";
      label = "red";
      idle_timeout = 600;
    };
  };
}
