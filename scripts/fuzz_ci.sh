#!/usr/bin/env bash
# CI for the instrumented build (docs/fuzzing.md), from the repository root.
# One build, build-fuzz/: clang, -DFORTMESH_LIBFUZZER=ON, so that the whole tree
# (every fm_* library, the tests, the fuzz targets) has libFuzzer's coverage,
# ASan and UBSan. The same tree serves both halves:
#  (a) the unit, property and simulation tests run once with ctest under ASan
#      and UBSan (the sanitizer runtimes provide the coverage callbacks, so the
#      tests link without libFuzzer); the e2e_* and vm_* tests are left to the
#      uninstrumented run in scripts/test.sh (docs/fuzzing.md says why);
#  (b) each fuzz target runs coverage-guided for FUZZ_SECONDS (60) from its seed
#      corpus, written to a temporary directory, and its regression inputs,
#      FUZZ_JOBS (nproc) targets at a time, each in one process on its own core.
# Before either, it checks that the libraries really are instrumented. Any
# crash, leak, timeout, sanitizer report or failed check fails the script.
# Installs what it needs with apt-get (scripts/setup.sh, then clang and its
# runtime and symbolizer), idempotently. Ends with one summary line; exit 0 only if all passed.
#
#   FUZZ_SECONDS=N              time per fuzz target (default 60)
#   FUZZ_JOBS=N                 fuzz targets run at once (default nproc)
#   FUZZ_TARGETS="fuzz_op ..."  a subset of the targets
#   FUZZ_BUILD_DIR              another build directory than build-fuzz
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
at() { echo "$(( $(date +%s) - start ))s"; }
step=setup
trap 'echo "fuzz_ci: FAILED during $step"' ERR
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}

./scripts/setup.sh --tests
# llvm: llvm-symbolizer, so that sanitizer reports name files and lines
# (clang does not pull it in without recommends).
packages=(clang libclang-rt-14-dev llvm)
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
fuzz_jobs=${FUZZ_JOBS:-$jobs}
dir=${FUZZ_BUILD_DIR:-build-fuzz}
seconds=${FUZZ_SECONDS:-60}
all_targets=(fuzz_op fuzz_op_sequence fuzz_gossip fuzz_conn_auth fuzz_endpoints fuzz_control fuzz_join fuzz_relay_frame fuzz_relay_control fuzz_relay_server)
read -r -a targets <<< "${FUZZ_TARGETS:-${all_targets[*]}}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=()

# ---- the build ---------------------------------------------------------------
# -gline-tables-only: file and line in every report, at a tenth less build
# time than full debug information.
step="build"
echo "== configure and build $dir (clang, FORTMESH_LIBFUZZER=ON) at $(at)"
cmake -S . -B "$dir" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -gline-tables-only -DNDEBUG" -DFORTMESH_LIBFUZZER=ON >/dev/null
cmake --build "$dir" -j"$jobs" --target fm_test_programs "${targets[@]}"

# Every library of ours must carry ASan checks, UBSan handlers and libFuzzer's
# coverage; the tests' sanitizer_canary_test checks that findings stop a test.
step="instrumentation check"
for lib in "$dir"/base/*.a "$dir"/netauth/*.a "$dir"/crdt/*.a "$dir"/maintainer/*.a "$dir"/maintainer/*/*.a; do
  [ -f "$lib" ] || continue
  syms=$(nm -u "$lib" 2>/dev/null || true)
  for want in __asan_report_ __ubsan_handle_ __sanitizer_cov_; do
    grep -q "$want" <<< "$syms" || { echo "FAIL: $lib has no $want* calls: not instrumented"; failed+=("instrumentation"); }
  done
done

# ---- (a) unit tests under ASan and UBSan --------------------------------------
step="ctest"
echo "== ctest under ASan and UBSan (all but e2e_*, vm_* and package_*) at $(at)"
tests_rc=0
ctest --test-dir "$dir" --output-on-failure -j"$jobs" --timeout 900 -E '^(e2e_|vm_|package_)' \
  | tee "$work/ctest.log" || tests_rc=$?
[ "$tests_rc" -eq 0 ] || failed+=("asan-tests")
tests_line=$(grep -E 'tests passed|tests failed' "$work/ctest.log" | tail -1 || true)

