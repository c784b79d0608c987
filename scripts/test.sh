#!/usr/bin/env bash
# Sets up a fresh Debian machine, builds everything and runs the whole test suite:
# the unit, property, simulation, fuzz-driver, end-to-end (namespaces) and VM
# tests. The instrumented builds (coverage-guided fuzzing, ASan and UBSan) are
# scripts/fuzz_ci.sh, not yet part of this command (docs/fuzzing.md).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/build.sh
ctest --test-dir build --output-on-failure -j"$(nproc)" --timeout 900
