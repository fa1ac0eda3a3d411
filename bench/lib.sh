# Shared by the bench scripts: `source bench/lib.sh` from the repository root.

# Builds the release binary (after scripts/setup) and sets IMGATE to it.
build_imgate() {
  scripts/setup
  cargo build --release --bin imgate --quiet
  IMGATE="$(cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/imgate"
}

# Installs Debian packages that are missing (PACKAGE:COMMAND pairs).
need() {
  local missing=()
  for p in "$@"; do command -v "${p#*:}" >/dev/null 2>&1 || [ -x "/usr/sbin/${p#*:}" ] || missing+=("${p%%:*}"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  apt-get update -qq
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# Makes sure Postfix has its stock configuration files to edit with postconf.
postfix_base() {
  [ -f /etc/postfix/main.cf ] || cp /usr/share/postfix/main.cf.debian /etc/postfix/main.cf
  [ -f /etc/postfix/master.cf ] || cp /usr/share/postfix/master.cf.dist /etc/postfix/master.cf
  command -v newaliases >/dev/null && { [ -f /etc/aliases ] || : > /etc/aliases; newaliases 2>/dev/null || true; }
}

# (Re)starts Postfix with what postconf set.
postfix_restart() {
  postfix stop >/dev/null 2>&1 || true
  postfix start >/dev/null 2>&1
}

# Waits up to 30 s for something to listen on 127.0.0.1:PORT.
wait_port() {
  for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  return 1
}

# A scratch directory, $work, removed at exit after the commands registered
# with at_exit have run (each may fail); BENCH_KEEP=1 keeps it (logs,
# stores) and says where.
exit_cmds=()
at_exit() { exit_cmds+=("$1"); }
run_exit_cmds() {
  for c in "${exit_cmds[@]}"; do eval "$c" >/dev/null 2>&1 || true; done
  if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "kept: $work" >&2; else rm -rf "$work"; fi
}
make_work() {
  work=$(mktemp -d)
  trap run_exit_cmds EXIT
}

# Starts `imgate serve --config $work/NAME.toml` (NAME defaults to imgate),
# logging to $work/NAME.log; sets imgate_pid, and stops it at exit.
start_imgate() {
  local name=${1:-imgate}
  "$IMGATE" serve --config "$work/$name.toml" >"$work/$name.log" 2>&1 &
  imgate_pid=$!
  at_exit "kill $imgate_pid; wait $imgate_pid"
}

# Starts a PostgreSQL server for the benchmark under $work/pg (as `nobody`
# under root: PostgreSQL refuses root) on port $1 with a database `imgate`;
# sets PG_URL, and stops the server at exit. PG_OPTS adds server options
# ("-c log_min_duration_statement=20").
start_postgres() {
  local port=$1 bin
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -n "$bin" ] || { need postgresql:psql; bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1); }
  local as=()
  [ "$(id -u)" -ne 0 ] || as=(runuser -u nobody --)
  chmod 755 "$work"
  mkdir -p "$work/pg"
  [ "$(id -u)" -ne 0 ] || chown nobody "$work/pg"
  "${as[@]}" "$bin/initdb" --auth=trust --username=imgate -D "$work/pg/data" >/dev/null
  "${as[@]}" "$bin/pg_ctl" -D "$work/pg/data" -l "$work/pg/server.log" -w \
    -o "-p $port -k $work/pg -c listen_addresses=127.0.0.1 -c max_connections=300 ${PG_OPTS:-}" start >/dev/null
  at_exit "${as[*]} $bin/pg_ctl -D $work/pg/data -m immediate stop"
  psql -X -q -h 127.0.0.1 -p "$port" -U imgate -d postgres -c "CREATE DATABASE imgate"
  PG_URL="postgres://imgate@127.0.0.1:$port/imgate"
}
