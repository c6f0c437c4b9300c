#!/usr/bin/env bash
# Runs every libFuzzer target in build-fuzz/ for a bounded time, starting from
# its checked-in seed corpus (new inputs go to a scratch copy, not the repo).
#   scripts/fuzz.sh [SECONDS_PER_TARGET]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
status=0
found=0
for bin in build-fuzz/tests/fuzz/fuzz_*; do
  [ -x "$bin" ] || continue
  found=1
  name=${bin##*/fuzz_}
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  cp -r "tests/fuzz/corpus/$name/." "$work/" 2>/dev/null || true
  echo "-- fuzz $name for ${seconds}s"
  if ! "$bin" -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="build-fuzz/crash-$name-" "$work" 2>"build-fuzz/fuzz-$name.log"; then
    echo "fuzz target $name FAILED; see build-fuzz/fuzz-$name.log" >&2
    tail -40 "build-fuzz/fuzz-$name.log" >&2
    status=1
  else
    tail -1 "build-fuzz/fuzz-$name.log"
  fi
  rm -rf "$work"
done
[ $found -eq 1 ] || { echo "fuzz.sh: no fuzz targets built" >&2; exit 1; }
exit $status
