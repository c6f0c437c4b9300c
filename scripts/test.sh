#!/usr/bin/env bash
# The one test command (README, .ci/run): installs dependencies, builds the normal
# and the sanitizer (ASan+UBSan) variants, runs every test in both, builds the
# Release variant (what packagers build, -O3) and runs its unit tests, then fuzzes
# each parser for a bounded time. Needs root: integration tests create real namespaces,
# mounts and cgroups (and clean them up).
#   FUZZ_SECONDS=N   seconds per fuzz target (default 20; 0 skips fuzzing)
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

echo "== build (RelWithDebInfo)"
bash scripts/build.sh default
echo "== build (ASan+UBSan)"
bash scripts/build.sh asan
echo "== build (Release)"
bash scripts/build.sh release

status=0
echo "== tests (RelWithDebInfo)"
ctest --test-dir build --output-on-failure -j 2 --timeout 600 || status=1
echo "== tests (ASan+UBSan)"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure -j 2 --timeout 900 || status=1
# Unit tests only: the Release build exists so that -O3 (new warnings, other
# inlining) cannot break again unnoticed; integration runs twice above.
echo "== unit tests (Release)"
ctest --test-dir build-release --output-on-failure -j 2 --timeout 600 -L unit || status=1

if [ "${FUZZ_SECONDS:-20}" != 0 ]; then
  echo "== fuzz (${FUZZ_SECONDS:-20}s per target)"
  bash scripts/build.sh fuzz
  bash scripts/fuzz.sh "${FUZZ_SECONDS:-20}" || status=1
fi

if [ $status -ne 0 ]; then
  # The tail of a CI log is often all that is kept: name what failed there.
  for dir in build build-asan build-release; do
    failed="$dir/Testing/Temporary/LastTestsFailed.log"
    if [ -s "$failed" ]; then
      echo "failed in $dir:"
      sed 's/^/  /' "$failed"
    fi
  done
  echo "tests FAILED"
fi
exit $status