# ---- (b) libFuzzer, coverage-guided ------------------------------------------
# fuzz_one TARGET: runs it and writes one line to $work/TARGET/result (and the
# end of the log and any failing input to $work/TARGET/report).
fuzz_one() {
  local t=$1 bin=$dir/tests/fuzz/$1
  local corpus=$work/$t/corpus seeds=$work/$t/seeds
  mkdir -p "$corpus" "$seeds"
  FORTMESH_FUZZ_WRITE_SEEDS=$seeds "$bin" >/dev/null
  local dirs=("$corpus" "$seeds")
  [ -d "tests/fuzz/regressions/$t" ] && dirs+=("tests/fuzz/regressions/$t")
  echo "== fuzz: $t for ${seconds}s from $(ls "$seeds" | wc -l) seeds at $(at)"
  local rc=0
  "$bin" -max_total_time="$seconds" -timeout=30 -print_final_stats=1 -artifact_prefix="$work/$t/" \
    "${dirs[@]}" >"$work/$t/log" 2>&1 || rc=$?
  local final execs rate cov
  final=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$work/$t/log" | tail -1 || true)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t/log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/$t/log")
  cov=$(sed -n 's/.* cov: \([0-9]*\) ft: \([0-9]*\).*/cov \1 ft \2/p' <<< "$final")
  if [ "$rc" -ne 0 ] || ls "$work/$t"/crash-* "$work/$t"/leak-* "$work/$t"/timeout-* "$work/$t"/oom-* >/dev/null 2>&1; then
    {
      echo "FAIL: $t (exit $rc); the end of its log:"
      tail -40 "$work/$t/log"
      for a in "$work/$t"/crash-* "$work/$t"/leak-* "$work/$t"/timeout-* "$work/$t"/oom-*; do
        [ -f "$a" ] && { echo "input $(basename "$a") (base64):"; base64 -w0 "$a"; echo; }
      done
    } >"$work/$t/report"
    echo "  $t: FAILED" >"$work/$t/result"
  else
    echo "  $t: ${execs:-?} runs, ${rate:-?} exec/s, ${cov:-?}, 0 crashes" >"$work/$t/result"
  fi
}

step="fuzz"
echo "== fuzz: ${#targets[@]} targets, ${fuzz_jobs} at a time, at $(at)"
running=0
for t in "${targets[@]}"; do
  if [ "$running" -ge "$fuzz_jobs" ]; then
    wait -n || true
    running=$((running - 1))
  fi
  fuzz_one "$t" &
  running=$((running + 1))
done
wait || true
fuzz_lines=()
for t in "${targets[@]}"; do
  [ -f "$work/$t/report" ] && cat "$work/$t/report"
  line=$(cat "$work/$t/result" 2>/dev/null || echo "  $t: FAILED (no result)")
  fuzz_lines+=("$line")
  [[ "$line" == *FAILED* ]] && failed+=("$t")
done
printf '%s\n' "${fuzz_lines[@]}"

elapsed=$(( $(date +%s) - start ))
bad_fuzz=0
for f in "${failed[@]}"; do
  case "$f" in asan-tests | instrumentation) ;; *) bad_fuzz=$((bad_fuzz + 1)) ;; esac
done
ok_fuzz=$(( ${#targets[@]} - bad_fuzz ))
# ctest's "97% tests passed, 1 tests failed out of 30"
tests_failed=$(sed -n 's/.* \([0-9]*\) tests failed out of \([0-9]*\).*/\1/p' <<< "$tests_line")
tests_total=$(sed -n 's/.* tests failed out of \([0-9]*\).*/\1/p' <<< "$tests_line")
if [ -z "$tests_total" ]; then tests_failed=1 tests_total=1; fi
instr_bad=0
for f in "${failed[@]}"; do [ "$f" = instrumentation ] && instr_bad=1; done
trap - ERR
echo
echo "fuzz_ci: fuzz targets ${ok_fuzz}/${#targets[@]} clean (${seconds}s each); asan+ubsan ctest: ${tests_line:-no result}; ${elapsed}s"
echo "fuzz_ci: $((ok_fuzz + tests_total - tests_failed)) passed, $((bad_fuzz + tests_failed + instr_bad)) failed"
[ ${#failed[@]} -eq 0 ]
