#!/usr/bin/env bash
# SMTP ingest: imgate's MX against a durable Postfix, side by side in one run.
#
#   bench/smtp_ingest.sh [MESSAGES] [SESSIONS] [SIZE]     (defaults 2000 20 4096)
#
# Both receive the same smtp-source load (SESSIONS parallel sessions, SIZE-octet
# messages) on loopback. Both sync to disk before saying 250: Postfix fsyncs
# each queue file (its default) and discards on delivery; imgate syncs the
# stored message, its recipient record and queued notification, then files
# the notification in the local inbox. Two imgate nodes take the load: one
# with sender checks (SPF/DKIM/DMARC) off, as Postfix runs no policy service
# here, and one with them on, resolving through NSD on loopback, which
# answers for the sender's domain as a real zone would (SPF and DMARC
# records, TTL 300 s; smtp-source's messages carry no signature, so DKIM
# finds none to look up). imgate's sender checks keep answers for their TTL,
# as a resolver does. A third node runs with checks off on the PostgreSQL
# engine (a local server, default settings: fsync on, synchronous_commit
# on, no standby), the store several nodes would share. Each is run three
# times, one target at a time on a settled machine (the last target's queue
# delivered or notifications filed, the page cache synced); the median
# rates and the ratios are printed.
#
# Installs Postfix (for smtp-source and the comparison) and NSD with
# apt-get; run as root on a machine you may reconfigure (it rewrites
# /etc/postfix/main.cf).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
N=${1:-2000}
SESSIONS=${2:-20}
SIZE=${3:-4096}
IMGATE_PORT=${IMGATE_PORT:-2625}
POSTFIX_PORT=${POSTFIX_PORT:-2626}

need postfix:smtp-source nsd:nsd
pkill -x nsd || true
SOURCE=$(command -v smtp-source || echo /usr/sbin/smtp-source)

build_imgate

make_work
at_exit "postfix stop"

# --- Postfix: durable queue, discard delivery, loopback only --------------
postfix_base
postconf -e "inet_interfaces = loopback-only" "mydestination = bench.test" \
  "myhostname = postfix.bench.test" "mynetworks = 127.0.0.0/8" \
  "local_recipient_maps =" "local_transport = discard" "default_transport = discard" \
  "relay_transport = discard" "smtpd_recipient_restrictions = permit_mynetworks, reject" \
  "default_process_limit = 200" "smtpd_client_connection_rate_limit = 0" \
  "compatibility_level = 3.6" "maillog_file = /var/log/postfix-bench.log"
postconf -M "${POSTFIX_PORT}/inet=${POSTFIX_PORT} inet n - n - - smtpd"
postconf -M# "smtp/inet" 2>/dev/null || true
postfix_restart

# --- imgate: MX for bench.test, one user ---------------------------------
cat > "$work/imgate.toml" <<TOML
hostname = "imgate.bench.test"
data_dir = "$work/imgate-data"
[im2000]
public = ["127.0.0.1:0"]
private = ["127.0.0.1:$((IMGATE_PORT + 2))"]
[smtp]
mx = ["127.0.0.1:$IMGATE_PORT"]
max_sessions = 1000
verify_sender = false
[[domain]]
name = "bench.test"
[[user]]
address = "sink@bench.test"
password = "unused-in-this-benchmark"
[log]
level = "warn"
TOML
start_imgate

# --- NSD for example.org, and the node that checks senders through it ----
DNS_PORT=$((IMGATE_PORT + 20))
mkdir -p "$work/nsd"
# Authoritative for org. as a whole, so that the DMARC tree walk's query
# for _dmarc.org is answered (NXDOMAIN) as on the internet.
cat > "$work/nsd/org.zone" <<ZONE
\$ORIGIN org.
\$TTL 300
@ IN SOA ns.example hostmaster.example 1 3600 600 86400 300
@ IN NS ns.example
ns.example IN A 127.0.0.1
example IN TXT "v=spf1 ip4:127.0.0.1 -all"
_dmarc.example IN TXT "v=DMARC1; p=reject; rua=mailto:dmarc@example.org"
ZONE
cat > "$work/nsd/nsd.conf" <<NSD
server:
  ip-address: 127.0.0.1@$DNS_PORT
  username: ""
  zonesdir: "$work/nsd"
  database: ""
  pidfile: "$work/nsd/nsd.pid"
  xfrdfile: "$work/nsd/xfrd.state"
  zonelistfile: "$work/nsd/zone.list"
  logfile: "$work/nsd/nsd.log"
  # NSD limits answers to one client to 200 a second (response rate
  # limiting, against reflection attacks); an MX asks its own resolver,
  # not the authoritative server, so the limit is not part of this path.
  rrl-ratelimit: 0
remote-control:
  control-enable: no
zone:
  name: "org"
  zonefile: "org.zone"
NSD
nsd -c "$work/nsd/nsd.conf"
at_exit 'kill $(cat "$work/nsd/nsd.pid")'
CHECKS_PORT=$((IMGATE_PORT + 10))
sed -e "s#imgate-data#checks-data#" -e "s#127.0.0.1:$IMGATE_PORT#127.0.0.1:$CHECKS_PORT#" \
  -e "s#127.0.0.1:$((IMGATE_PORT + 2))#127.0.0.1:$((CHECKS_PORT + 2))#" -e "s#verify_sender = false#verify_sender = true#" \
  "$work/imgate.toml" > "$work/checks.toml"
printf '[dns]\nnameservers = ["127.0.0.1:%s"]\n' "$DNS_PORT" >> "$work/checks.toml"
start_imgate checks

