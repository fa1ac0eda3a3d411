#!/usr/bin/env bash
# Job claim rate of the shared queue: jobs/s taken and finished by 1, 2 and
# 4 workers, on PostgreSQL and on RocksDB, side by side in one run.
#
#   bench/claim_rate.sh [JOBS] [BATCH]     (defaults 20000 100)
#
# The path measured (examples/claim_rate.rs): JOBS notification jobs are
# queued (not timed); then W workers, each under its own node name as
# separate nodes would be, loop over what a node's queue worker does per
# pass — lease up to BATCH due jobs (one turn across all workers), record
# every outcome as "accepted" (one turn, one durable commit) — until none
# is due. No agent is contacted: this is the queue's bookkeeping alone,
# the part every node shares. On PostgreSQL the workers are connections
# to one local server (fsync on); on RocksDB, threads of one process on a
# store of its own. Each figure is the median of three runs on a fresh
# store; ratios are against one worker of the same engine, and PostgreSQL
# against RocksDB.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
JOBS=${1:-20000}
BATCH=${2:-100}
PORT=${IMGATE_PORT:-2790}

scripts/setup
cargo build --release --example claim_rate --quiet
CLAIM="$(cargo metadata --format-version 1 --no-deps \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/examples/claim_rate"
make_work
start_postgres "$PORT"

run() { # ENGINE WORKERS → jobs/s on a fresh store
  if [ "$1" = postgres ]; then
    psql -X -q -h 127.0.0.1 -p "$PORT" -U imgate -d postgres -c "DROP DATABASE IF EXISTS claim" -c "CREATE DATABASE claim"
    "$CLAIM" "postgres://imgate@127.0.0.1:$PORT/claim" "$JOBS" "$2" "$BATCH"
  else
    rm -rf "$work/rocks"
    "$CLAIM" "$work/rocks" "$JOBS" "$2" "$BATCH"
  fi
}
median() { printf '%s\n' "$@" | sort -g | sed -n 2p; }

printf 'job claim rate: %d notification jobs, leased %d at a time, each outcome recorded (median of 3)\n' "$JOBS" "$BATCH"
declare -A med
for engine in postgres rocksdb; do
  base=""
  for w in 1 2 4; do
    r=()
    for _ in 1 2 3; do r+=("$(run "$engine" "$w")"); done
    m=$(median "${r[@]}")
    med[$engine$w]=$m
    [ -n "$base" ] || base=$m
    printf '  %-8s %d worker(s) %8.0f jobs/s  ×%.2f of one   (runs: %s)\n' \
      "$engine" "$w" "$m" "$(echo "$m / $base" | bc -l)" "$(printf '%.0f ' "${r[@]}")"
  done
done
for w in 1 2 4; do
  printf '  PostgreSQL/RocksDB at %d worker(s): %.2f\n' "$w" "$(echo "${med[postgres$w]} / ${med[rocksdb$w]}" | bc -l)"
done
