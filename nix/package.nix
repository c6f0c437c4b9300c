# The tessera package: this CMake project built by nixpkgs' stdenv.
# callPackage'd by flake.nix and by nix/module.nix when pkgs has no tessera.
# Only parsed on the development machines (no nixpkgs there); built by the
# flake on NixOS.
{ lib
, stdenv
, cmake
, ninja
, pkg-config
, tl-expected
, nlohmann_json
, cli11
, tomlplusplus
, libseccomp
, libcap
, systemd
, nftables
, libnl
, libnetfilter_conntrack
, libuuid
, glibc
}:
stdenv.mkDerivation {
  pname = "tessera";
  version = "0.1.0";
  src = lib.cleanSourceWith {
    src = ../.;
    filter = path: type:
      let base = baseNameOf path;
      in !(type == "directory" && (base == "build" || lib.hasPrefix "build-" base || base == ".git"));
  };
  nativeBuildInputs = [ cmake ninja pkg-config ];
  # The qube tools are linked statically (they run inside qubes whatever
  # their template has): glibc.static.
  buildInputs = [
    tl-expected nlohmann_json cli11 tomlplusplus libseccomp libcap systemd nftables libnl
    libnetfilter_conntrack libuuid glibc.static
  ];
  cmakeFlags = [
    "-DTESSERA_TESTS=OFF"
    "-DTESSERA_BENCH=OFF"
    "-DTESSERA_POLICY_INSTALL_DIR=${placeholder "out"}/etc/tessera/policy.d"
  ];
  meta = {
    description = "Qubes-style security by compartmentalization for Linux, NixOS first";
    platforms = lib.platforms.linux;
    mainProgram = "tessera";
  };
}
