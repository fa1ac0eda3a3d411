#!/usr/bin/env bash
# IM2000 retrieval against nginx serving the same bodies as static files,
# side by side in one run, with the same wrk load (keep-alive GETs spread
# over MESSAGES different messages of SIZE octets).
#
#   bench/retrieval.sh [MESSAGES] [CONNECTIONS] [SECONDS] [SIZE]   (defaults 100 50 10 4096)
#
# imgate answers GET /im2000/v1/messages/{id}: it looks up the recipient
# record by selector, checks the verifier in constant time and reads the
# body. Two figures, each beside nginx on the same files:
#  - repeat reads: the MESSAGES messages read over and over; the read status
#    is already recorded, so these GETs write nothing;
#  - first reads: FRESH (default 20000) messages never read before, each
#    read once (wrk threads take turns through the list), so every GET also
#    records the read status — a store write (not synced) on the blocking
#    pool. The run stops before the list runs out.
# nginx serves files with sendfile and no access log. Repeat reads: three
# runs each, alternating, medians; first reads: one run each. Ratios
# imgate/nginx are printed.
#
# Installs nginx and wrk with apt-get if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
N=${1:-100}
CONNS=${2:-50}
SECS=${3:-10}
SIZE=${4:-4096}
FRESH=${FRESH:-20000}
PORT=${PORT:-2680} # imgate public; PORT+1 private; PORT+2 nginx

need nginx:nginx wrk:wrk
build_imgate

make_work
at_exit 'kill "$(cat "$work/nginx.pid")"'

cat > "$work/imgate.toml" <<TOML
hostname = "imgate.bench.test"
data_dir = "$work/imgate-data"
[im2000]
public = ["127.0.0.1:$PORT"]
private = ["127.0.0.1:$((PORT + 1))"]
[[domain]]
name = "bench.test"
[[user]]
address = "alice@bench.test"
password = "bench"
[[user]]
address = "bob@bench.test"
password = "bench"
[log]
level = "warn"
TOML
start_imgate
wait_port "$((PORT + 1))" || { cat "$work/imgate.log"; exit 1; }

