#!/usr/bin/env bash
# IMAP: imgate's IMAP service against Dovecot on a Maildir holding the same
# messages, side by side in one run, measured by the same raw-socket client
# (bench/imap_client.py).
#
#   bench/imap.sh [MESSAGES] [SIZE] [HOLD]     (defaults 10000 4096 1000)
#
# imgate: two nodes on loopback. two.bench is the recipients' node (agent,
# MX, IMAP); one.bench is another domain's store. bob@two.bench's INBOX gets
# MESSAGES messages of SIZE octets through the MX (stored on his own node:
# reading them is a store read, no pull). carol@two.bench gets 200 from
# alice@one.bench over IM2000: reading one the first time pulls it from
# one.bench's store (HTTP, digest checked, then cached); a second read is
# served from the cache. Dovecot 2.3 (Debian): the same MESSAGES messages
# as files in bob's Maildir, plain-text IMAP on loopback, its own indexes
# built at the first SELECT.
#
# Figures (medians of RUNS=5 fresh connections each):
#  - listing: SELECT INBOX, and UID FETCH 1:* (FLAGS RFC822.SIZE ENVELOPE).
#    The medians are warm for both: Dovecot answers from its index files,
#    imgate from what its sessions share in memory (the folder as read, kept
#    while the mailbox is unchanged; envelopes parsed before). The first
#    run of each (Dovecot building its index; imgate reading every stored
#    message, parsing its header, and recording the read) is shown apart;
#  - BODY[] of one message: imgate's first read (a pull from the remote
#    store), imgate's second (cached), Dovecot's;
#  - IDLE: from a message being delivered to the client reading EXISTS.
#    imgate: from the MX's 250 (stored, notification queued; the worker then
#    notifies the agent on the same node, which files it) — an upper bound
#    of filed-to-EXISTS. Dovecot: from the rename into Maildir/new;
#  - memory: the summed RSS of the server's processes with HOLD idle
#    connections (logged in, INBOX selected, IDLE) against none.
# Ratios imgate/Dovecot are printed (time: lower is better).
#
# Installs dovecot-imapd with apt-get if missing; runs Dovecot from a
# configuration of its own (the packaged service stays stopped).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
N=${1:-10000}
SIZE=${2:-4096}
HOLD=${3:-1000}
RUNS=${RUNS:-5}
PORT=${PORT:-2700} # one.bench public PORT, two.bench public PORT+1, private +2, MX +3, IMAP +4; Dovecot +5

need dovecot-imapd:dovecot
systemctl stop dovecot >/dev/null 2>&1 || true
pkill -x dovecot || true
build_imgate
make_work
ulimit -n "$(ulimit -Hn)"
chmod 755 "$work"
at_exit 'kill "$(cat "$work/dovecot-run/master.pid")"'

PA=$PORT PB=$((PORT + 1)) PRIV=$((PORT + 2)) MX=$((PORT + 3)) IMAP=$((PORT + 4)) DOVE=$((PORT + 5))
cat > "$work/one.toml" <<TOML
hostname = "one.bench"
data_dir = "$work/one-data"
[im2000]
public = ["127.0.0.1:$PA"]
private = ["127.0.0.1:$((PORT + 6))"]
[peers."two.bench"]
notify = "127.0.0.1:$PB"
plain = true
[[domain]]
name = "one.bench"
[[user]]
address = "alice@one.bench"
password = "alice-pw"
quota = "10GiB"
TOML
cat > "$work/two.toml" <<TOML
hostname = "two.bench"
data_dir = "$work/two-data"
[im2000]
public = ["127.0.0.1:$PB"]
private = ["127.0.0.1:$PRIV"]
max_inbox = 1000000
[smtp]
mx = ["127.0.0.1:$MX"]
verify_sender = false
sender_quota = "10GiB"
sender_domain_quota = "10GiB"
max_sessions_per_ip = 500
[imap]
listen = ["127.0.0.1:$IMAP"]
plaintext = true
max_sessions = 10000
max_sessions_per_ip = 10000
[peers."one.bench"]
store = "127.0.0.1:$PA"
plain = true
[[domain]]
name = "two.bench"
[[user]]
address = "bob@two.bench"
password = "bob-pw"
[[user]]
address = "carol@two.bench"
password = "carol-pw"
TOML
"$IMGATE" serve --config "$work/one.toml" >"$work/one.log" 2>&1 &
at_exit "kill $!"
"$IMGATE" serve --config "$work/two.toml" >"$work/two.log" 2>&1 &
at_exit "kill $!"
wait_port "$PA" && wait_port "$MX" && wait_port "$IMAP"