# --- the node on PostgreSQL -------------------------------------------------
PG_NODE_PORT=$((IMGATE_PORT + 30))
start_postgres $((IMGATE_PORT + 40))
sed -e "s#imgate-data#pg-data#" -e "s#127.0.0.1:$IMGATE_PORT#127.0.0.1:$PG_NODE_PORT#" \
  -e "s#127.0.0.1:$((IMGATE_PORT + 2))#127.0.0.1:$((PG_NODE_PORT + 2))#" \
  "$work/imgate.toml" > "$work/pg.toml"
printf '[store]\nbackend = "postgres"\nurl = "%s"\nmax_connections = 32\n' "$PG_URL" >> "$work/pg.toml"
start_imgate pg

wait_port "$PG_NODE_PORT" || { cat "$work/pg.log"; exit 1; }
wait_port "$CHECKS_PORT" || { cat "$work/checks.log"; exit 1; }
wait_port "$IMGATE_PORT" || { cat "$work/imgate.log"; exit 1; }
wait_port "$POSTFIX_PORT" || { echo "postfix did not start" >&2; exit 1; }

run() { # port -> messages per second
  local start end
  start=$(date +%s.%N)
  "$SOURCE" -s "$SESSIONS" -l "$SIZE" -m "$N" -f bench@example.org -t sink@bench.test "127.0.0.1:$1"
  end=$(date +%s.%N)
  echo "$N / ($end - $start)" | bc -l
}
median() { printf '%s\n' "$@" | sort -g | sed -n 2p; }
filed() { # node -> notifications in the sink's inbox
  "$IMGATE" inbox --config "$work/$1.toml" --json sink@bench.test 2>/dev/null \
    | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))' || echo 0
}
# Each run starts on a quiet machine: what the last target still does
# after its last 250 (Postfix delivering its queue, a node filing its
# notifications, either's writeback) is not charged to the next one.
settle() { # [node messages]
  for _ in $(seq 600); do
    if [ $# -eq 2 ]; then [ "$(filed "$1")" -ge "$2" ] && break
    else [ -z "$(find /var/spool/postfix/incoming /var/spool/postfix/active /var/spool/postfix/deferred \
      -type f 2>/dev/null | head -1)" ] && break; fi
    sleep 0.1
  done
  sync
}

"$SOURCE" -s 2 -l "$SIZE" -m 50 -f bench@example.org -t sink@bench.test "127.0.0.1:$IMGATE_PORT"   # warm-up
"$SOURCE" -s 2 -l "$SIZE" -m 50 -f bench@example.org -t sink@bench.test "127.0.0.1:$POSTFIX_PORT"
"$SOURCE" -s 2 -l "$SIZE" -m 50 -f bench@example.org -t sink@bench.test "127.0.0.1:$CHECKS_PORT"
"$SOURCE" -s 2 -l "$SIZE" -m 50 -f bench@example.org -t sink@bench.test "127.0.0.1:$PG_NODE_PORT"
settle
i=(); p=(); c=(); g=()
for round in 1 2 3; do
  i+=("$(run "$IMGATE_PORT")"); settle imgate $((round * N + 50))
  p+=("$(run "$POSTFIX_PORT")"); settle
  c+=("$(run "$CHECKS_PORT")"); settle checks $((round * N + 50))
  g+=("$(run "$PG_NODE_PORT")"); settle pg $((round * N + 50))
done
mi=$(median "${i[@]}"); mp=$(median "${p[@]}"); mc=$(median "${c[@]}"); mg=$(median "${g[@]}")
printf 'smtp ingest: %d messages of %d octets over %d sessions (median of 3)\n' "$N" "$SIZE" "$SESSIONS"
printf '  imgate MX, checks off  %8.0f msg/s   (runs: %s)\n' "$mi" "$(printf '%.0f ' "${i[@]}")"
printf '  imgate MX, checks on   %8.0f msg/s   (runs: %s)\n' "$mc" "$(printf '%.0f ' "${c[@]}")"
printf '  imgate MX on postgres  %8.0f msg/s   (runs: %s)\n' "$mg" "$(printf '%.0f ' "${g[@]}")"
printf '  postfix durable        %8.0f msg/s   (runs: %s)\n' "$mp" "$(printf '%.0f ' "${p[@]}")"
printf '  ratio imgate/postfix: checks off %.2f, checks on %.2f, postgres %.2f (postgres/rocksdb %.2f)\n' \
  "$(echo "$mi / $mp" | bc -l)" "$(echo "$mc / $mp" | bc -l)" "$(echo "$mg / $mp" | bc -l)" "$(echo "$mg / $mi" | bc -l)"

# Every message imgate acknowledged must have become a notification in the
# recipient's inbox (each run waited for them; see settle).
want=$((3 * N + 50))
for node in imgate checks pg; do
  count=$(filed "$node")
  printf '  %s: notifications filed: %d of %d acknowledged\n' "$node" "$count" "$want"
  [ "$count" -eq "$want" ] || { echo "MISMATCH" >&2; tail -5 "$work/$node.log"; exit 1; }
done
# The checks ran: the filed notifications carry SPF and DMARC verdicts.
"$IMGATE" inbox --config "$work/checks.toml" --json sink@bench.test | python3 -c '
import json, sys
o = json.load(sys.stdin)[-1]["notification"]["origin"]
assert o.get("spf") == "pass" and o.get("dmarc") == "pass", o
print("  checks node verdicts:", {k: o[k] for k in ("spf", "dkim", "dmarc")})'