# N messages alice -> bob; bob's inbox gives their identifiers; the same
# bodies become nginx's files at the same paths.
python3 - "$work" "$PORT" "$N" "$SIZE" "$FRESH" <<'PY'
import base64, concurrent.futures, json, os, sys, time, urllib.request
work, port, n, size, fresh = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
auth = {"Authorization": "Basic " + base64.b64encode(b"alice@bench.test:bench").decode()}
def body_of(i):
    head = f"From: alice@bench.test\r\nTo: bob@bench.test\r\nSubject: bench {i}\r\n\r\n"
    line = ("z" * 78 + "\r\n")
    return (head + line * ((size - len(head)) // len(line) + 1))[:size].encode()
def submit(i):
    req = urllib.request.Request(f"http://127.0.0.1:{port + 1}/im2000/v1/submissions?to=bob@bench.test",
        data=body_of(i), headers={**auth, "Content-Type": "message/rfc822"}, method="POST")
    urllib.request.urlopen(req).read()
submit(0)  # one first: its verified password is then remembered
with concurrent.futures.ThreadPoolExecutor(16) as pool:
    list(pool.map(submit, range(1, n + fresh)))
bob = {"Authorization": "Basic " + base64.b64encode(b"bob@bench.test:bench").decode()}
entries, after = [], "0"
for _ in range(6000):
    req = urllib.request.Request(f"http://127.0.0.1:{port + 1}/im2000/v1/inbox?limit=1000&after={after}", headers=bob)
    page = json.load(urllib.request.urlopen(req))
    entries += page["notifications"]
    after = page["next"]
    if len(entries) >= n + fresh:
        break
    if not page["notifications"]:
        time.sleep(0.1)
# The bodies are what was submitted (a submission is stored as sent); the
# store's first and only read of the fresh ones is the measured one.
os.makedirs(f"{work}/www/im2000/v1/messages")
ids = [e["notification"]["id"] for e in entries]
repeat, first = ids[:n], ids[n:n + fresh]
for i in repeat:
    content = urllib.request.urlopen(f"http://127.0.0.1:{port}/im2000/v1/messages/{i}").read()
    open(f"{work}/www/im2000/v1/messages/{i}", "wb").write(content)
for i in first:
    open(f"{work}/www/im2000/v1/messages/{i}", "wb").write(body_of(0))
open(f"{work}/ids", "w").write("\n".join(repeat) + "\n")
open(f"{work}/fresh", "w").write("\n".join(first) + "\n")
PY

cat > "$work/nginx.conf" <<NGINX
worker_processes auto;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  default_type message/rfc822;
  server {
    listen 127.0.0.1:$((PORT + 2));
    root $work/www;
  }
}
NGINX
nginx -c "$work/nginx.conf"
wait_port "$((PORT + 2))"
# The set-up wrote MESSAGES + FRESH messages: let RocksDB's background
# flushes and compactions finish, or they share the 2 cores with the runs.
sleep "${SETTLE:-20}"

cat > "$work/spread.lua" <<LUA
local ids = {}
for line in io.lines("$work/ids") do ids[#ids + 1] = line end
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", "/im2000/v1/messages/" .. ids[(i % #ids) + 1])
end
LUA

# Each wrk thread walks its own share of the fresh identifiers, once.
cat > "$work/once.lua" <<LUA
local threads = 0
function setup(thread)
  thread:set("first", threads)
  threads = threads + 1
  thread:set("stride", 2)
end
function init(args)
  ids = {}
  for line in io.lines("$work/fresh") do ids[#ids + 1] = line end
  i = first
end
request = function()
  i = i + stride
  return wrk.format("GET", "/im2000/v1/messages/" .. ids[(i % #ids) + 1])
end
LUA

run() { # port -> requests per second
  wrk -t2 -c"$CONNS" -d"${SECS}s" -s "$work/spread.lua" "http://127.0.0.1:$1" | awk '/^Requests\/sec/ {print $2}'
}
first_reads() { # port -> "requests/s requests"
  wrk -t2 -c"$CONNS" -d1s -s "$work/once.lua" "http://127.0.0.1:$1" \
    | awk '/requests in/ {n = $1} /^Requests\/sec/ {r = $2} END {print r, n}'
}
median() { printf '%s\n' "$@" | sort -g | sed -n 2p; }
run "$PORT" >/dev/null; run "$((PORT + 2))" >/dev/null # warm-up
i=(); g=()
for _ in 1 2 3; do
  i+=("$(run "$PORT")")
  g+=("$(run "$((PORT + 2))")")
done
mi=$(median "${i[@]}"); mg=$(median "${g[@]}")
read -r fi fi_n < <(first_reads "$PORT")
read -r fg fg_n < <(first_reads "$((PORT + 2))")
printf 'retrieval: %d octets a message, %d keep-alive connections\n' "$SIZE" "$CONNS"
printf ' repeat reads (%d messages, no store write; %d s per run, median of 3)\n' "$N" "$SECS"
printf '  imgate GET   %9.0f req/s   (runs: %s)\n' "$mi" "$(printf '%.0f ' "${i[@]}")"
printf '  nginx static %9.0f req/s   (runs: %s)\n' "$mg" "$(printf '%.0f ' "${g[@]}")"
printf '  ratio imgate/nginx: %.2f\n' "$(echo "$mi / $mg" | bc -l)"
printf ' first reads (each of %d fresh messages read once; records the read status; 1 s)\n' "$FRESH"
printf '  imgate GET   %9.0f req/s   (%s requests)\n' "$fi" "$fi_n"
printf '  nginx static %9.0f req/s   (%s requests)\n' "$fg" "$fg_n"
printf '  ratio imgate/nginx: %.2f\n' "$(echo "$fi / $fg" | bc -l)"
[ "${fi_n%%.*}" -lt "$FRESH" ] || echo "  (imgate read past the fresh messages: raise FRESH)"
