# Every option to-system.nix maps, set to a value other than its default,
# as the module system would pass them (unset options are null).
{
  enable = true;
  adminGroup = "wheel";
  restartOnChange = "if-idle";
  credentials.work = { git-token = "/run/agenix/work-git-token"; "ssh.key" = "/etc/secrets/work-ssh"; };
  credentials.sys-net = { };
  networkRange = "10.200.0.0/16";
  defaultDispvm = "dvm";
  rpc = { maxCallsPerQube = 8; askTimeout = 30; };
  templates.base = {
    from = "busybox";
    label = "black";
    memory = 512;
    cpus = 2;
    defaultUser = "1000:1000";
    features = { os = "busybox"; };
    tags = [ "t" ];
    privateSize = "4G";
    ioWeight = 50;
    ioMax = null;
  };
  templates.deb = { from = "debootstrap"; };
  templates.tree = { from = "path"; path = "/srv/roots/tree"; };
  qubes = {
    sys-net = {
      template = "base";
      providesNetwork = true;
      uplink = "eth1";
      uplinkAddress = "192.168.1.50/24";
      uplinkGateway = "192.168.1.1";
      uplinkDns = [ "192.168.1.1" ];
      autostart = true;
      label = "red";
      memory = 256;
      apps = [ ];
      credentials = null;
    };
    work = {
      class = "app";
      template = "base";
      netvm = "sys-net";
      label = "blue";
      defaultUser = "alice";
      memory = 4096;
      privateSize = 20480;
      cpus = 4;
      ioWeight = 500;
      ioMax = { readBps = 1048576; writeBps = null; readIops = 100; writeIops = 0; };
      tags = [ "work" "office" ];
      defaultDispvm = "dvm";
      firewall = [
        { action = "accept"; specialtarget = "dns"; }
        { action = "accept"; dsthost = "git.example.com"; proto = "tcp"; dstports = 443; comment = "git"; }
        { action = "accept"; dsthost = "10.0.0.0/8"; proto = "udp"; dstports = "1000-2000"; expire = 1900000000; }
        { action = "accept"; proto = "icmp"; icmptype = 8; }
        { action = "drop"; }
      ];
      firewallRuntime = "reset-on-apply";
      features = { gui = "1"; };
      backend = "cell";
      uuid = "1361ba56-f2b5-5664-b47a-960c7df9fefd";
      apps = [ "firefox" ];
    };
    dvm = { class = "disposable-template"; template = "base"; netvm = "sys-net"; idleTimeout = 300; };
    solo = { class = "standalone"; template = "base"; };
  };
  policy.files."30-user.policy" = "qubes.Filecopy * work solo ask";
}
