# services.tessera as a user writes it, for the module-system check
# (run.sh step 5): the module's description must equal to-system.nix's.
{
  templates.base = { from = "busybox"; label = "black"; };
  credentials.work.git-token = "/run/agenix/work-git-token";
  qubes = {
    sys-net = { template = "base"; providesNetwork = true; uplink = "host-nat"; memory = 256; };
    work = {
      template = "base";
      netvm = "sys-net";
      label = "blue";
      memory = 2048;
      apps = [ "firefox" ];
      firewall = [
        { action = "accept"; specialtarget = "dns"; }
        { action = "accept"; proto = "tcp"; dstports = 443; }
      ];
    };
    dvm = { class = "disposable-template"; template = "base"; idleTimeout = 300; };
  };
}
