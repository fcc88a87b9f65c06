#!/usr/bin/env bash
# spillway's main job: the incident replay. Builds the overload simulator
# and runs the misrouted-balancer incident (one group of instances gets 3x
# its share, 3x the database's peak in total, for 60 s) against every
# contender, printing the comparison table. Deterministic (seed 1); no
# server needed. Extra arguments go to spillway_sim (try --help, or
# --scenario=all, --svg incident.svg).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${SPILLWAY_BUILD_ROOT:-$ROOT}/build-demo

"$ROOT/scripts/install_deps.sh"
cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DSPILLWAY_BUILD_TESTS=OFF -DSPILLWAY_BUILD_BENCHMARKS=ON \
  -DSPILLWAY_BUILD_EXAMPLES=ON >/dev/null
cmake --build "$BUILD" --target spillway_sim >/dev/null
"$BUILD/bench/sim/spillway_sim" --scenario=incident "$@"
