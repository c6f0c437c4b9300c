#!/usr/bin/env bash
# Installs every build and test dependency of tessera from Debian 12 packages.
# Nothing is downloaded from anywhere else. Safe to run again: apt-get skips what is there.
set -euo pipefail

packages=(
  # Toolchain and build.
  build-essential cmake ninja-build pkg-config git
  clang-14 libclang-rt-14-dev clang-tidy-14 clang-format-14
  # Libraries (see ../shared/STYLE.md "Dependencies").
  libexpected-dev nlohmann-json3-dev libtomlplusplus-dev libcli11-dev
  libseccomp-dev libcap-dev libnftables-dev libnl-3-dev libnl-route-3-dev libnetfilter-conntrack-dev libsystemd-dev
  uuid-dev
  # Tests and benchmarks.
  libgtest-dev libgmock-dev googletest libbenchmark-dev iperf3
  # Runtime tools the tests drive for real.
  nix-bin busybox-static bubblewrap iproute2 nftables debootstrap util-linux procps
  # Runtime: private volume images (mkfs.ext4, e2fsck, resize2fs).
  e2fsprogs
  # Runtime: closures of Nix-built templates as read-only images (mkfs.erofs, mksquashfs).
  erofs-utils squashfs-tools
  # Tests: a real systemd booted in namespaces (qubes as transient scopes) and
  # systemd-analyze for the units.
  systemd
)

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: run as root (apt-get needs it)" >&2
  exit 1
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
