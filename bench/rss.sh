#!/usr/bin/env bash
# Memory: imgate's resident set with SESSIONS concurrent SMTP sessions
# (default 500) against Postfix holding the same sessions (the sum of its
# processes' proportional set sizes, PSS, so shared pages count once), in
# the same run; then imgate's with JOBS queued notification jobs (default
# 10000, for a domain whose agent is down).
#
#   bench/rss.sh [SESSIONS] [JOBS]
#
# Installs Postfix with apt-get if missing; rewrites /etc/postfix/main.cf.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
SESSIONS=${1:-500}
JOBS=${2:-10000}
PORT=${PORT:-2710} # imgate MX, +1 private, +2 public; Postfix +3; a dead agent +4

need postfix:postfix
build_imgate
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

make_work
at_exit "postfix stop"

postfix_base
postconf -e "inet_interfaces = loopback-only" "myhostname = postfix.rss.test" "mynetworks = 127.0.0.0/8" \
  "default_process_limit = $((SESSIONS + 50))" "smtpd_client_connection_count_limit = 0" \
  "smtpd_client_connection_rate_limit = 0" "compatibility_level = 3.6" "maillog_file = /var/log/postfix-bench.log"
postconf -M "$((PORT + 3))/inet=$((PORT + 3)) inet n - n - - smtpd"
postfix_restart

cat > "$work/imgate.toml" <<TOML
hostname = "imgate.rss.test"
data_dir = "$work/imgate-data"
[im2000]
public = ["127.0.0.1:$((PORT + 2))"]
private = ["127.0.0.1:$((PORT + 1))"]
admin = ["127.0.0.1:$((PORT + 5))"]
[smtp]
mx = ["127.0.0.1:$PORT"]
max_sessions = $((SESSIONS + 50))
# Every idle session comes from 127.0.0.1.
max_sessions_per_ip = $((SESSIONS + 50))
verify_sender = false
[notify]
retry_min = "1h"
[peers."down.test"]
notify = "127.0.0.1:$((PORT + 4))"
plain = true
[[domain]]
name = "rss.test"
[[user]]
address = "alice@rss.test"
password = "bench"
[log]
level = "warn"
TOML
start_imgate
wait_port "$((PORT + 1))" && wait_port "$((PORT + 3))" || { cat "$work/imgate.log"; exit 1; }

python3 - "$imgate_pid" "$PORT" "$SESSIONS" "$JOBS" <<'PY'
import base64, glob, os, socket, sys, time, urllib.request
pid, port, sessions, jobs = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])

def status_kib(p, key):
    for l in open(f"/proc/{p}/status"):
        if l.startswith(key + ":"):
            return int(l.split()[1])
    return 0

def pss_kib(p):
    try:
        for l in open(f"/proc/{p}/smaps_rollup"):
            if l.startswith("Pss:"):
                return int(l.split()[1])
    except OSError:
        pass
    return 0

def postfix_pids():
    out = []
    for d in glob.glob("/proc/[0-9]*"):
        try:
            exe = os.readlink(f"{d}/exe")
        except OSError:
            continue
        if exe.startswith("/usr/lib/postfix/") or exe == "/usr/sbin/postfix":
            out.append(int(d.split("/")[-1]))
    return out

def hold(target):
    conns = []
    for _ in range(sessions):
        c = socket.create_connection(("127.0.0.1", target))
        conns.append(c)
    for c in conns:
        c.recv(512)
        c.sendall(b"EHLO rss.example\r\n")
    for c in conns:
        buf = b""
        while not buf.endswith(b"\r\n") or b"250 " not in buf:
            buf += c.recv(4096)
    return conns

base = status_kib(pid, "VmRSS")
conns = hold(port)
time.sleep(1)
im = status_kib(pid, "VmRSS")
for c in conns:
    c.close()
idle_pf = sum(pss_kib(p) for p in postfix_pids())
conns = hold(port + 3)
time.sleep(1)
pf = sum(pss_kib(p) for p in postfix_pids())
n_pf = len(postfix_pids())
for c in conns:
    c.close()
print(f"memory with {sessions} concurrent SMTP sessions (EHLO done, idle)")
print(f"  imgate RSS   {im / 1024:8.1f} MiB  (idle {base / 1024:.1f} MiB, {(im - base) / sessions:.1f} KiB per session)")
print(f"  postfix PSS  {pf / 1024:8.1f} MiB  (idle {idle_pf / 1024:.1f} MiB, {n_pf} processes)")
print(f"  ratio postfix/imgate: {pf / im:.2f}")

# Queued jobs: submissions of 1000 recipients each to a domain whose agent is down.
auth = {"Authorization": "Basic " + base64.b64encode(b"alice@rss.test:bench").decode(), "Content-Type": "message/rfc822"}
body = b"From: alice@rss.test\r\nSubject: queued\r\n\r\n" + b"q" * 4000 + b"\r\n"
sent = 0
while sent < jobs:
    k = min(1000, jobs - sent)
    q = "&".join(f"to=u{sent + i}@down.test" for i in range(k))
    req = urllib.request.Request(f"http://127.0.0.1:{port + 1}/im2000/v1/submissions?{q}", data=body, headers=auth, method="POST")
    urllib.request.urlopen(req).read()
    sent += k
def queued():
    text = urllib.request.urlopen(f"http://127.0.0.1:{port + 5}/metrics").read().decode()
    return sum(int(l.rsplit(" ", 1)[1]) for l in text.splitlines() if l.startswith("imgate_queue_jobs{"))
for _ in range(600):
    if queued() >= jobs:
        break
    time.sleep(0.1)
time.sleep(2)  # at least one attempt at the dead agent
print(f"memory with {queued()} queued notification jobs: imgate RSS {status_kib(pid, 'VmRSS') / 1024:.1f} MiB, peak (VmHWM) {status_kib(pid, 'VmHWM') / 1024:.1f} MiB")
PY
