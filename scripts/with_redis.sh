#!/usr/bin/env bash
# Runs a command with a throwaway redis-server on loopback and
# SPILLWAY_REDIS_ADDR pointing at it; stops the server afterwards.
#   scripts/with_redis.sh build-plain/bench/spillway_redis_bench
# The port is the first free one from 26379 up (override: SPILLWAY_REDIS_PORT).
set -euo pipefail

if [ "$#" -eq 0 ]; then
  echo "usage: $0 COMMAND [ARGS...]" >&2
  exit 2
fi
command -v redis-server >/dev/null || {
  echo "with_redis: redis-server not found (scripts/install_deps.sh installs it)" >&2
  exit 1
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

PORT=${SPILLWAY_REDIS_PORT:-26379}
if [ -z "${SPILLWAY_REDIS_PORT:-}" ]; then
  while ! port_free "$PORT"; do PORT=$((PORT + 1)); done
fi
DIR=$(mktemp -d)
cleanup() {
  redis-cli -p "$PORT" shutdown nosave >/dev/null 2>&1 || true
  rm -rf "$DIR"
}
trap cleanup EXIT
redis-server --bind 127.0.0.1 --port "$PORT" --daemonize yes --save '' \
  --appendonly no --dir "$DIR" --pidfile "$DIR/redis.pid" \
  --logfile "$DIR/redis.log"
for _ in $(seq 1 100); do
  [ "$(redis-cli -p "$PORT" ping 2>/dev/null)" = PONG ] && break
  sleep 0.1
done
[ "$(redis-cli -p "$PORT" ping 2>/dev/null)" = PONG ] || {
  echo "with_redis: redis-server did not start on port $PORT" >&2
  cat "$DIR/redis.log" >&2
  exit 1
}
export SPILLWAY_REDIS_ADDR="127.0.0.1:$PORT"
"$@"
