#!/usr/bin/env bash
# List fan-out: one message to RECIPIENTS recipients spread over DOMAINS
# domains (defaults 10000 over 100), sent once by SMTP submission to the
# sender's gateway. Measured: the time from the 250 until every
# notification is accepted by its agent (one imgate node serving all the
# domains, reached over HTTP), the bytes stored at the sender (one body) and
# on disk at each side, and the bytes of notification requests sent.
#
#   bench/fanout.sh [RECIPIENTS] [DOMAINS] [SIZE]   (defaults 10000 100 4096)
#
# For scale, the same fan-out by SMTP would carry the SIZE-octet message once
# per recipient domain (DOMAINS copies over the network) and store it once
# per recipient (RECIPIENTS copies in the mailboxes); the script prints those
# figures next to the measured ones.
#
# The anchor, in the same run: a durable Postfix given the same message for
# the same recipients by SMTP, delivering every recipient's copy to
# smtp-sink (all domains relayed to it, Postfix's smarthost case). Both are
# sent the transaction the same way, pipelined as a list server sends it
# (bench/pipelined_send.py). Measured from MAIL FROM to the last recipient
# logged `status=sent`; imgate from MAIL FROM to the last notification
# accepted.
# The sender's store is measured twice in the same run: on its embedded
# RocksDB, then (on the same ports, the same agents) on a local PostgreSQL
# server (fsync on, no standby; FANOUT_POSTGRES=0 skips it).
# Every total is printed with its ratio. Installs Postfix with apt-get and
# rewrites /etc/postfix/main.cf: run as root on a machine you may reconfigure.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
RCPTS=${1:-10000}
DOMAINS=${2:-100}
SIZE=${3:-4096}
PORT=${PORT:-2690} # sender public, +1 private, +2 submission, +5 admin; agents +3 public, +4 private
need postfix:smtp-sink
SINK_BIN=$(command -v smtp-sink || echo /usr/sbin/smtp-sink)
build_imgate

make_work
at_exit "postfix stop"
HASH=$(echo bench | "$IMGATE" hash-password)

python3 - "$work" "$PORT" "$RCPTS" "$DOMAINS" "$HASH" <<'PY'
import sys
work, port, rcpts, domains, h = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
per = -(-rcpts // domains)
sender = f'''hostname = "one.bench"
data_dir = "{work}/sender"
[im2000]
public = ["127.0.0.1:{port}"]
private = ["127.0.0.1:{port + 1}"]
admin = ["127.0.0.1:{port + 5}"]
[smtp]
submission = ["127.0.0.1:{port + 2}"]
submission_plaintext = true
max_recipients = {rcpts}
[notify]
batch_size = 1000
[log]
level = "warn"
[[domain]]
name = "one.bench"
[[user]]
address = "alice@one.bench"
password_hash = "{h}"
'''
agents = f'''hostname = "agents.bench"
data_dir = "{work}/agents"
[im2000]
public = ["127.0.0.1:{port + 3}"]
private = ["127.0.0.1:{port + 4}"]
[log]
level = "warn"
[peers."one.bench"]
store = "127.0.0.1:{port}"
plain = true
'''
for d in range(domains):
    sender += f'[peers."d{d}.bench"]\nnotify = "127.0.0.1:{port + 3}"\nplain = true\n'
    agents += f'[[domain]]\nname = "d{d}.bench"\n'
users = []
for i in range(rcpts):
    d, u = i % domains, i // domains
    agents += f'[[user]]\naddress = "u{u}@d{d}.bench"\npassword_hash = "{h}"\n'
    users.append(f"u{u}@d{d}.bench")
open(f"{work}/sender.toml", "w").write(sender)
open(f"{work}/agents.toml", "w").write(agents)
open(f"{work}/rcpts", "w").write("\n".join(users))
PY

# Measures one fan-out through the sender running now; LABEL names its store.
measure() {
python3 - "$work" "$PORT" "$SIZE" "$1" <<'PY'
import sys, time, urllib.request
sys.path.insert(0, "bench")
from pipelined_send import list_message, send
work, port, size, label = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
rcpts = open(f"{work}/rcpts").read().split()
msg = list_message("alice@one.bench", size)
def metric(name, label):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port + 5}/metrics").read().decode()
    for l in text.splitlines():
        if l.startswith(name + "{") and label in l:
            return int(l.rsplit(" ", 1)[1])
    return 0
t_send = time.time()
took = send(port + 2, "alice@one.bench", rcpts, msg, login=("alice@one.bench", "bench"))
t_send = time.time() - took  # from MAIL FROM, after the login
t0 = time.time()
while metric("imgate_notifications_sent_total", 'outcome="accepted"') < len(rcpts):
    if time.time() - t0 > 600:
        sys.exit("not every notification was accepted within 600 s")
    time.sleep(0.05)
t1 = time.time()
sent = metric("imgate_peer_bytes_sent_total", 'what="notifications"')
stored = metric("imgate_stored_bytes", 'class="im2000"')
print(f"fan-out, the sender on {label}: one {size}-octet message to {len(rcpts)} recipients over {len(set(r.split('@')[1] for r in rcpts))} domains")
print(f"  SMTP submission ({len(rcpts)} RCPT, DATA, 250): {t0 - t_send:.2f} s")
print(f"  250 -> every notification accepted:     {t1 - t0:.2f} s  ({len(rcpts) / (t1 - t0):.0f} notifications/s)")
print(f"  bytes stored at the sender (bodies):    {stored}  (one copy)")
print(f"  notification request bytes sent:        {sent}  ({sent / len(rcpts):.0f} per recipient)")
domains = len(set(r.split('@')[1] for r in rcpts))
print(f"  SMTP for scale: {domains} copies sent = {domains * size} octets; {len(rcpts)} copies stored = {len(rcpts) * size} octets")
print(f"  imgate total (MAIL FROM -> last notification accepted): {t1 - t_send:.2f} s")
open(f"{work}/total_{label}", "w").write(f"{t1 - t_send}")
PY
}

