#!/usr/bin/env bash
# The cost of DKIM signing on the relay path, side by side in one run.
#
#   bench/dkim_sign.sh [MESSAGES] [SIZE]     (defaults: 2000 messages of 4 KiB)
#
# Path measured: a user's IM2000 messages to a legacy-routed domain whose
# legacy host is Postfix's smtp-sink. All MESSAGES are submitted first (HTTP
# API) with the queue paused; the clock runs from `queue resume` until every
# delivery is recorded as delivered: pull from the node's own store, digest
# check, render, sign (or not), SMTP to smtp-sink, record, report. Three
# nodes, one after the other, identical but for their keys: none, one RSA
# 2048 key, and RSA + Ed25519 (two signatures per message). Release build.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

MESSAGES=${1:-2000}
SIZE=${2:-4096}
PORT=${PORT:-2790}
need postfix:smtp-sink
SINK_BIN=$(command -v smtp-sink || echo /usr/sbin/smtp-sink)
build_imgate
make_work

SINK=$((PORT + 9))
"$SINK_BIN" -u nobody "127.0.0.1:$SINK" 1000 >/dev/null 2>&1 &
at_exit "kill $!"
"$IMGATE" dkim-keygen --domain one.bench --selector rsa --out "$work/rsa.pem" >/dev/null
"$IMGATE" dkim-keygen --domain one.bench --selector ed --algorithm ed25519 --out "$work/ed.pem" >/dev/null

run() { # name, extra [[domain]] keys for one.bench
  local name=$1 keys=$2
  cat > "$work/$name.toml" <<TOML
hostname = "one.bench"
data_dir = "$work/$name"
[im2000]
private = ["127.0.0.1:$((PORT + 1))"]
admin = ["127.0.0.1:$((PORT + 2))"]
[smtp]
relay_concurrency = 20
[store]
quota = "4GiB"
[log]
level = "warn"
[[domain]]
name = "one.bench"
$keys
[[domain]]
name = "legacy.bench"
route = "legacy"
legacy_host = "127.0.0.1:$SINK"
[[user]]
address = "alice@one.bench"
password = "bench"
[[user]]
address = "ops@one.bench"
password = "ops"
admin = true
TOML
  start_imgate "$name"
  wait_port "$((PORT + 1))" || { tail "$work/$name.log"; exit 1; }
  "$IMGATE" queue --config "$work/$name.toml" --user ops@one.bench pause >/dev/null
  python3 - "$PORT" "$MESSAGES" "$SIZE" "$name" "$IMGATE" "$work/$name.toml" <<'PY'
import base64, concurrent.futures, subprocess, sys, time, urllib.request
port, n, size, name, imgate, config = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
auth = "Basic " + base64.b64encode(b"alice@one.bench:bench").decode()
head = "From: alice@one.bench\r\nTo: r@legacy.bench\r\nSubject: relay {i}\r\nDate: Tue, 1 Dec 2026 00:00:00 +0000\r\nMessage-ID: <{i}@one.bench>\r\n\r\n"
line = "s" * 78 + "\r\n"
def submit(i):
    msg = head.format(i=i)
    msg = (msg + line * (size // len(line) + 1))[:size]
    req = urllib.request.Request(f"http://127.0.0.1:{port + 1}/im2000/v1/submissions?to=r{i}@legacy.bench",
                                 data=msg.encode(), headers={"authorization": auth, "content-type": "message/rfc822"})
    urllib.request.urlopen(req).read()
with concurrent.futures.ThreadPoolExecutor(8) as pool:
    list(pool.map(submit, range(n)))
def delivered():
    text = urllib.request.urlopen(f"http://127.0.0.1:{port + 2}/metrics").read().decode()
    for l in text.splitlines():
        if l.startswith("imgate_smtp_deliveries_total{") and 'outcome="delivered"' in l:
            return int(l.rsplit(" ", 1)[1])
    return 0
t0 = time.time()
subprocess.run([imgate, "queue", "--config", config, "--user", "ops@one.bench", "resume"], check=True, capture_output=True)
while delivered() < n:
    if time.time() - t0 > 600:
        sys.exit(f"{name}: not every delivery done within 600 s")
    time.sleep(0.05)
took = time.time() - t0
print(f"  {name:<12} {n} deliveries in {took:.2f} s = {n / took:.0f} msg/s")
open(sys.argv[6] + ".rate", "w").write(f"{n / took}")
PY
  kill "$imgate_pid"; wait "$imgate_pid" 2>/dev/null || true
  # The next node takes the same ports.
  sleep 1
}

echo "DKIM signing cost: $MESSAGES messages of $SIZE octets, IM2000 -> legacy host (smtp-sink), relay_concurrency 20"
run unsigned ""
run rsa "$(printf '[[domain.dkim]]\nselector = "rsa"\nkey = "%s"' "$work/rsa.pem")"
run rsa+ed25519 "$(printf '[[domain.dkim]]\nselector = "rsa"\nkey = "%s"\n[[domain.dkim]]\nselector = "ed"\nkey = "%s"' "$work/rsa.pem" "$work/ed.pem")"
python3 - "$work" <<'PY'
import sys
w = sys.argv[1]
r = {n: float(open(f"{w}/{n}.toml.rate").read()) for n in ["unsigned", "rsa", "rsa+ed25519"]}
print(f"ratio signed/unsigned: rsa {r['rsa'] / r['unsigned']:.2f}, rsa+ed25519 {r['rsa+ed25519'] / r['unsigned']:.2f}")
PY
