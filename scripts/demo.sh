#!/usr/bin/env bash
# spillway's main job: builds and runs the local throttle example (a slow
# fake write behind the concurrency limiter and the token bucket). No server
# is needed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${SPILLWAY_BUILD_ROOT:-$ROOT}/build-demo

"$ROOT/scripts/install_deps.sh"
cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DSPILLWAY_BUILD_TESTS=OFF -DSPILLWAY_BUILD_BENCHMARKS=OFF >/dev/null
cmake --build "$BUILD" --target local_throttle
"$BUILD/examples/local_throttle" "$@"
