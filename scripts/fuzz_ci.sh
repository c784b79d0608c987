#!/usr/bin/env bash
# CI for the instrumented builds (docs/fuzzing.md), from the repository root:
#  (a) build-fuzz/: clang, -DFORTMESH_LIBFUZZER=ON (the whole tree with
#      libFuzzer coverage, ASan and UBSan). Each fuzz target runs
#      coverage-guided for FUZZ_SECONDS (60) from its seed corpus, written to a
#      temporary directory, and its regression inputs; any crash, leak,
#      sanitizer report or failed check fails the script.
#  (b) build-asan/: clang, -DFORTMESH_SANITIZE=ON (the whole tree with ASan and
#      UBSan). The unit, property and simulation tests run once with ctest; the
#      e2e_* and vm_* tests are left to scripts/test.sh (see docs/fuzzing.md
#      for why and for the times).
# Installs what it needs with apt-get (scripts/setup.sh, then clang and its
# runtime), idempotently. Ends with one summary line; exit 0 only if all passed.
#
#   FUZZ_SECONDS=N              time per fuzz target (default 60)
#   FUZZ_TARGETS="fuzz_op ..."  a subset of the targets
#   FUZZ_BUILD_DIR, ASAN_BUILD_DIR  other build directories than the two above
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
at() { echo "$(( $(date +%s) - start ))s"; }
step=setup
trap 'echo "fuzz_ci: FAILED during $step"' ERR
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}

./scripts/setup.sh
packages=(clang libclang-rt-14-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo_cmd apt-get update -qq
  $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

jobs=$(nproc)
fuzz_dir=${FUZZ_BUILD_DIR:-build-fuzz}
asan_dir=${ASAN_BUILD_DIR:-build-asan}
seconds=${FUZZ_SECONDS:-60}
all_targets=(fuzz_op fuzz_op_sequence fuzz_gossip fuzz_conn_auth fuzz_endpoints fuzz_control fuzz_join fuzz_relay_frame fuzz_relay_control fuzz_relay_server)
read -r -a targets <<< "${FUZZ_TARGETS:-${all_targets[*]}}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=()

# ---- (a) libFuzzer, coverage-guided -----------------------------------------
step="build-fuzz"
echo "== fuzz: configure and build $fuzz_dir (clang, FORTMESH_LIBFUZZER=ON) at $(at)"
cmake -S . -B "$fuzz_dir" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DFORTMESH_LIBFUZZER=ON >/dev/null
cmake --build "$fuzz_dir" -j"$jobs" --target "${targets[@]}"
fuzz_lines=()
for t in "${targets[@]}"; do
  bin=$fuzz_dir/tests/fuzz/$t
  corpus=$work/$t/corpus seeds=$work/$t/seeds
  mkdir -p "$corpus" "$seeds"
  FORTMESH_FUZZ_WRITE_SEEDS=$seeds "$bin" >/dev/null
  dirs=("$corpus" "$seeds")
  [ -d "tests/fuzz/regressions/$t" ] && dirs+=("tests/fuzz/regressions/$t")
  echo "== fuzz: $t for ${seconds}s from $(ls "$seeds" | wc -l) seeds at $(at)"
  rc=0
  "$bin" -max_total_time="$seconds" -timeout=30 -print_final_stats=1 -artifact_prefix="$work/$t/" \
    "${dirs[@]}" >"$work/$t/log" 2>&1 || rc=$?
  final=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$work/$t/log" | tail -1 || true)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t/log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/$t/log")
  cov=$(sed -n 's/.* cov: \([0-9]*\) ft: \([0-9]*\).*/cov \1 ft \2/p' <<< "$final")
  if [ "$rc" -ne 0 ] || ls "$work/$t"/crash-* "$work/$t"/leak-* "$work/$t"/timeout-* "$work/$t"/oom-* >/dev/null 2>&1; then
    echo "FAIL: $t (exit $rc); the end of its log:"
    tail -40 "$work/$t/log"
    for a in "$work/$t"/crash-* "$work/$t"/leak-* "$work/$t"/timeout-* "$work/$t"/oom-*; do
      [ -f "$a" ] && { echo "input $(basename "$a") (base64):"; base64 -w0 "$a"; echo; }
    done
    failed+=("$t")
    fuzz_lines+=("  $t: FAILED")
  else
    fuzz_lines+=("  $t: ${execs:-?} runs, ${rate:-?} exec/s, ${cov:-?}, 0 crashes")
  fi
done
printf '%s\n' "${fuzz_lines[@]}"

# ---- (b) unit tests under ASan and UBSan ------------------------------------
step="build-asan"
echo "== sanitize: configure and build $asan_dir (clang, FORTMESH_SANITIZE=ON) at $(at)"
cmake -S . -B "$asan_dir" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DFORTMESH_SANITIZE=ON >/dev/null
cmake --build "$asan_dir" -j"$jobs" --target fm_test_programs
echo "== sanitize: ctest (all but e2e_* and vm_*) at $(at)"
tests_rc=0
ctest --test-dir "$asan_dir" --output-on-failure -j"$jobs" --timeout 900 -E '^(e2e_|vm_)' \
  | tee "$work/ctest.log" || tests_rc=$?
[ "$tests_rc" -eq 0 ] || failed+=("asan-tests")
tests_line=$(grep -E 'tests passed|tests failed' "$work/ctest.log" | tail -1 || true)

elapsed=$(( $(date +%s) - start ))
bad_fuzz=0
for f in "${failed[@]}"; do [ "$f" = asan-tests ] || bad_fuzz=$((bad_fuzz + 1)); done
ok_fuzz=$(( ${#targets[@]} - bad_fuzz ))
# ctest's "97% tests passed, 1 tests failed out of 30"
tests_failed=$(sed -n 's/.* \([0-9]*\) tests failed out of \([0-9]*\).*/\1/p' <<< "$tests_line")
tests_total=$(sed -n 's/.* tests failed out of \([0-9]*\).*/\1/p' <<< "$tests_line")
if [ -z "$tests_total" ]; then tests_failed=1 tests_total=1; fi
trap - ERR
echo
echo "fuzz_ci: fuzz targets ${ok_fuzz}/${#targets[@]} clean (${seconds}s each); asan+ubsan ctest: ${tests_line:-no result}; ${elapsed}s"
echo "fuzz_ci: $((ok_fuzz + tests_total - tests_failed)) passed, $((bad_fuzz + tests_failed)) failed"
[ ${#failed[@]} -eq 0 ]
