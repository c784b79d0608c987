#!/usr/bin/env bash
# Sets up a fresh Debian machine, builds everything and runs the whole test suite:
#  1. the normal build (build/, g++) and ctest: the unit, property, simulation,
#     fuzz-driver, end-to-end (namespaces) and VM tests;
#  2. scripts/fuzz_ci.sh: one instrumented build (build-fuzz/, clang, libFuzzer
#     coverage with ASan and UBSan) in which the unit, property and simulation
#     tests run once more under the sanitizers and every fuzz target runs
#     coverage-guided for 60 s (docs/fuzzing.md).
# The second runs even when the first failed. Prints the time of each step and
# ends with one line for both; exit 0 only if everything passed.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT

./scripts/build.sh --tests
# The whole suite includes the Release -Werror check (tests/release_check.py,
# about 5 CPU minutes), which a plain `ctest` skips.
export FORTMESH_RELEASE_CHECK="${FORTMESH_RELEASE_CHECK:-1}"
built=$(date +%s)
ctest_rc=0
ctest --test-dir build --output-on-failure -j"$(nproc)" --timeout 900 | tee "$log/ctest" || ctest_rc=$?
tested=$(date +%s)
fuzz_rc=0
./scripts/fuzz_ci.sh 2>&1 | tee "$log/fuzz" || fuzz_rc=$?
done_at=$(date +%s)

# ctest: "100% tests passed, 0 tests failed out of 35"; fuzz_ci: "fuzz_ci: N passed, M failed".
line=$(grep -E 'tests failed out of' "$log/ctest" | tail -1 || true)
c_failed=$(sed -n 's/.* \([0-9]*\) tests failed out of.*/\1/p' <<< "$line")
c_total=$(sed -n 's/.* tests failed out of \([0-9]*\).*/\1/p' <<< "$line")
[ -n "$c_total" ] || { c_total=1 c_failed=1; }
[ "$ctest_rc" -eq 0 ] || [ "$c_failed" -gt 0 ] || c_failed=1
line=$(grep -E '^fuzz_ci: [0-9]+ passed, [0-9]+ failed$' "$log/fuzz" | tail -1 || true)
f_passed=$(sed -n 's/^fuzz_ci: \([0-9]*\) passed.*/\1/p' <<< "$line")
f_failed=$(sed -n 's/.* \([0-9]*\) failed$/\1/p' <<< "$line")
[ -n "$f_passed" ] || { f_passed=0 f_failed=1; }
[ "$fuzz_rc" -eq 0 ] || [ "$f_failed" -gt 0 ] || f_failed=1

echo
echo "test.sh: build $((built - start))s, ctest $((tested - built))s, fuzz_ci $((done_at - tested))s; $((done_at - start))s in all"
echo "test: $((c_total - c_failed + f_passed)) passed, $((c_failed + f_failed)) failed"
[ "$ctest_rc" -eq 0 ] && [ "$fuzz_rc" -eq 0 ]
