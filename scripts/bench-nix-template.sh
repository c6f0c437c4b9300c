#!/usr/bin/env bash
# What a template Nix built costs a disposable's start (docs/NIXOS.md
# "Templates from Nix"), end to end through the real CLI and a private
# daemon: `tessera run --dispvm=<dvm> true` with the disposable template on
#   - a busybox template (the baseline: a plain directory tree),
#   - a Nix template whose closure is an erofs image (mounted per cell),
#   - the same closure as a squashfs image (a loop device per cell),
# interleaved in the same run, median over N each, with each Nix figure's
# ratio to the baseline. The store paths come from tests/nix/store-paths.nix
# (Debian's nix-build, no nixpkgs); the state dir is on disk, the runtime dir
# on tmpfs, as on a real host.
# Usage: sudo scripts/bench-nix-template.sh [BUILD_DIR] [N]
set -euo pipefail
BUILD=${1:-build}
N=${2:-30}
HERE=$(cd "$(dirname "$0")/.." && pwd)
command -v nix-build >/dev/null || { echo "nix-build not installed (Debian: nix-bin)" >&2; exit 1; }
source "$(dirname "$0")/bench-common.sh"
bench_setup nix
# The bench's GC roots go with its directory (no Nix collector runs meanwhile).
export TESSERA_NIX_GCROOTS=$ROOT/gcroots

ENV=$(nix-build --no-out-link --option build-users-group "" --option substituters "" \
  --option sandbox false "$HERE/tests/nix/store-paths.nix" --argstr version bench -A env 2>/dev/null)
nix-store -qR "$ENV" > "$ROOT/closure"
echo "closure: $(wc -l < "$ROOT/closure") store paths, $(du -shL $(cat "$ROOT/closure") | awk '{print $1}' | tr '\n' ' ')"

{
  printf '[qubes.base]\nclass = "template"\nsource = "busybox"\n\n'
  for kind in erofs squashfs; do
    printf '[qubes.nix-%s]\nclass = "template"\nsource = "nix"\n' "$kind"
    printf 'nix = { root = "%s", closure = "%s", image = "%s" }\n\n' "$ENV" "$ROOT/closure" "$kind"
  done
  for t in base nix-erofs nix-squashfs; do
    printf '[qubes.dvm-%s]\nclass = "disposable-template"\ntemplate = "%s"\nnetvm = "none"\nmemory = 256\n\n' "$t" "$t"
  done
} > "$ROOT/system.toml"

bench_start_daemon --no-autostart

for t in base nix-erofs nix-squashfs; do
  "$T" run --dispvm="dvm-$t" true  # warm up: builds the template (and its image)
  : > "$ROOT/t-$t"
done
for _ in $(seq 1 "$N"); do
  for t in base nix-erofs nix-squashfs; do ms "$T" run --dispvm="dvm-$t" true >> "$ROOT/t-$t"; done
done
B=$(stat_of "$ROOT/t-base" 0.5)
echo "run --dispvm true, busybox template (baseline): median $B ms"
for t in nix-erofs nix-squashfs; do
  M=$(stat_of "$ROOT/t-$t" 0.5)
  echo "run --dispvm true, $t:  median $M ms   ratio to baseline $(awk -v m="$M" -v b="$B" 'BEGIN{printf "%.2f", m/b}')"
done
