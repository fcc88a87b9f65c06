#!/usr/bin/env bash
# Installs what spillway needs to build and test, from Debian's archive.
# Idempotent: when every package is already installed it returns at once,
# without touching the network. Run as root (or with sudo) on Debian 12.
set -euo pipefail

PACKAGES=(
  g++ cmake ninja-build pkg-config git
  libabsl-dev libgtest-dev libgmock-dev libbenchmark-dev
  # clang builds the sanitizer suites and checks -Wthread-safety.
  clang libclang-rt-14-dev clang-format
  # spillway::redis, and the real server its tests start on loopback.
  libhiredis-dev redis-server redis-tools
  # spillway::pqxx, and the real PostgreSQL its tests and benchmark start.
  libpqxx-dev postgresql
  # spillway::prometheus, and orders_service's /metrics.
  prometheus-cpp-dev
  # The Conan recipe is checked with python3 -m py_compile; the monitoring
  # checks parse the dashboard with python3.
  python3
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi

echo "install_deps: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