start_imgate agents
start_imgate sender
wait_port "$((PORT + 2))" && wait_port "$((PORT + 4))" || { tail "$work"/*.log; exit 1; }
measure RocksDB
du_b() { du -sb "$1" | cut -f1; }
printf '  on disk: sender %s octets, agents %s octets (RocksDB, WAL included)\n' "$(du_b "$work/sender")" "$(du_b "$work/agents")"
kill "$imgate_pid"; wait "$imgate_pid" || true

if [ "${FANOUT_POSTGRES:-1}" != 0 ]; then
  start_postgres $((PORT + 20))
  sed "s|^data_dir = .*|data_dir = \"$work/sender-pg\"|" "$work/sender.toml" > "$work/sender-pg.toml"
  printf '[store]\nbackend = "postgres"\nurl = "%s"\n' "$PG_URL" >> "$work/sender-pg.toml"
  start_imgate sender-pg
  wait_port "$((PORT + 2))" || { tail "$work"/sender-pg.log; exit 1; }
  measure PostgreSQL
  kill "$imgate_pid"; wait "$imgate_pid" || true
fi

# --- the anchor: Postfix delivering the same fan-out to smtp-sink ---------
SINK=$((PORT + 6)); PF=$((PORT + 7))
"$SINK_BIN" -u nobody -c "127.0.0.1:$SINK" 1000 >/dev/null &
at_exit "kill $!"
postfix_base
postconf -e "inet_interfaces = loopback-only" "mydestination =" "myhostname = postfix.fanout.bench" \
  "mynetworks = 127.0.0.0/8" "smtpd_recipient_restrictions = permit_mynetworks, reject" \
  "smtpd_recipient_limit = $((RCPTS + 10))" "default_transport = smtp:[127.0.0.1]:$SINK" \
  "relay_transport = smtp:[127.0.0.1]:$SINK" "default_process_limit = 200" \
  "smtpd_client_connection_rate_limit = 0" "compatibility_level = 3.6" \
  "maillog_file = /var/log/postfix-fanout.log"
postconf -M "${PF}/inet=${PF} inet n - n - - smtpd"
: > /var/log/postfix-fanout.log
postfix_restart
wait_port "$PF" && wait_port "$SINK" || { echo "postfix or smtp-sink did not start" >&2; exit 1; }
python3 - "$work" "$PF" "$SIZE" <<'PY'
import sys, time
sys.path.insert(0, "bench")
from pipelined_send import list_message, send
work, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rcpts = open(f"{work}/rcpts").read().split()
msg = list_message("alice@one.bench", size)
def sent():
    return sum(1 for l in open("/var/log/postfix-fanout.log", errors="replace") if "status=sent" in l)
took = send(port, "alice@one.bench", rcpts, msg)
t_send = time.time() - took
t0 = time.time()
while sent() < len(rcpts):
    if time.time() - t0 > 600:
        sys.exit(f"postfix sent {sent()} of {len(rcpts)} within 600 s")
    time.sleep(0.05)
t1 = time.time()
import glob
print(f"postfix: the same message to the same {len(rcpts)} recipients, delivered to smtp-sink")
print(f"  SMTP submission ({len(rcpts)} RCPT, DATA, 250): {t0 - t_send:.2f} s")
print(f"  250 -> every recipient sent:                {t1 - t0:.2f} s")
print(f"  postfix total (MAIL FROM -> last status=sent): {t1 - t_send:.2f} s")
for path in sorted(glob.glob(f"{work}/total_*")):
    label, ours = path.rsplit("total_", 1)[1], float(open(path).read())
    print(f"fan-out ratio, postfix time / imgate time, the sender on {label}: {(t1 - t_send) / ours:.2f}  (above 1: imgate is ahead)")
PY
