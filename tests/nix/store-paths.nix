# Store paths for the tests and the bench of Nix-built templates
# (tests/integration/daemon/nix_template_test.cc, scripts/bench-nix-template.sh),
# made by the host's own Nix with shell builders (no nixpkgs): a static
# busybox, an "env" over it (a buildEnv's shape: bin/ of links) carrying a
# version marker, and a path no closure holds. Needs `sandbox = false`
# (the builders use the host's /bin).
{ version }:
let
  mk = name: script: deps: builtins.derivation {
    inherit name deps;
    system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [ "-c" script ];
  };
  busybox = mk "tessera-test-busybox" ''
    /bin/mkdir -p $out/bin
    /bin/cp /bin/busybox $out/bin/busybox
    for a in sh ls cat readlink sleep true stat; do /bin/ln -s busybox $out/bin/$a; done
  '' [ ];
  env = mk "tessera-test-env-${version}" ''
    /bin/mkdir -p $out/bin $out/share
    for a in ${busybox}/bin/*; do /bin/ln -s $a $out/bin/; done
    echo ${version} > $out/share/version
  '' [ busybox ];
  other = mk "tessera-test-outside" "/bin/mkdir $out" [ ];
in { inherit env other; }
