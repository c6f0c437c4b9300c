#!/usr/bin/env bash
# What `cmake --install` ships, checked in the build tree:
#   - a man page for tessera, tesserad and every verb `tessera --help` lists;
#   - the systemd units pass `systemd-analyze verify` (skipped with the
#     reason printed where systemd-analyze is missing), with ExecStart
#     pointing at this build's binaries.
# Usage: tests/packaging_check.sh BUILD_DIR SOURCE_DIR
set -uo pipefail
BUILD=$1 SRC=$2
failed=0
for page in tessera.1 tesserad.8; do
  [ -s "$BUILD/man/$page" ] || { echo "FAIL: no man page $page"; failed=1; }
done
verbs=$("$BUILD/tessera" --help | sed -n '/^Subcommands:/,$p' | tail -n +2 | awk 'NF {print $1}')
n=0
for verb in $verbs; do
  n=$((n + 1))
  page="$BUILD/man/tessera-$verb.1"
  if [ ! -s "$page" ] || ! grep -q "tessera $verb" "$page"; then
    echo "FAIL: no man page for 'tessera $verb' (tessera-$verb.1)"; failed=1
  fi
done
echo "man pages: tessera, tesserad and $n verbs"
if command -v systemd-analyze >/dev/null; then
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  sed "s|@TESSERA_BINDIR@|$BUILD|" "$SRC/packaging/systemd/tesserad.service.in" > "$tmp/tesserad.service"
  cp "$SRC/packaging/systemd/tesserad.socket" "$SRC/packaging/systemd/tessera.slice" "$tmp/"
  if out=$(cd "$tmp" && systemd-analyze verify --man=no tesserad.service tesserad.socket \
             tessera.slice 2>&1); then
    echo "units: systemd-analyze verify passed"
  else
    echo "FAIL: systemd-analyze verify: $out"; failed=1
  fi
else
  echo "units: skipped: systemd-analyze is not installed"
fi
exit $failed
