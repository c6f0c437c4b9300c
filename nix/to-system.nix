# The one mapping from the values of `services.tessera` (nix/module.nix) to
# tessera's system description (docs/CONFIG.md), with builtins only, so that
# it is tested without nixpkgs (docs/NIXOS.md "Tests"):
#
#   import ./nix/to-system.nix { templates = { ... }; qubes = { ... }; policy = { ... }; }
#
# Options are given as the module system produces them (camelCase; an unset
# `nullOr` option is null) or as plain attrsets in which unset options are
# simply absent: the defaults are filled in here. The module's own options
# (enable, package, adminGroup, ...) may be passed too and are left out.
# Every error names the option (`services.tessera.qubes.work.memory: ...`)
# and stops the evaluation, so a bad value fails `nixos-rebuild` before
# anything is activated; the description it returns is checked again by
# `tessera config check` when the system is built.
#
# Templates built by Nix (`from = "nixos"` or `"packages"`) are given to
# this function already built, as `builtTemplates.<name> = { root; closure; }`
# (store paths: the module builds them); the description names them with
# `source = "nix"`.
{ templates ? { }
, qubes ? { }
, policy ? { }
, networkRange ? null
, defaultDispvm ? null
, policyDir ? "/etc/tessera/policy.d"
, rpc ? { }
, builtTemplates ? { }
, credentials ? { }
, ...
}@args:
let
  at = path: "services.tessera.${path}";
  fail = path: message: throw "${at path}: ${message}";

  # Module-only options: accepted, not part of the description.
  moduleOnly = [
    "enable" "package" "adminGroup" "stateDir" "restartOnChange"
    "hardening" "desktopEntries" "storeAccess" "_module"
  ];
  topKeys = [
    "templates" "qubes" "policy" "networkRange" "defaultDispvm" "policyDir" "rpc"
    "builtTemplates" "credentials"
  ] ++ moduleOnly;

  elem = x: xs: builtins.elem x xs;
  isSet = v: v != null;
  describe = v:
    if builtins.isString v then "\"${v}\""
    else if builtins.isBool v then (if v then "true" else "false")
    else if builtins.isInt v then toString v
    else if builtins.isNull v then "null"
    else "a ${builtins.typeOf v}";

  # Unknown keys: an error naming the first one and what is known.
  onlyKeys = path: known: attrs:
    let
      unknown = builtins.filter (k: !(elem k known)) (builtins.attrNames attrs);
      shown = builtins.filter (k: builtins.substring 0 1 k != "_") known;
    in if unknown == [ ] then attrs
       else fail "${if path == "" then "" else "${path}."}${builtins.head unknown}"
         "unknown option (known here: ${builtins.concatStringsSep ", " shown})";

  # Typed reads of one option: its value, or `default` when absent or null.
  get = path: attrs: name: default: check: what:
    let v = attrs.${name} or null;
    in if !(isSet v) then default
       else if check v then v
       else fail "${path}.${name}" "expected ${what}, got ${describe v}";
  str = path: attrs: name: default: get path attrs name default builtins.isString "a string";
  bool = path: attrs: name: default: get path attrs name default builtins.isBool "a boolean";
  int = path: attrs: name: default: lo: hi:
    get path attrs name default (v: builtins.isInt v && v >= lo && v <= hi)
      "an integer in ${toString lo}..${toString hi}";
  oneOf = path: attrs: name: default: choices:
    get path attrs name default (v: builtins.isString v && elem v choices)
      ("one of " + builtins.concatStringsSep ", " (map (c: "\"${c}\"") choices));
  strList = path: attrs: name:
    get path attrs name [ ] (v: builtins.isList v && builtins.all builtins.isString v)
      "a list of strings";
  strAttrs = path: attrs: name:
    get path attrs name { } (v: builtins.isAttrs v && builtins.all builtins.isString (builtins.attrValues v))
      "an attribute set of strings";

  labels = [ "red" "orange" "yellow" "green" "gray" "blue" "purple" "black" ];
  classes = [ "app" "template" "disposable-template" "disposable" "standalone" ];

  # Keeps only the attributes whose value is set.
  compact = attrs: builtins.removeAttrs attrs
    (builtins.filter (k: attrs.${k} == null) (builtins.attrNames attrs));

  # --- firewall rules (Qubes' qvm-firewall format, in order) ----------------
  ruleKeys = [ "action" "dsthost" "proto" "dstports" "icmptype" "specialtarget" "expire" "comment" ];
  rule = path: r:
    let
      r' = if builtins.isAttrs r then onlyKeys path ruleKeys r
           else fail path "expected a rule (an attribute set), got ${describe r}";
      ports = r'.dstports or null;
    in compact {
      action = oneOf path r' "action" (fail "${path}.action" "required: \"accept\" or \"drop\"")
        [ "accept" "drop" ];
      dsthost = str path r' "dsthost" null;
      proto = oneOf path r' "proto" null [ "tcp" "udp" "icmp" ];
      dstports =
        if !(isSet ports) then null
        else if builtins.isInt ports then toString ports
        else if builtins.isString ports then ports
        else fail "${path}.dstports" "expected \"N\", \"N-M\" or an integer, got ${describe ports}";
      icmptype = int path r' "icmptype" null 0 255;
      specialtarget = oneOf path r' "specialtarget" null [ "dns" ];
      expire = int path r' "expire" null 0 253402300799;
      comment = str path r' "comment" null;
    };
  firewall = path: q:
    let rules = q.firewall or null;
    in if !(isSet rules) then [ ]
       else if !builtins.isList rules then fail "${path}.firewall" "expected a list of rules, got ${describe rules}"
       else builtins.genList (i: rule "${path}.firewall.${toString i}" (builtins.elemAt rules i))
         (builtins.length rules);

  # --- qubes ----------------------------------------------------------------
  # What every qube may set, and what its description key is.
  qubeKeys = [
    "class" "template" "netvm" "providesNetwork" "uplink" "uplinkAddress" "uplinkGateway"
    "uplinkDns" "label" "defaultUser" "memory" "privateSize" "cpus" "ioWeight" "ioMax" "tags"
    "autostart" "idleTimeout" "defaultDispvm" "firewall" "firewallRuntime" "features"
    "backend" "uuid"
  ];
  # Host-side only (launchers, secrets): not in the description.
  qubeHostKeys = [ "apps" "credentials" "_module" ];

  ioMax = path: q:
    let
      m = q.ioMax or null;
      m' = if !(isSet m) then { }
           else if builtins.isAttrs m then onlyKeys "${path}.ioMax" [ "readBps" "writeBps" "readIops" "writeIops" ] m
           else fail "${path}.ioMax" "expected an attribute set, got ${describe m}";
      n = name: int "${path}.ioMax" m' name 0 0 9223372036854775807;
    in { read_bps = n "readBps"; write_bps = n "writeBps"; read_iops = n "readIops"; write_iops = n "writeIops"; };

  privateSize = path: q:
    let s = q.privateSize or null;
    in if !(isSet s) then 2048
       else if builtins.isInt s || builtins.isString s then s
       else fail "${path}.privateSize" "expected MiB (an integer) or a size like \"20G\", got ${describe s}";

  # The description of one qube (`extra` for a template's source).
  qube = path: name: q: extra:
    let
      q' = onlyKeys path (qubeKeys ++ qubeHostKeys) q;
      class = oneOf path q' "class" "app" classes;
      disposable = class == "disposable" || class == "disposable-template";
      netvm = str path q' "netvm" "none";
      uplink = str path q' "uplink" null;
    in {
      inherit class;
      netvm = netvm;
      provides_network = bool path q' "providesNetwork" false;
      label = oneOf path q' "label" "red" labels;
      default_user = str path q' "defaultUser" "user";
      memory = int path q' "memory" 1024 32 1048576;
      private_size = privateSize path q';
      cpus = int path q' "cpus" 1 1 1024;
      io_weight = int path q' "ioWeight" 100 1 10000;
      io_max = ioMax path q';
      tags = strList path q' "tags";
      autostart = bool path q' "autostart" false;
      firewall = firewall path q';
      firewall_runtime = oneOf path q' "firewallRuntime" "keep" [ "keep" "reset-on-apply" ];
      features = strAttrs path q' "features";
      backend = oneOf path q' "backend" "cell" [ "cell" "vm" ];
    }
    // (let t = str path q' "template" null; in if t == null then { } else { template = t; })
    // (if disposable then { idle_timeout = int path q' "idleTimeout" 0 0 604800; }
        else if isSet (q'.idleTimeout or null)
        then fail "${path}.idleTimeout" "only disposable and disposable-template qubes stop when idle"
        else { })
    // (if uplink == null then { }
        else { inherit uplink; uplink_dns = strList path q' "uplinkDns"; }
          // (let a = str path q' "uplinkAddress" null; in if a == null then { } else { uplink_address = a; })
          // (let g = str path q' "uplinkGateway" null; in if g == null then { } else { uplink_gateway = g; }))
    // (let u = str path q' "uuid" null; in if u == null then { } else { uuid = u; })
    // (let d = str path q' "defaultDispvm" null; in if d == null then { } else { default_dispvm = d; })
    // extra;

  # --- templates --------------------------------------------------------------
  templateKeys = [ "from" "config" "packages" "path" "image" "label" "memory" "cpus"
                   "defaultUser" "features" "tags" "privateSize" "ioWeight" "ioMax" "_module" ];
  froms = [ "nixos" "packages" "busybox" "debootstrap" "path" ];
  template = name: t:
    let
      path = "templates.${name}";
      t' = if builtins.isAttrs t then onlyKeys path templateKeys t
           else fail path "expected an attribute set, got ${describe t}";
      from = oneOf path t' "from" (fail "${path}.from" "required: one of ${builtins.concatStringsSep ", " froms}") froms;
      image = oneOf path t' "image" "erofs" [ "erofs" "squashfs" "none" ];
      dir = str path t' "path" null;
      built = builtTemplates.${name} or null;
      source =
        if from == "busybox" || from == "debootstrap" then { source = from; }
        else if from == "path" then
          (if dir == null then fail "${path}.path" "required with from = \"path\""
           else if builtins.substring 0 1 dir != "/" then fail "${path}.path" "must be an absolute path, got \"${dir}\""
           else { source = "dir:${dir}"; })
        else if built == null then
          fail path "from = \"${from}\" needs the template built first (the module does it: builtTemplates.${name})"
        else { source = "nix"; nix = { root = built.root; closure = built.closure; inherit image; }; };
      qubePart = builtins.removeAttrs t' [ "from" "config" "packages" "path" "image" ];
    in qube path name (qubePart // { class = "template"; }) source;

  # --- the description --------------------------------------------------------
  checked = onlyKeys "" topKeys args;
  clash = builtins.filter (n: qubes ? ${n}) (builtins.attrNames templates);
  qubeSet =
    if !(builtins.isAttrs qubes) then fail "qubes" "expected an attribute set, got ${describe qubes}"
    else if clash != [ ] then fail "templates.${builtins.head clash}" "a qube has this name too"
    else builtins.mapAttrs (name: q:
      if builtins.isAttrs q then qube "qubes.${name}" name q { }
      else fail "qubes.${name}" "expected an attribute set, got ${describe q}") qubes
    // builtins.mapAttrs template templates;
  rpcKeys = onlyKeys "rpc" [ "maxCallsPerQube" "askTimeout" ] rpc;

  # --- credentials: host files copied into a qube at each start -------------
  # credentials.<qube>.<name> = "/host/path" (a string: a Nix path would be
  # copied into the world-readable store) -> the qube's `credentials`.
  credentialsOf = name: c:
    let path = "credentials.${name}";
    in if !(qubes ? ${name}) then
         fail path "no qube named \"${name}\" in services.tessera.qubes (credentials go to qubes)"
       else if !(builtins.isAttrs c) then
         fail path "expected an attribute set of name = \"/host/path\", got ${describe c}"
       else builtins.mapAttrs (n: p:
         if builtins.match "[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}" n == null then
           fail "${path}.${n}" "a credential name is a file name: letters, digits, '_', '.' and '-', at most 64"
         else if !(builtins.isString p) then
           fail "${path}.${n}" "expected the absolute path of a host file, as a string (a Nix path would be copied into the store), got ${describe p}"
         else if builtins.substring 0 1 p != "/" then
           fail "${path}.${n}" "must be an absolute path, got \"${p}\""
         else p) c;
  credentialSet =
    if !(builtins.isAttrs credentials) then fail "credentials" "expected an attribute set, got ${describe credentials}"
    else builtins.mapAttrs credentialsOf credentials;
  withCredentials = builtins.mapAttrs (name: d:
    if (credentialSet.${name} or { }) == { } then d
    else d // { credentials = credentialSet.${name}; }) qubeSet;
in
builtins.seq checked (builtins.deepSeq credentialSet {
  policy_dir = if builtins.isString policyDir then policyDir else fail "policyDir" "expected a string";
  qubes = withCredentials;
  rpc = {
    max_calls_per_qube = int "rpc" rpcKeys "maxCallsPerQube" 64 1 4096;
    ask_timeout = int "rpc" rpcKeys "askTimeout" 60 1 3600;
  };
}
// (if networkRange == null then { } else { network_range = networkRange; })
// (if defaultDispvm == null then { } else { default_dispvm = defaultDispvm; }))
