# services.tessera: qubes declared in configuration.nix (docs/NIXOS.md).
#
# Thin glue: the options below, their values mapped to the system
# description by nix/to-system.nix (builtins only, tested without nixpkgs),
# the description and policy checked by `tessera config check` and
# `tessera policy check` while the system is built (a bad value fails
# `nixos-rebuild` before activation, with the same messages), the daemon's
# units, launchers and the host hardening profile.
#
# Only parsed here (no nixpkgs on the development machines): evaluated
# against nixpkgs' lib when TESSERA_NIXPKGS_LIB names one (tests/nix/run.sh),
# built and run only by the flake's VM check on NixOS.
{ config, lib, pkgs, ... }:
let
  inherit (lib) mkEnableOption mkIf mkOption types literalExpression;
  cfg = config.services.tessera;
  toSystem = import ./to-system.nix;

  labels = [ "red" "orange" "yellow" "green" "gray" "blue" "purple" "black" ];
  # null = the description's default (docs/CONFIG.md), filled by to-system.nix.
  opt = type: description: mkOption { type = types.nullOr type; default = null; inherit description; };

  ruleType = types.submodule {
    options = {
      action = mkOption { type = types.enum [ "accept" "drop" ]; description = "What a matching packet gets."; };
      dsthost = opt types.str "Address, CIDR network or host name (resolved in the netvm).";
      proto = opt (types.enum [ "tcp" "udp" "icmp" ]) "Protocol; null = any.";
      dstports = opt (types.either types.port types.str) "A port or a range \"N-M\" (tcp/udp).";
      icmptype = opt (types.ints.between 0 255) "ICMP type (proto = icmp).";
      specialtarget = opt (types.enum [ "dns" ]) "\"dns\": the qube's DNS servers.";
      expire = opt types.ints.unsigned "Seconds since the epoch after which the rule no longer matches.";
      comment = opt types.str "Why the rule is there.";
    };
  };

  # What templates and qubes share.
  commonOptions = {
    label = opt (types.enum labels) "Qubes colour of the qube's windows and launchers (default red).";
    memory = opt (types.ints.between 32 1048576) "Memory limit in MiB (default 1024).";
    cpus = opt (types.ints.between 1 1024) "CPUs the qube may use (default 1).";
    defaultUser = opt types.str "Who `tessera run` runs as: a user name or UID[:GID] (default \"user\").";
    privateSize = opt (types.either types.ints.positive types.str)
      "Private volume size: MiB or a size like \"20G\" (default 2G).";
    ioWeight = opt (types.ints.between 1 10000) "Share of disk time (default 100).";
    ioMax = opt (types.submodule {
      options = lib.genAttrs [ "readBps" "writeBps" "readIops" "writeIops" ]
        (n: opt types.ints.unsigned "Limit (0 = none).");
    }) "Disk throughput limits.";
    tags = opt (types.listOf types.str) "Qubes tags (policy `@tag:`).";
    features = opt (types.attrsOf types.str) "Qubes features.";
  };

  qubeType = types.submodule {
    options = commonOptions // {
      class = opt (types.enum [ "app" "template" "disposable-template" "disposable" "standalone" ])
        "Qubes class (default app).";
      template = opt types.str "The template (a `templates.<name>` or a template-class qube).";
      netvm = opt types.str "The qube that gives it network; null = offline.";
      providesNetwork = opt types.bool "May be another qube's netvm.";
      uplink = opt types.str "A host interface moved into this netvm for its life, or \"host-nat\".";
      uplinkAddress = opt types.str "The uplink's address \"A.B.C.D/N\"; null = DHCP.";
      uplinkGateway = opt types.str "The uplink's default route.";
      uplinkDns = opt (types.listOf types.str) "Resolvers its clients' DNS goes to.";
      autostart = opt types.bool "Started with the daemon.";
      idleTimeout = opt types.ints.unsigned "Disposables: seconds idle before they stop (0 = never).";
      defaultDispvm = opt types.str "Disposable template for its `@dispvm` calls.";
      firewall = opt (types.listOf ruleType) "Qubes firewall rules, in order (empty: accept all).";
      firewallRuntime = opt (types.enum [ "keep" "reset-on-apply" ])
        "What a switch does with rules added by `tessera firewall` (default keep).";
      backend = opt (types.enum [ "cell" "vm" ]) "Isolation backend (default cell).";
      uuid = opt types.str "Stable UUID (default: derived from the name).";
      apps = mkOption {
        type = types.listOf types.str;
        default = [ ];
        example = [ "firefox" ];
        description = "Commands that get a desktop launcher \"[qube] App\" (through `tessera run`).";
      };
    };
  };

  templateType = types.submodule {
    options = commonOptions // {
      from = mkOption {
        type = types.enum [ "nixos" "packages" "busybox" "debootstrap" "path" ];
        description = "How the template's root is made.";
      };
      config = mkOption {
        type = types.deferredModule;
        default = { };
        description = "from = \"nixos\": the template's NixOS configuration (boot.isContainer is set).";
      };
      packages = mkOption {
        type = types.listOf types.package;
        default = [ ];
        description = "from = \"packages\": the template is a buildEnv of these.";
      };
      path = opt types.str "from = \"path\": an existing root tree (absolute).";
      image = mkOption {
        type = types.enum [ "erofs" "squashfs" "none" ];
        default = "erofs";
        description = "How the daemon mounts a Nix-built template's closure: an image per generation, or (none) the store read-only.";
      };
    };
  };

  # Nix-built templates: their root and its closure (store paths).
  builtTemplates = lib.mapAttrs (name: t:
    let
      root =
        if t.from == "packages" then
          pkgs.buildEnv { name = "tessera-template-${name}"; paths = t.packages; }
        else
          (import "${pkgs.path}/nixos/lib/eval-config.nix" {
            inherit (pkgs.stdenv.hostPlatform) system;
            modules = [ t.config { boot.isContainer = true; } ];
          }).config.system.build.toplevel;
    in { inherit root; closure = "${pkgs.closureInfo { rootPaths = [ root ]; }}/store-paths"; })
    (lib.filterAttrs (_: t: t.from == "nixos" || t.from == "packages") cfg.templates);

  # Options as plain values: unset ones (null) are left out.
  plain = v:
    if builtins.isAttrs v && !(lib.isDerivation v) then
      lib.mapAttrs (_: plain) (lib.filterAttrs (n: x: x != null && n != "_module") v)
    else if builtins.isList v then map plain v
    else v;

  description = toSystem {
    qubes = lib.mapAttrs (_: q: plain (builtins.removeAttrs q [ "apps" ])) cfg.qubes;
    templates = lib.mapAttrs (_: t: plain (builtins.removeAttrs t [ "config" "packages" ])) cfg.templates;
    inherit builtTemplates;
    # Paths only: the files stay on the host and are read at each start.
    inherit (cfg) credentials;
    policyDir = "/etc/tessera/policy.d";
  };
  systemJson = pkgs.writeText "tessera-system.json" (builtins.toJSON description);

  policyDir = pkgs.runCommand "tessera-policy.d" { } (''
    mkdir -p $out
    cp ${cfg.package}/etc/tessera/policy.d/* $out/
  '' + lib.concatStrings (lib.mapAttrsToList (name: v: ''
    cp ${if builtins.isString v then pkgs.writeText name v else v} $out/${name}
  '') cfg.policy.files));

  # The build fails here, before activation, on a bad description or policy.
  checked = pkgs.runCommand "tessera-system-checked" { nativeBuildInputs = [ cfg.package ]; } ''
    tessera config check ${systemJson}
    tessera policy check --policy-dir ${policyDir} --runtime-dir /var/empty --compat-dir /var/empty
    cp ${systemJson} $out
  '';

  labelColours = {
    red = "#cc0000"; orange = "#f57900"; yellow = "#edd400"; green = "#73d216";
    gray = "#555753"; blue = "#3465a4"; purple = "#75507b"; black = "#000000";
  };
  # The icon: the qube's label colour as a frame around the app's initial,
  # so launchers of different qubes differ at a glance (Qubes' coloured
  # window borders).
  launcher = qube: q: app:
    let
      colour = labelColours.${if q.label == null then "red" else q.label};
      initial = lib.toUpper (builtins.substring 0 1 app);
    in pkgs.makeDesktopItem {
      name = "tessera-${qube}-${app}";
      desktopName = "[${qube}] ${lib.toUpper (builtins.substring 0 1 app)}${builtins.substring 1 (-1) app}";
      exec = "${cfg.package}/bin/tessera run ${qube} -- ${app}";
      icon = pkgs.writeText "tessera-${qube}-${app}.svg" ''
        <svg xmlns="http://www.w3.org/2000/svg" width="48" height="48">
          <rect x="3" y="3" width="42" height="42" rx="8" fill="#ffffff" stroke="${colour}" stroke-width="6"/>
          <text x="24" y="33" font-family="sans-serif" font-size="24" font-weight="bold" text-anchor="middle" fill="${colour}">${initial}</text>
        </svg>
      '';
      categories = [ "Utility" ];
      extraConfig = { X-Tessera-Qube = qube; };
    };

  neededModules = [ "veth" "nf_tables" "nft_ct" "nft_nat" "nft_masq" "overlay" "erofs" "squashfs" "loop" "tun" ];
in
{
  options.services.tessera = {
    enable = mkEnableOption "tessera, Qubes-style compartments (qubes) on this host";
    package = mkOption {
      type = types.package;
      default = pkgs.tessera or (pkgs.callPackage ./package.nix { });
      defaultText = literalExpression "pkgs.tessera";
      description = "The tessera package.";
    };
    adminGroup = mkOption {
      type = types.str;
      default = "tessera";
      description = "Group whose members may use the admin socket: root-equivalent, as dom0 is in Qubes.";
    };
    stateDir = mkOption {
      type = types.str;
      default = "/var/lib/tessera";
      description = "Private volumes, templates' generations and the daemon's state.";
    };
    restartOnChange = mkOption {
      type = types.enum [ "never" "if-idle" "always" ];
      default = "never";
      description = ''
        What a switch does with running qubes whose description changed in a way
        that needs a restart (a new template generation, another backend):
        never (Qubes: it takes effect at the qube's next start), if-idle (restart
        those running no command), always.
      '';
    };
    templates = mkOption { type = types.attrsOf templateType; default = { }; description = "Templates by name."; };
    qubes = mkOption { type = types.attrsOf qubeType; default = { }; description = "Qubes by name."; };
    policy.files = mkOption {
      type = types.attrsOf (types.either types.lines types.path);
      default = { };
      example = literalExpression ''{ "30-user.policy" = "qubes.Filecopy * work vault ask default_target=vault"; }'';
      description = "qrexec policy files (Qubes policy v5) put in /etc/tessera/policy.d beside the defaults.";
    };
    credentials = mkOption {
      type = types.attrsOf (types.attrsOf (types.strMatching "/.*"));
      default = { };
      example = { work.git-token = "/run/agenix/work-git-token"; };
      description = ''
        Host files (paths as strings: never copied into the Nix store) whose
        contents the daemon copies into the qube at start, under /run/credentials.
      '';
    };
    hardening = mkOption {
      type = types.nullOr (types.enum [ "standard" "strict" ]);
      default = null;
      description = "The host hardening profile (docs/NIXOS.md \"Hardening\").";
    };
    description = mkOption {
      type = types.attrsOf types.anything;
      internal = true;
      readOnly = true;
      default = description;
      description = "The system description these options make (nix/to-system.nix), as /etc/tessera/system.json holds it.";
    };
  };

  config = mkIf cfg.enable {
    assertions = [
      {
        assertion = config.security.allowUserNamespaces;
        message = "services.tessera needs user namespaces: security.allowUserNamespaces must stay true (the hardened profile turns it off).";
      }
      {
        assertion = !(builtins.elem "systemd.unified_cgroup_hierarchy=0" config.boot.kernelParams);
        message = "services.tessera needs the unified cgroup (v2) hierarchy.";
      }
      {
        assertion = builtins.all (q: builtins.all (a: builtins.match "[A-Za-z0-9._+-]+" a != null) q.apps)
          (builtins.attrValues cfg.qubes);
        message = "services.tessera.qubes.<name>.apps: a command name only ([A-Za-z0-9._+-]).";
      }
    ];

    users.groups.${cfg.adminGroup} = { };
    environment.systemPackages = [ cfg.package ]
      ++ lib.concatLists (lib.mapAttrsToList (qube: q: map (launcher qube q) q.apps) cfg.qubes);
    # The policy directory the build checked, whole: the package's default
    # policy and policy.files.
    environment.etc."tessera/policy.d".source = policyDir;
    environment.etc."tessera/system.json".source = checked;

    # Each running qube is a transient scope tessera-<qube>.scope in
    # tessera.slice, outside the service's cgroup: a stop or restart of the
    # daemon ends the daemon only, and the next daemon adopts the running
    # qubes. KillMode=process keeps systemd off anything else in the unit.
    systemd.slices.tessera = {
      description = "tessera: the qubes";
      sliceConfig = { MemoryAccounting = true; TasksAccounting = true; };
    };
    systemd.services.tesserad = {
      description = "tessera: the qubes daemon";
      wantedBy = [ "multi-user.target" ];
      after = [ "network-pre.target" ];
      requires = [ "tesserad.socket" ];
      environment.TESSERA_STATE_DIR = cfg.stateDir;
      # A changed description is applied by a reload (the daemon's apply,
      # per restartOnChange); a new package restarts the daemon, not the qubes.
      reloadTriggers = [ checked ];
      restartTriggers = [ cfg.package ];
      # Closure images of Nix-built templates (mkfs.erofs, mksquashfs).
      path = [ pkgs.erofs-utils pkgs.squashfs-tools ];
      serviceConfig = {
        Type = "notify";
        ExecStart = "${cfg.package}/bin/tesserad --config /etc/tessera/system.json --admin-group ${cfg.adminGroup} --cgroups systemd";
        ExecReload = "${cfg.package}/bin/tessera apply --yes --restart-on-change ${cfg.restartOnChange} /etc/tessera/system.json";
        KillMode = "process";
        Restart = "on-failure";
        StateDirectory = lib.removePrefix "/var/lib/" cfg.stateDir;
      };
    };
    systemd.sockets.tesserad = {
      wantedBy = [ "sockets.target" ];
      listenStreams = [ "/run/tessera/admin.sock" ];
      socketConfig = { SocketMode = "0660"; SocketGroup = cfg.adminGroup; };
    };

    # `nixos-rebuild switch` shows what the reload will change.
    system.activationScripts.tessera-diff = ''
      if [ -S /run/tessera/admin.sock ]; then
        ${cfg.package}/bin/tessera apply --dry-run --restart-on-change ${cfg.restartOnChange} ${checked} || true
      fi
    '';

    boot.kernelModules = mkIf (config.security.lockKernelModules) neededModules;
    boot.kernel.sysctl = mkIf (cfg.hardening != null) ({
      "kernel.kptr_restrict" = 2;
      "kernel.dmesg_restrict" = 1;
      "kernel.unprivileged_bpf_disabled" = 1;
      "net.core.bpf_jit_harden" = 2;
      "kernel.yama.ptrace_scope" = 1;
      "kernel.kexec_load_disabled" = 1;
      "vm.unprivileged_userfaultfd" = 0;
      "net.ipv4.conf.all.rp_filter" = 1;
      "net.ipv4.conf.default.rp_filter" = 1;
      "net.ipv4.conf.all.accept_redirects" = 0;
      "net.ipv4.conf.default.accept_redirects" = 0;
      "net.ipv4.conf.all.send_redirects" = 0;
      "net.ipv6.conf.all.accept_redirects" = 0;
    } // lib.optionalAttrs (cfg.hardening == "strict") {
      "kernel.yama.ptrace_scope" = 2;
      "kernel.sysrq" = 0;
    });
    security.lockKernelModules = mkIf (cfg.hardening == "strict") true;
    security.protectKernelImage = mkIf (cfg.hardening != null) true;
  };
}
