#!/usr/bin/env bash
# spillway's whole test suite, as CI runs it (.ci/run calls this and nothing
# else). First the checks that need no build:
#   monitoring  promtool check rules / test rules on monitoring/, and the
#               dashboard's queries (scripts/check_monitoring.sh; promtool
#               is fetched from Debian's `prometheus` package, not installed)
#   conan       the Conan recipe compiles (python3 -m py_compile; no Conan
#               client is reachable, so it is not run)
#   readme      the README's metrics table equals metric_names.h
# Then three builds, each configured, built and tested with ctest (the
# exposition test runs `promtool check metrics` on a live throttle's text):
#   plain  RelWithDebInfo at -O2 with -g1 (line tables, no variables:
#          enough for a backtrace; a full build took 253 s against 324 s
#          with -g), g++ (also builds and smoke-runs the benchmarks)
#   asan   AddressSanitizer + UndefinedBehaviorSanitizer, clang
#          (also checks the thread-safety annotations, -Wthread-safety)
#   tsan   ThreadSanitizer, clang; without the `sim` tests: the simulator
#          is single-threaded, so ThreadSanitizer has nothing to find
#          there, and they were 90 s of this build's 160 s of tests
# The sanitizer builds compile at -O1 with line tables only (what the
# sanitizers' own documentation suggests: fast enough to run, and the
# reports keep file and line): a fifth less compile time than -O2 -g.
# Exits non-zero if any build or any test fails. Build trees go to
# build-<name>/ under the repository (override with SPILLWAY_BUILD_ROOT).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_ROOT=${SPILLWAY_BUILD_ROOT:-$ROOT}
JOBS=${SPILLWAY_JOBS:-$(nproc)}

"$ROOT/scripts/install_deps.sh"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}

SAN_COMMON="-fno-omit-frame-pointer -fno-sanitize-recover=all"

# run_build NAME [ctest arguments] -- [cmake arguments]
run_build() {
  local name=$1
  shift
  local ctest_args=()
  while [ "$1" != "--" ]; do
    ctest_args+=("$1")
    shift
  done
  shift
  local dir="$BUILD_ROOT/build-$name"
  echo "=== [$name] configure" >&2
  cmake -S "$ROOT" -B "$dir" -G Ninja -DSPILLWAY_PROMTOOL="$PROMTOOL" "$@" >/dev/null
  echo "=== [$name] build" >&2
  cmake --build "$dir" -j "$JOBS"
  echo "=== [$name] test" >&2
  ctest --test-dir "$dir" --output-on-failure -j "$JOBS" --timeout 900 \
    ${ctest_args[@]+"${ctest_args[@]}"}
}

start=$(date +%s)
echo "=== [checks] monitoring, conan recipe, README metrics table" >&2
PROMTOOL=$("$ROOT/scripts/check_monitoring.sh" --print-promtool)
PROMTOOL="$PROMTOOL" "$ROOT/scripts/check_monitoring.sh"
PYTHONPYCACHEPREFIX=$(mktemp -d) python3 -m py_compile \
  "$ROOT/conan/conanfile.py" "$ROOT/conan/test_package/conanfile.py"
echo "conan recipe: compiles (untested with a live Conan client)" >&2
python3 "$ROOT/tests/docs/readme_metrics_test.py" "$ROOT"

SAN_OPT="-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -gline-tables-only -DNDEBUG"

run_build plain -- -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O2 -g1 -DNDEBUG" -DCMAKE_CXX_COMPILER=g++
run_build asan -- -DCMAKE_BUILD_TYPE=RelWithDebInfo "$SAN_OPT" \
  -DCMAKE_CXX_COMPILER=clang++ -DSPILLWAY_BUILD_BENCHMARKS=OFF \
  "-DCMAKE_CXX_FLAGS=-fsanitize=address,undefined $SAN_COMMON"
run_build tsan -LE sim -- -DCMAKE_BUILD_TYPE=RelWithDebInfo "$SAN_OPT" \
  -DCMAKE_CXX_COMPILER=clang++ -DSPILLWAY_BUILD_BENCHMARKS=OFF \
  "-DCMAKE_CXX_FLAGS=-fsanitize=thread $SAN_COMMON"
echo "=== all three builds passed in $(( $(date +%s) - start )) s" >&2