# --- Dovecot on a Maildir ------------------------------------------------
mkdir -p "$work/maildir"/{new,cur,tmp} "$work/dovecot-run" "$work/dovecot-state" "$work/dovehome"
echo "bob@two.bench:{PLAIN}bob-pw" > "$work/dovecot.passwd"
cat > "$work/dovecot.conf" <<CONF
protocols = imap
listen = 127.0.0.1
base_dir = $work/dovecot-run
state_dir = $work/dovecot-state
log_path = $work/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
first_valid_uid = 1
mail_location = maildir:$work/maildir
mail_max_userip_connections = 10000
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $work/dovecot.passwd
}
userdb {
  driver = static
  args = uid=dovecot gid=dovecot home=$work/dovehome
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $DOVE
  }
  inet_listener imaps {
    port = 0
  }
  service_count = 0
  client_limit = 10000
  process_limit = 4
}
service imap {
  process_limit = 10000
}
service anvil {
  client_limit = 30000
}
service auth {
  client_limit = 30000
}
default_client_limit = 20000
CONF

# --- the messages: the same octets into both ------------------------------
echo "bench: $N messages of $SIZE octets into imgate (SMTP to its MX) and Dovecot's Maildir" >&2
python3 - "$N" "$SIZE" "$MX" "$work/maildir" <<'PY'
import concurrent.futures, os, smtplib, sys, time
n, size, port, maildir = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def message(i):
    head = (f"From: Sender {i % 97} <sender{i % 97}@bench.org>\r\nTo: bob@two.bench\r\n"
            f"Subject: bench message {i}\r\nMessage-ID: <{i}.bench@bench.org>\r\n"
            f"Date: Tue, 01 Dec 2026 10:{i // 60 % 60:02d}:{i % 60:02d} +0000\r\n\r\n")
    line = "The quick brown fox jumps over the lazy dog, again and again.\r\n"
    body = (line * (size // len(line) + 1))[: max(0, size - len(head))]
    return (head + body).encode()
for i in range(n):
    with open(f"{maildir}/new/{1796000000 + i}.{i}.bench", "wb") as f:
        f.write(message(i))
def send(chunk):
    s = smtplib.SMTP("127.0.0.1", port)
    for i in chunk:
        s.sendmail(f"sender{i % 97}@bench.org", ["bob@two.bench"], message(i))
    s.quit()
with concurrent.futures.ThreadPoolExecutor(10) as ex:
    list(ex.map(send, [range(k, n, 10) for k in range(10)]))
PY
chown -R dovecot:dovecot "$work/maildir" "$work/dovehome"
dovecot -c "$work/dovecot.conf"
wait_port "$DOVE"

# carol's 200, from another domain's store.
python3 - "$((PORT + 6))" "$SIZE" <<'PY'
import base64, concurrent.futures, sys, urllib.request
port, size = int(sys.argv[1]), int(sys.argv[2])
auth = "Basic " + base64.b64encode(b"alice@one.bench:alice-pw").decode()
def submit(i):
    body = (f"From: alice@one.bench\r\nTo: carol@two.bench\r\nSubject: pulled {i}\r\n\r\n" + "x" * size + "\r\n").encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/im2000/v1/submissions?to=carol@two.bench", data=body,
                                 headers={"authorization": auth, "content-type": "message/rfc822"})
    assert urllib.request.urlopen(req).status == 201
with concurrent.futures.ThreadPoolExecutor(8) as ex:
    list(ex.map(submit, range(200)))
PY

# Wait until every message is filed (the MX's notifications are queued).
count_inbox() {
  python3 - "$IMAP" "$1" "$2" <<'PY'
import imaplib, sys
m = imaplib.IMAP4("127.0.0.1", int(sys.argv[1])); m.login(sys.argv[2], sys.argv[3])
print(int(m.select("INBOX")[1][0]))
PY
}
for _ in $(seq 600); do
  [ "$(count_inbox bob@two.bench bob-pw)" -ge "$N" ] && [ "$(count_inbox carol@two.bench carol-pw)" -ge 200 ] && break
  sleep 0.5
done
echo "bench: filed; measuring" >&2

C="python3 bench/imap_client.py"
dove_first=$($C listing 127.0.0.1 "$DOVE" bob@two.bench bob-pw 1)
imgate_list=$($C listing 127.0.0.1 "$IMAP" bob@two.bench bob-pw "$RUNS")
dove_list=$($C listing 127.0.0.1 "$DOVE" bob@two.bench bob-pw "$RUNS")
imgate_bodies=$($C bodies 127.0.0.1 "$IMAP" carol@two.bench carol-pw 200)
dove_bodies=$($C bodies 127.0.0.1 "$DOVE" bob@two.bench bob-pw 200)

cat > "$work/deliver-imgate.py" <<PY
import smtplib, time
s = smtplib.SMTP("127.0.0.1", $MX)
s.sendmail("idle@bench.org", ["bob@two.bench"], b"From: idle@bench.org\r\nSubject: idle\r\n\r\nping\r\n")
print(time.time())
s.quit()
PY
cat > "$work/deliver-dovecot.py" <<PY
import os, time, random
name = f"{time.time():.6f}.{random.randrange(1 << 30)}.idle"
tmp = "$work/maildir/tmp/" + name
with open(tmp, "wb") as f:
    f.write(b"From: idle@bench.org\r\nSubject: idle\r\n\r\nping\r\n")
os.chown(tmp, $(id -u dovecot), $(id -g dovecot))
os.rename(tmp, "$work/maildir/new/" + name)
print(time.time())
PY
imgate_idle=$($C idle 127.0.0.1 "$IMAP" bob@two.bench bob-pw 20 python3 "$work/deliver-imgate.py")
dove_idle=$($C idle 127.0.0.1 "$DOVE" bob@two.bench bob-pw 20 python3 "$work/deliver-dovecot.py")

imgate_hold=$($C hold 127.0.0.1 "$IMAP" carol@two.bench carol-pw "$HOLD" "^$IMGATE serve --config $work/two.toml")
dove_hold=$($C hold 127.0.0.1 "$DOVE" bob@two.bench bob-pw "$HOLD" "^(/usr/sbin/)?dovecot")

python3 - "$N" "$SIZE" "$HOLD" "$dove_first" "$imgate_list" "$dove_list" "$imgate_bodies" "$dove_bodies" \
  "$imgate_idle" "$dove_idle" "$imgate_hold" "$dove_hold" <<'PY'
import json, statistics, sys
n, size, hold = sys.argv[1:4]
first, il, dl, ib, db, ii, di, ih, dh = (json.loads(a) for a in sys.argv[4:13])
med = lambda v: statistics.median(v) * 1000
assert il["fetched"] == il["messages"] and dl["fetched"] == dl["messages"], (il, dl)
print(f"IMAP, {il['messages']} messages of {size} octets in INBOX (imgate) / {dl['messages']} (Dovecot), median of {len(il['select'])} runs")
print(f"{'':48} {'imgate':>10} {'Dovecot':>10} {'ratio':>7}")
def row(what, a, b, unit="ms"):
    print(f"{what:48} {a:>8.1f}{unit} {b:>8.1f}{unit} {a / b:>7.2f}")
row("SELECT INBOX", med(il["select"]), med(dl["select"]))
row("UID FETCH 1:* (FLAGS RFC822.SIZE ENVELOPE)", med(il["fetch"]), med(dl["fetch"]))
print(f"{'  first listing, SELECT + FETCH':48} {il['select'][0] * 1000 + il['fetch'][0] * 1000:>8.1f}ms "
      f"{med(first['select']) + med(first['fetch']):>8.1f}ms")
row("BODY[] first read (imgate: pulled from a store)", ib["first"] * 1000, db["first"] * 1000)
row("BODY[] again (imgate: cached)", ib["again"] * 1000, db["again"] * 1000)
row("IDLE: delivered to EXISTS, median", ii["median_ms"], di["median_ms"])
row("IDLE: delivered to EXISTS, max", ii["max_ms"], di["max_ms"])
mi = (ih["rss_after_kib"] - ih["rss_before_kib"]) / 1024
md = (dh["rss_after_kib"] - dh["rss_before_kib"]) / 1024
print(f"{f'RSS added by {hold} idle connections':48} {mi:>8.1f}MB {md:>8.1f}MB {mi / md:>7.2f}")
print(f"{f'  RSS in all, with them':48} {ih['rss_after_kib'] / 1024:>8.1f}MB {dh['rss_after_kib'] / 1024:>8.1f}MB")
print(f"{'  (processes)':48} {1:>10} {dh['processes']:>10}")
PY
