#!/usr/bin/env bash
# IM2000 retrieval against nginx serving the same bodies as static files,
# side by side in one run, with the same wrk load (keep-alive GETs spread
# over MESSAGES different messages of SIZE octets).
#
#   bench/retrieval.sh [MESSAGES] [CONNECTIONS] [SECONDS] [SIZE]   (defaults 100 50 10 4096)
#
# imgate answers GET /im2000/v1/messages/{id}: it looks up the recipient
# record by selector, checks the verifier in constant time, reads the body
# and records the read status (a write, not synced) — the real path. nginx
# serves files with sendfile and no access log. Three runs each, alternating;
# the median requests per second and the ratio imgate/nginx are printed.
#
# Installs nginx and wrk with apt-get if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
N=${1:-100}
CONNS=${2:-50}
SECS=${3:-10}
SIZE=${4:-4096}
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
python3 - "$work" "$PORT" "$N" "$SIZE" <<'PY'
import base64, json, os, sys, time, urllib.request
work, port, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
auth = {"Authorization": "Basic " + base64.b64encode(b"alice@bench.test:bench").decode()}
for i in range(n):
    head = f"From: alice@bench.test\r\nTo: bob@bench.test\r\nSubject: bench {i}\r\n\r\n"
    line = ("z" * 78 + "\r\n")
    body = (head + line * ((size - len(head)) // len(line) + 1))[:size].encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port + 1}/im2000/v1/submissions?to=bob@bench.test",
        data=body, headers={**auth, "Content-Type": "message/rfc822"}, method="POST")
    urllib.request.urlopen(req).read()
bob = {"Authorization": "Basic " + base64.b64encode(b"bob@bench.test:bench").decode()}
for _ in range(600):
    req = urllib.request.Request(f"http://127.0.0.1:{port + 1}/im2000/v1/inbox?limit=1000", headers=bob)
    entries = json.load(urllib.request.urlopen(req))["notifications"]
    if len(entries) >= n:
        break
    time.sleep(0.1)
ids = [e["notification"]["id"] for e in entries]
os.makedirs(f"{work}/www/im2000/v1/messages")
for i in ids:
    content = urllib.request.urlopen(f"http://127.0.0.1:{port}/im2000/v1/messages/{i}").read()
    open(f"{work}/www/im2000/v1/messages/{i}", "wb").write(content)
open(f"{work}/ids", "w").write("\n".join(ids) + "\n")
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

cat > "$work/spread.lua" <<LUA
local ids = {}
for line in io.lines("$work/ids") do ids[#ids + 1] = line end
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", "/im2000/v1/messages/" .. ids[(i % #ids) + 1])
end
LUA

run() { # port -> requests per second
  wrk -t2 -c"$CONNS" -d"${SECS}s" -s "$work/spread.lua" "http://127.0.0.1:$1" | awk '/^Requests\/sec/ {print $2}'
}
median() { printf '%s\n' "$@" | sort -g | sed -n 2p; }
run "$PORT" >/dev/null; run "$((PORT + 2))" >/dev/null # warm-up
i=(); g=()
for _ in 1 2 3; do
  i+=("$(run "$PORT")")
  g+=("$(run "$((PORT + 2))")")
done
mi=$(median "${i[@]}"); mg=$(median "${g[@]}")
printf 'retrieval: %d messages of %d octets, %d keep-alive connections, %d s per run (median of 3)\n' "$N" "$SIZE" "$CONNS" "$SECS"
printf '  imgate GET   %9.0f req/s   (runs: %s)\n' "$mi" "$(printf '%.0f ' "${i[@]}")"
printf '  nginx static %9.0f req/s   (runs: %s)\n' "$mg" "$(printf '%.0f ' "${g[@]}")"
printf '  ratio imgate/nginx: %.2f\n' "$(echo "$mi / $mg" | bc -l)"
