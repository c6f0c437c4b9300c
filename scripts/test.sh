#!/usr/bin/env bash
# The one test command (README, .ci/run): installs dependencies, builds the normal
# and the sanitizer (ASan+UBSan) variants, runs every test in both, then fuzzes each
# parser for a bounded time. Needs root: integration tests create real namespaces,
# mounts and cgroups (and clean them up).
#   FUZZ_SECONDS=N   seconds per fuzz target (default 20; 0 skips fuzzing)
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

echo "== build (RelWithDebInfo)"
bash scripts/build.sh default
echo "== build (ASan+UBSan)"
bash scripts/build.sh asan

status=0
echo "== tests (RelWithDebInfo)"
ctest --test-dir build --output-on-failure -j 2 --timeout 600 || status=1
echo "== tests (ASan+UBSan)"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure -j 2 --timeout 900 || status=1

if [ "${FUZZ_SECONDS:-20}" != 0 ]; then
  echo "== fuzz (${FUZZ_SECONDS:-20}s per target)"
  bash scripts/build.sh fuzz
  bash scripts/fuzz.sh "${FUZZ_SECONDS:-20}" || status=1
fi

if [ $status -ne 0 ]; then
  echo "tests FAILED"
fi
exit $status
