#!/usr/bin/env bash
# Configures and builds one variant of tessera.
#   scripts/build.sh            -> build/         (RelWithDebInfo, benchmarks)
#   scripts/build.sh asan       -> build-asan/    (ASan + UBSan, Debug)
#   scripts/build.sh release    -> build-release/ (Release, -O3: what packagers build)
#   scripts/build.sh fuzz       -> build-fuzz/    (clang-14 + libFuzzer)
# Every variant builds with warnings as errors (TESSERA_WERROR=ON); a plain
# `cmake` configure leaves them warnings.
set -euo pipefail
cd "$(dirname "$0")/.."
variant=${1:-default}
jobs=$(nproc)
case "$variant" in
  default)
    dir=build
    args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo) ;;
  asan)
    dir=build-asan
    args=(-DCMAKE_BUILD_TYPE=Debug -DTESSERA_SANITIZE=ON -DTESSERA_BENCH=OFF) ;;
  release)
    dir=build-release
    args=(-DCMAKE_BUILD_TYPE=Release -DTESSERA_BENCH=OFF -DTESSERA_TESTS=ON) ;;
  fuzz)
    dir=build-fuzz
    args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DTESSERA_FUZZ=ON -DTESSERA_BENCH=OFF -DTESSERA_TESTS=ON
          -DCMAKE_CXX_COMPILER=clang++-14) ;;
  *) echo "build.sh: unknown variant '$variant' (default|asan|release|fuzz)" >&2; exit 2 ;;
esac
cmake -S . -B "$dir" -G Ninja -DTESSERA_WERROR=ON "${args[@]}" >/dev/null
ninja -C "$dir" -j "$jobs"
