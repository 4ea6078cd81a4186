#!/usr/bin/env bash
# A local PostgreSQL for tuning-energy studies: `start | stop | url | status`.
#
# - Debian's server binaries (/usr/lib/postgresql/*/bin); `start` installs the `postgresql`
#   package with apt-get when they are missing (root only).
# - Data directory under .cache/postgres (override with TUNING_ENERGY_PG_DIR), listening on
#   127.0.0.1 only, port 54329 (override with TUNING_ENERGY_PG_PORT); password auth on TCP,
#   the password is generated once and kept in $DIR/password (mode 600).
# - Idempotent: `start` on a running server only prints the URL. The URL names the port the
#   running server listens on (from its postmaster.pid), whatever TUNING_ENERGY_PG_PORT says.
# - As root the server runs as the `postgres` user (initdb refuses root).
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
DIR="${TUNING_ENERGY_PG_DIR:-$REPO/.cache/postgres}"
# Where an earlier `start` put it when the repo was out of the postgres user's reach.
POINTER="$REPO/.cache/postgres.dir"
if [[ -z "${TUNING_ENERGY_PG_DIR:-}" && -s "$POINTER" ]]; then DIR="$(cat "$POINTER")"; fi
PORT="${TUNING_ENERGY_PG_PORT:-54329}"
DB="${TUNING_ENERGY_PG_DB:-tuning_energy}"
set_paths() { DATA="$DIR/data"; LOG="$DIR/server.log"; }
set_paths

die() { echo "postgres.sh: $*" >&2; exit 1; }

find_bin() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [[ -x "$d/pg_ctl" && -x "$d/initdb" ]]; then echo "$d"; return 0; fi
  done
  if command -v pg_ctl >/dev/null && command -v initdb >/dev/null; then
    dirname "$(command -v pg_ctl)"; return 0
  fi
  return 1
}

install_server() {
  [[ $(id -u) -eq 0 ]] || die "no PostgreSQL server binaries; install the 'postgresql' package (needs root)"
  command -v apt-get >/dev/null || die "no PostgreSQL server binaries and no apt-get; install PostgreSQL >= 12"
  echo "postgres.sh: installing Debian's postgresql package" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends postgresql >&2
}

as_owner() {  # run a command as the server's owner
  if [[ $(id -u) -eq 0 ]]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

password() { cat "$DIR/password"; }

port() {  # the running server's port (line 4 of postmaster.pid), else the configured one
  local p=""
  if [[ -n "${BIN:-}" ]] && running; then p="$(sed -n 4p "$DATA/postmaster.pid" 2>/dev/null)"; fi
  echo "${p:-$PORT}"
}

url() { echo "postgresql://postgres:$(password)@127.0.0.1:$(port)/$DB"; }

running() { [[ -f "$DATA/postmaster.pid" ]] && as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; }

init() {
  mkdir -p "$DIR"
  if [[ $(id -u) -eq 0 ]]; then
    id postgres >/dev/null 2>&1 || die "no 'postgres' user; install the postgresql package"
    chown postgres "$DIR"
    if ! as_owner test -w "$DIR"; then
      # A parent directory is private (e.g. a clone under /root): use one outside it.
      [[ -z "${TUNING_ENERGY_PG_DIR:-}" ]] || die "$DIR is not reachable by the postgres user; set TUNING_ENERGY_PG_DIR to a directory it can reach"
      DIR="/var/tmp/tuning-energy-postgres-$(echo "$REPO" | cksum | cut -d' ' -f1)"
      echo "postgres.sh: $REPO is out of the postgres user's reach; data in $DIR" >&2
      mkdir -p "$DIR" "$REPO/.cache" && chown postgres "$DIR" && chmod 700 "$DIR"
      echo "$DIR" > "$POINTER"
      set_paths
    fi
  fi
  if [[ ! -s "$DIR/password" ]]; then
    (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$DIR/password")
  fi
  chown "$(as_owner id -un)" "$DIR/password"
  if [[ ! -f "$DATA/PG_VERSION" ]]; then
    as_owner "$BIN/initdb" -D "$DATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
      --pwfile="$DIR/password" --encoding=UTF8 --no-locale >"$DIR/initdb.log" 2>&1 \
      || { cat "$DIR/initdb.log" >&2; die "initdb failed"; }
  fi
}

start() {
  BIN="$(find_bin)" || { install_server; BIN="$(find_bin)" || die "no pg_ctl after installing"; }
  init
  if ! running; then
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
      die "127.0.0.1:$PORT is taken by another server (another clone's 'make postgres'?): stop it, or choose a port with TUNING_ENERGY_PG_PORT=NNNNN"
    fi
    # Loopback only; the Unix socket lives in the data directory (mode 700).
    as_owner "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $PORT -c unix_socket_directories='$DATA' -c max_connections=200" \
      start >/dev/null || { tail -20 "$LOG" >&2; die "the server did not start (log: $LOG)"; }
  fi
  if ! as_owner "$BIN/psql" -h "$DATA" -p "$PORT" -U postgres -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1; then
    as_owner "$BIN/createdb" -h "$DATA" -p "$PORT" -U postgres "$DB"
  fi
  url
}

stop() {
  BIN="$(find_bin)" || exit 0
  if running; then as_owner "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null; fi
  echo "stopped (data kept in $DATA)"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  url) [[ -s "$DIR/password" ]] || die "not initialised; run: $0 start"; BIN="$(find_bin)" || true; url ;;
  status) BIN="$(find_bin)" || die "no PostgreSQL binaries"; if running; then echo "running: $(url)"; else echo "stopped"; exit 3; fi ;;
  *) echo "usage: $0 start|stop|url|status" >&2; exit 64 ;;
esac
