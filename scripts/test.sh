#!/usr/bin/env bash
# Sets up a fresh Debian machine, builds everything and runs the whole test suite:
# the unit, property, simulation, end-to-end (namespaces) and VM tests, then the
# instrumented builds (scripts/fuzz_ci.sh: every fuzz target coverage-guided for
# 60 s, the unit tests under ASan and UBSan). Its last line is the summary.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/build.sh
ctest --test-dir build --output-on-failure -j"$(nproc)" --timeout 900
./scripts/fuzz_ci.sh
