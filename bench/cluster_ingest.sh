#!/usr/bin/env bash
# SMTP ingest into one PostgreSQL database: one imgate node against two
# nodes sharing it, side by side in one run.
#
#   bench/cluster_ingest.sh [MESSAGES] [SESSIONS] [SIZE]     (defaults 2000 20 4096)
#
# The path measured: smtp-source → imgate MX → the message stored (one
# PostgreSQL transaction, fsynced before 250) → its notification filed in
# the local inbox by whichever node's worker takes the job. "One node":
# all SESSIONS against node A. "Two nodes": the same messages split over
# A's and B's MX at once (SESSIONS/2 each). Sender checks are off. Each is
# run three times; medians and the ratio two/one are printed. On one
# machine both nodes and the database share the same cores and disk: this
# shows what a second node costs or gains here, not how a cluster of
# machines scales.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
N=${1:-2000}
SESSIONS=${2:-20}
SIZE=${3:-4096}
PORT=${IMGATE_PORT:-2725}

need postfix:smtp-source
SOURCE=$(command -v smtp-source || echo /usr/sbin/smtp-source)
build_imgate
make_work
start_postgres $((PORT + 40))

node() { # name port
  cat > "$work/$1.toml" <<TOML
hostname = "$1.bench.test"
data_dir = "$work/$1-data"
[im2000]
public = ["127.0.0.1:0"]
private = ["127.0.0.1:$(($2 + 2))"]
# The runs file 12,050 notifications for one user: above the default cap.
max_inbox = 100000
[smtp]
mx = ["127.0.0.1:$2"]
max_sessions = 1000
verify_sender = false
[store]
backend = "postgres"
url = "$PG_URL"
max_connections = 32
[[domain]]
name = "bench.test"
[[user]]
address = "sink@bench.test"
password = "unused-in-this-benchmark"
[log]
level = "warn"
TOML
  start_imgate "$1"
  wait_port "$2" || { cat "$work/$1.log"; exit 1; }
}
node a "$PORT"
node b $((PORT + 10))

one() {
  local start end
  start=$(date +%s.%N)
  "$SOURCE" -s "$SESSIONS" -l "$SIZE" -m "$N" -f bench@example.org -t sink@bench.test "127.0.0.1:$PORT"
  end=$(date +%s.%N)
  echo "$N / ($end - $start)" | bc -l
}
two() {
  local start end half=$((N / 2))
  start=$(date +%s.%N)
  "$SOURCE" -s $((SESSIONS / 2)) -l "$SIZE" -m "$half" -f bench@example.org -t sink@bench.test "127.0.0.1:$PORT" &
  local first=$!
  "$SOURCE" -s $((SESSIONS / 2)) -l "$SIZE" -m "$half" -f bench@example.org -t sink@bench.test "127.0.0.1:$((PORT + 10))"
  wait "$first"
  end=$(date +%s.%N)
  echo "$((2 * half)) / ($end - $start)" | bc -l
}
median() { printf '%s\n' "$@" | sort -g | sed -n 2p; }

"$SOURCE" -s 2 -l "$SIZE" -m 50 -f bench@example.org -t sink@bench.test "127.0.0.1:$PORT"   # warm-up
o=(); t=()
for _ in 1 2 3; do
  o+=("$(one)")
  t+=("$(two)")
done
mo=$(median "${o[@]}"); mt=$(median "${t[@]}")
printf 'cluster ingest on one PostgreSQL: %d messages of %d octets over %d sessions (median of 3)\n' "$N" "$SIZE" "$SESSIONS"
printf '  one node   %8.0f msg/s   (runs: %s)\n' "$mo" "$(printf '%.0f ' "${o[@]}")"
printf '  two nodes  %8.0f msg/s   (runs: %s)\n' "$mt" "$(printf '%.0f ' "${t[@]}")"
printf '  ratio two/one: %.2f\n' "$(echo "$mt / $mo" | bc -l)"

# Every acknowledged message became a notification, whichever node took it.
want=$((3 * N + 3 * (N / 2) * 2 + 50))
for _ in $(seq 300); do
  count=$("$IMGATE" inbox --config "$work/a.toml" --json sink@bench.test 2>/dev/null \
    | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))' || echo 0)
  [ "$count" -ge "$want" ] && break
  sleep 1
done
printf '  notifications filed: %d of %d acknowledged\n' "$count" "$want"
[ "$count" -eq "$want" ] || { echo "MISMATCH" >&2; tail -5 "$work/a.log" "$work/b.log"; exit 1; }
