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
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
RCPTS=${1:-10000}
DOMAINS=${2:-100}
SIZE=${3:-4096}
PORT=${PORT:-2690} # sender public, +1 private, +2 submission; agents +3 public, +4 private
build_imgate

make_work
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

start_imgate agents
start_imgate sender
wait_port "$((PORT + 2))" && wait_port "$((PORT + 4))" || { tail "$work"/*.log; exit 1; }

python3 - "$work" "$PORT" "$SIZE" <<'PY'
import smtplib, sys, time, urllib.request
work, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rcpts = open(f"{work}/rcpts").read().split()
head = "From: alice@one.bench\r\nTo: list-members:;\r\nSubject: fan-out\r\n\r\n"
line = "f" * 78 + "\r\n"
msg = (head + line * (size // len(line) + 1))[:size]
def metric(name, label):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port + 1}/metrics").read().decode()
    for l in text.splitlines():
        if l.startswith(name + "{") and label in l:
            return int(l.rsplit(" ", 1)[1])
    return 0
s = smtplib.SMTP("127.0.0.1", port + 2, timeout=600)
s.login("alice@one.bench", "bench")
t_send = time.time()
s.sendmail("alice@one.bench", rcpts, msg)
t0 = time.time()
s.quit()
while metric("imgate_notifications_sent_total", 'outcome="accepted"') < len(rcpts):
    if time.time() - t0 > 600:
        sys.exit("not every notification was accepted within 600 s")
    time.sleep(0.05)
t1 = time.time()
sent = metric("imgate_peer_bytes_sent_total", 'what="notifications"')
stored = metric("imgate_stored_bytes", 'class="im2000"')
print(f"fan-out: one {size}-octet message to {len(rcpts)} recipients over {len(set(r.split('@')[1] for r in rcpts))} domains")
print(f"  SMTP submission (10k RCPT, DATA, 250): {t0 - t_send:.2f} s")
print(f"  250 -> every notification accepted:     {t1 - t0:.2f} s  ({len(rcpts) / (t1 - t0):.0f} notifications/s)")
print(f"  bytes stored at the sender (bodies):    {stored}  (one copy)")
print(f"  notification request bytes sent:        {sent}  ({sent / len(rcpts):.0f} per recipient)")
domains = len(set(r.split('@')[1] for r in rcpts))
print(f"  SMTP for scale: {domains} copies sent = {domains * size} octets; {len(rcpts)} copies stored = {len(rcpts) * size} octets")
PY
du_b() { du -sb "$1" | cut -f1; }
printf '  on disk: sender %s octets, agents %s octets (RocksDB, WAL included)\n' "$(du_b "$work/sender")" "$(du_b "$work/agents")"
