#!/usr/bin/env bash
# End-to-end latency of one message at a time: SMTP 250 → the notification
# in the recipient's inbox → the message fetched, p50 and p99 over MESSAGES
# messages (default 300) of SIZE octets (default 4096), against Postfix
# delivering the same messages into a Maildir (250 → the file in new/ →
# read), in the same run.
#
#   bench/latency.sh [MESSAGES] [SIZE]
#
# The client keeps one SMTP session and one HTTP keep-alive connection per
# listener, and polls (inbox API / Maildir) every millisecond. Installs
# Postfix with apt-get if missing; rewrites /etc/postfix/main.cf.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
N=${1:-300}
SIZE=${2:-4096}
PORT=${PORT:-2700} # imgate MX, +1 private, +2 public; Postfix +3

need postfix:postfix
build_imgate

make_work
chmod 755 "$work"
at_exit "postfix stop"

# --- Postfix: lat.test delivered by virtual(8) into a Maildir ---------------
postfix_base
mkdir -p "$work/vmail"
chown 5000:5000 "$work/vmail"
postconf -e "inet_interfaces = loopback-only" "myhostname = postfix.lat.test" "mynetworks = 127.0.0.0/8" \
  "virtual_mailbox_domains = lat.test" "virtual_mailbox_base = $work/vmail" \
  "virtual_mailbox_maps = static:bob/" "virtual_uid_maps = static:5000" "virtual_gid_maps = static:5000" \
  "virtual_minimum_uid = 100" "smtpd_recipient_restrictions = permit_mynetworks, reject" \
  "compatibility_level = 3.6" "maillog_file = /var/log/postfix-bench.log"
postconf -M "$((PORT + 3))/inet=$((PORT + 3)) inet n - n - - smtpd"
postfix_restart

# --- imgate: MX for lat.test, bob reads his inbox ---------------------------
cat > "$work/imgate.toml" <<TOML
hostname = "imgate.lat.test"
data_dir = "$work/imgate-data"
[im2000]
public = ["127.0.0.1:$((PORT + 2))"]
private = ["127.0.0.1:$((PORT + 1))"]
[smtp]
mx = ["127.0.0.1:$PORT"]
verify_sender = false
[[domain]]
name = "lat.test"
[[user]]
address = "bob@lat.test"
password = "bench"
[log]
level = "warn"
TOML
start_imgate
wait_port "$((PORT + 1))" && wait_port "$((PORT + 3))" || { cat "$work/imgate.log"; exit 1; }

python3 - "$work" "$PORT" "$N" "$SIZE" <<'PY'
import base64, http.client, json, os, smtplib, sys, time
work, port, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
line = "l" * 78 + "\r\n"
def message(i):
    head = f"From: someone@example.org\r\nTo: bob@lat.test\r\nSubject: latency {i}\r\n\r\n"
    return (head + line * (size // len(line) + 1))[:size]
auth = {"Authorization": "Basic " + base64.b64encode(b"bob@lat.test:bench").decode()}
private = http.client.HTTPConnection("127.0.0.1", port + 1)
public = http.client.HTTPConnection("127.0.0.1", port + 2)
def get(conn, path, headers={}):
    conn.request("GET", path, headers=headers)
    r = conn.getresponse()
    return r.status, r.read()

cursor, seen = "", set()

def imgate(count):
    global cursor
    s = smtplib.SMTP("127.0.0.1", port)
    out = []
    for i in range(count):
        t0 = time.perf_counter()
        s.sendmail("someone@example.org", ["bob@lat.test"], message(i))
        t1 = time.perf_counter()
        while True:
            _, body = get(private, f"/im2000/v1/inbox?after={cursor}", auth)
            page = json.loads(body)
            if page["notifications"]:
                break
            time.sleep(0.001)
        t2 = time.perf_counter()
        cursor = page["next"]
        status, content = get(public, "/im2000/v1/messages/" + page["notifications"][0]["notification"]["id"])
        assert status == 200 and len(content) > size
        out.append((t1 - t0, t2 - t0, time.perf_counter() - t0))
    s.quit()
    return out

def postfix(count):
    s = smtplib.SMTP("127.0.0.1", port + 3)
    new = f"{work}/vmail/bob/new"
    out = []
    for i in range(count):
        t0 = time.perf_counter()
        s.sendmail("someone@example.org", ["bob@lat.test"], message(i))
        t1 = time.perf_counter()
        while True:
            files = set(os.listdir(new)) - seen if os.path.isdir(new) else set()
            if files:
                break
            time.sleep(0.001)
        t2 = time.perf_counter()
        f = files.pop()
        seen.add(f)
        content = open(f"{new}/{f}", "rb").read()
        assert len(content) > size
        out.append((t1 - t0, t2 - t0, time.perf_counter() - t0))
    s.quit()
    return out

def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))] * 1000

imgate(20), postfix(20)  # warm-up
a, b = imgate(n), postfix(n)
print(f"latency: {n} messages of {size} octets, one at a time (ms)")
print(f"  {'':28} {'p50':>8} {'p99':>8}   {'postfix p50':>11} {'p99':>8}   ratio p50 (postfix/imgate)")
for k, name in enumerate(["250", "in the inbox / Maildir", "fetched / read"]):
    ia, ib = [x[k] for x in a], [x[k] for x in b]
    print(f"  {name:28} {pct(ia, 50):8.2f} {pct(ia, 99):8.2f}   {pct(ib, 50):11.2f} {pct(ib, 99):8.2f}   {pct(ib, 50) / pct(ia, 50):.2f}")
PY
