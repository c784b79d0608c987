#!/usr/bin/env bash
# Installs what is missing, then configures and builds fortmesh in build/.
#   scripts/build.sh           the fortmesh binary (what the demo and the package need)
#   scripts/build.sh --tests   everything: the binary, the tests and benchmarks
# BUILD_TYPE=Release|RelWithDebInfo|Debug (default RelWithDebInfo).
set -euo pipefail
cd "$(dirname "$0")/.."
tests=OFF
if [ "${1:-}" = "--tests" ]; then tests=ON; fi
# A tree configured with the tests keeps them (only the binary is built
# then): turning them off would leave its test programs stale for ctest.
if [ $tests = OFF ] && grep -q '^FORTMESH_BUILD_TESTS:BOOL=ON' build/CMakeCache.txt 2>/dev/null; then
  configured=ON
else
  configured=$tests
fi
./scripts/setup.sh ${1:+"$1"}
cmake -S . -B build -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" -DFORTMESH_BUILD_TESTS=$configured >/dev/null
if [ $tests = ON ]; then
  cmake --build build -j"$(nproc)"
else
  cmake --build build -j"$(nproc)" --target fortmesh
fi
