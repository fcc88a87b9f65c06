#!/usr/bin/env bash
# Runs a command with a throwaway PostgreSQL on loopback and SPILLWAY_PG_CONN
# set to its libpq connection string; stops and removes it afterwards.
#   scripts/with_postgres.sh build-plain/examples/orders_service
# Run as root (initdb runs as the `postgres` user, as ENVIRONMENT.md shows)
# or as a user who may run initdb. fsync stays on unless SPILLWAY_PG_FSYNC=off.
set -euo pipefail

if [ "$#" -eq 0 ]; then
  echo "usage: $0 COMMAND [ARGS...]" >&2
  exit 2
fi
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
[ -n "$PGBIN" ] || {
  echo "with_postgres: PostgreSQL not found (scripts/install_deps.sh installs it)" >&2
  exit 1
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
PORT=${SPILLWAY_PG_PORT:-25432}
while ! port_free "$PORT"; do PORT=$((PORT + 1)); done

DIR=$(mktemp -d /tmp/spillway-pg.XXXXXX)
RUN=()
if [ "$(id -u)" -eq 0 ]; then
  chown postgres:postgres "$DIR"
  RUN=(runuser -u postgres --)
fi
chmod 700 "$DIR"
cleanup() {
  (cd / && "${RUN[@]}" "$PGBIN/pg_ctl" -D "$DIR" -m immediate -w stop) >/dev/null 2>&1 || true
  rm -rf "$DIR"
}
trap cleanup EXIT

FSYNC=${SPILLWAY_PG_FSYNC:-on}
(cd / && "${RUN[@]}" "$PGBIN/initdb" -D "$DIR" -U postgres -A trust -E UTF8 \
  --locale=C.UTF-8 --no-sync >/dev/null)
(cd / && "${RUN[@]}" "$PGBIN/pg_ctl" -D "$DIR" -l "$DIR/server.log" -w -t 60 \
  -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c fsync=$FSYNC -c synchronous_commit=$FSYNC -c max_connections=300" \
  start >/dev/null)
psql -h 127.0.0.1 -p "$PORT" -U postgres -qc "CREATE DATABASE spillway" >/dev/null
export SPILLWAY_PG_CONN="host=127.0.0.1 port=$PORT user=postgres dbname=spillway"
"$@"
