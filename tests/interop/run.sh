#!/usr/bin/env bash
# Interop: the real imgate binary against SMTP software nobody here wrote —
# swaks as a client (MX, submission with STARTTLS + AUTH, relay attempts),
# aiosmtpd and Postfix as legacy hosts receiving IM2000 mail, and
# smtp-source bursts. Installs them from Debian. Prints "N passed, M failed"
# and exits non-zero on any failure.
#
# Rewrites /etc/postfix/main.cf (and starts/stops Postfix): run it as root on
# a machine you may reconfigure, as CI does.
set -uo pipefail
cd "$(dirname "$0")/../.."

need=()
command -v swaks >/dev/null || need+=(swaks)
/usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null || need+=(python3-aiosmtpd)
[ -x /usr/sbin/smtp-source ] || need+=(postfix)
command -v openssl >/dev/null || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
  echo "interop: installing ${need[*]}" >&2
  apt-get update -qq
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
scripts/setup
cargo build --quiet --bin imgate || exit 1
IMGATE="$(cargo metadata --format-version 1 --no-deps | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/imgate"

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  postfix stop >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT

passed=0; failed=0
check() { # name, command...
  local name=$1; shift
  if "$@" >"$work/last.log" 2>&1; then
    passed=$((passed + 1)); echo "ok   $name"
  else
    failed=$((failed + 1)); echo "FAIL $name"; sed 's/^/     /' "$work/last.log" | tail -15
  fi
}
# N distinct free ports below the ephemeral range (32768 and up), so that no
# outgoing connection takes one before its server binds it.
free_ports() { /usr/bin/python3 - "$1" <<'PY'
import random, socket, sys
held = []
while len(held) < int(sys.argv[1]):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", random.randrange(20000, 32000)))
        held.append(s)
    except OSError:
        s.close()
print(" ".join(str(s.getsockname()[1]) for s in held))
PY
}
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
eventually() { # seconds, command...
  local n=$(( $1 * 10 )); shift
  for _ in $(seq "$n"); do "$@" && return 0; sleep 0.1; done
  "$@"
}

read -r PUB PRIV MX SUB AIO PF ADM SMUG < <(free_ports 8)

# --- legacy hosts: aiosmtpd (Maildir) and Postfix (virtual mailboxes) -----
mkdir -p "$work/aio/tmp" "$work/aio/new" "$work/aio/cur"
/usr/bin/python3 -m aiosmtpd -n -l "127.0.0.1:$AIO" -c aiosmtpd.handlers.Mailbox "$work/aio" &
pids+=($!)
# A raw recorder (aiosmtpd too) for the smuggling scenario's outbound half.
/usr/bin/python3 tests/interop/smuggling.py serve "$SMUG" "$work/smuggled.jsonl" &
pids+=($!)

chmod 755 "$work"; mkdir -p "$work/vmail"; chmod 777 "$work/vmail"
[ -f /etc/postfix/main.cf ] || cp /usr/share/postfix/main.cf.debian /etc/postfix/main.cf
[ -f /etc/postfix/master.cf ] || cp /usr/share/postfix/master.cf.dist /etc/postfix/master.cf
printf 'bob@pf.test pf.test/bob/\n' > "$work/vmailboxes"
postmap "$work/vmailboxes"
postconf -e "inet_interfaces = loopback-only" "mydestination =" "myhostname = postfix.pf.test" \
  "mynetworks = 127.0.0.0/8" "virtual_mailbox_domains = pf.test" "virtual_mailbox_base = $work/vmail" \
  "virtual_mailbox_maps = hash:$work/vmailboxes" "virtual_uid_maps = static:65534" "virtual_gid_maps = static:65534" \
  "smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination" \
  "local_transport = discard" "default_transport = discard" "relay_transport = discard" \
  "compatibility_level = 3.6" "maillog_file = /var/log/postfix-interop.log"
postconf -M "${PF}/inet=${PF} inet n - n - - smtpd"
postfix stop >/dev/null 2>&1; postfix start >/dev/null 2>&1

# --- imgate: one.test (IM2000 users), legacy.test (aiosmtpd), pf.test (Postfix)
# A private CA and a certificate for 127.0.0.1 / localhost signed by it.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=imgate interop CA" \
  -keyout "$work/ca.key" -out "$work/ca.pem" >/dev/null 2>&1
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$work/key.pem" -out "$work/leaf.csr" >/dev/null 2>&1
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > "$work/san.ext"
openssl x509 -req -in "$work/leaf.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial -days 2 \
  -extfile "$work/san.ext" -out "$work/cert.pem" >/dev/null 2>&1
cat > "$work/imgate.toml" <<TOML
hostname = "localhost"
data_dir = "$work/data"
[im2000]
public = ["127.0.0.1:$PUB"]
private = ["127.0.0.1:$PRIV"]
admin = ["127.0.0.1:$ADM"]
[smtp]
mx = ["127.0.0.1:$MX"]
submission = ["127.0.0.1:$SUB"]
verify_sender = false
[notify]
retry_min = "1s"
[tls]
cert = "$work/cert.pem"
key = "$work/key.pem"
ca = "$work/ca.pem"
[[domain]]
name = "one.test"
[[domain]]
name = "legacy.test"
route = "legacy"
legacy_host = "127.0.0.1:$AIO"
[[domain]]
name = "pf.test"
route = "legacy"
legacy_host = "127.0.0.1:$PF"
[[domain]]
name = "smug.test"
route = "legacy"
legacy_host = "127.0.0.1:$SMUG"
[[user]]
address = "alice@one.test"
password = "alice-pw"
[[user]]
address = "dora@one.test"
password = "dora-pw"
[[user]]
address = "erin@pf.test"
password = "erin-pw"
[[user]]
address = "ops@one.test"
password = "ops-pw"
admin = true
TOML
"$IMGATE" serve --config "$work/imgate.toml" >"$work/imgate.log" 2>&1 &
pids+=($!)
wait_port "$MX" && wait_port "$AIO" && wait_port "$PF" && wait_port "$SMUG" || { echo "a server did not start"; cat "$work/imgate.log"; exit 1; }

# The CLI finds the private listener (HTTPS, our CA) and the users'
# passwords in the configuration.
C="$work/imgate.toml"
count() { "$IMGATE" inbox --config "$C" --json "$1" 2>/dev/null | /usr/bin/python3 -c 'import json,sys; print(len(json.load(sys.stdin)))' 2>/dev/null || echo 0; }
export IMGATE C
export -f count

# --- swaks into the MX --------------------------------------------------
check "swaks: MX accepts mail for a local user" \
  swaks --server "127.0.0.1:$MX" --from someone@example.org --to alice@one.test --header "Subject: interop" --hide-all
check "swaks: MX accepts the null sender" \
  swaks --server "127.0.0.1:$MX" --from '<>' --to alice@one.test --hide-all
check "swaks: MX refuses an unknown user with 550" \
  bash -c "swaks --server 127.0.0.1:$MX --from someone@example.org --to nobody@one.test --quit-after RCPT 2>&1 | grep -q '<\*\* 550 5.1.1'"
check "swaks: MX refuses to relay" \
  bash -c "swaks --server 127.0.0.1:$MX --from someone@example.org --to victim@example.net --quit-after RCPT 2>&1 | grep -q '<\*\* 550 5.7.1'"
check "swaks: MX refuses a %-hack relay" \
  bash -c "swaks --server 127.0.0.1:$MX --from someone@example.org --to 'victim%example.net@one.test' --quit-after RCPT 2>&1 | grep -q '<\*\* 5'"

# --- swaks into submission: STARTTLS, then AUTH ------------------------
check "swaks: submission offers no AUTH before STARTTLS" \
  bash -c "swaks --server 127.0.0.1:$SUB --quit-after EHLO 2>&1 | grep -q STARTTLS && ! swaks --server 127.0.0.1:$SUB --quit-after EHLO 2>&1 | grep -q 'AUTH PLAIN'"
check "swaks: submission with STARTTLS + AUTH PLAIN to a local user" \
  swaks --server "127.0.0.1:$SUB" --tls --auth PLAIN --auth-user alice@one.test --auth-password alice-pw \
    --from alice@one.test --to dora@one.test --hide-all
check "swaks: submission with a wrong password gets 535" \
  bash -c "swaks --server 127.0.0.1:$SUB --tls --auth LOGIN --auth-user alice@one.test --auth-password nope --from alice@one.test --to dora@one.test > $work/swaks.out 2>&1; cat $work/swaks.out; grep -q '<[~*]\* *535 5.7.8' $work/swaks.out"
check "mail that came by SMTP is in the inboxes" \
  eventually 20 bash -c '[ "$(count alice@one.test)" -ge 2 ] && [ "$(count dora@one.test)" -ge 1 ]' 

# --- IM2000 mail to legacy hosts ---------------------------------------
printf 'From: alice@one.test\r\nTo: carol@legacy.test\r\nSubject: to aiosmtpd\r\n\r\nline one\r\n.leading dot\r\n' > "$work/m1.eml"
printf 'From: alice@one.test\r\nTo: bob@pf.test\r\nSubject: to postfix\r\n\r\nhello postfix\r\n' > "$work/m2.eml"
check "aiosmtpd receives IM2000 mail with one Received header, content unchanged" bash -c "
  \"$IMGATE\" send --config $C --from alice@one.test --to carol@legacy.test $work/m1.eml >/dev/null || exit 1
  for i in \$(seq 100); do ls $work/aio/new/* >/dev/null 2>&1 && break; sleep 0.1; done
  f=\$(ls $work/aio/new/* | head -1); [ -n \"\$f\" ] || exit 1
  grep -q '^Received: from one.test by localhost with IM2000 id' \"\$f\" || { cat \"\$f\"; exit 1; }
  grep -q '^.leading dot' \"\$f\" && grep -q '^line one' \"\$f\""
check "Postfix receives IM2000 mail into a mailbox" bash -c "
  \"$IMGATE\" send --config $C --from alice@one.test --to bob@pf.test $work/m2.eml >/dev/null || exit 1
  for i in \$(seq 200); do ls $work/vmail/pf.test/bob/new/* >/dev/null 2>&1 && exit 0; sleep 0.1; done; exit 1"
check "Postfix's 550 for an unknown user shows as refused in track, no mail back" bash -c "
  out=\$(\"$IMGATE\" send --config $C --json --from alice@one.test --to nobody@pf.test $work/m2.eml) || exit 1
  id=\$(echo \"\$out\" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)[\"message\"])')
  for i in \$(seq 200); do
    t=\$(\"$IMGATE\" track --config $C --user alice@one.test \"\$id\")
    echo \"\$t\" | grep -q 'refused.*550' && exit 0; sleep 0.1
  done; echo \"\$t\"; exit 1"

# --- a mixed domain: pf.test on Postfix, moving user by user ---------------
check "swaks: MX relays a Postfix user's mail there, with one imgate Received header" bash -c "
  swaks --server 127.0.0.1:$MX --from someone@example.org --to bob@pf.test --header 'Subject: relayed' --hide-all || exit 1
  for i in \$(seq 200); do
    f=\$(grep -l 'Subject: relayed' $work/vmail/pf.test/bob/new/* 2>/dev/null | head -1); [ -n \"\$f\" ] && break; sleep 0.1
  done
  [ -n \"\$f\" ] && [ \"\$(grep -c 'by localhost (imgate)' \"\$f\")\" = 1 ] && ! grep -q 'with IM2000' \"\$f\" || { cat \"\$f\"; exit 1; }"
check "route set moves erin@pf.test to IM2000 live; route explain says which rule" bash -c "
  \"$IMGATE\" route --config $C set erin@pf.test im2000 >/dev/null || exit 1
  swaks --server 127.0.0.1:$MX --from someone@example.org --to erin@pf.test --hide-all || exit 1
  for i in \$(seq 100); do [ \"\$(count erin@pf.test)\" -ge 1 ] && break; sleep 0.1; done
  [ \"\$(count erin@pf.test)\" -ge 1 ] || exit 1
  \"$IMGATE\" route --config $C explain erin@pf.test | grep -q \"the user's own rule\""
check "migration status counts pf.test's sides" bash -c "
  \"$IMGATE\" migration --config $C --json status | /usr/bin/python3 -c '
import json, sys
d = {x[\"domain\"]: x for x in json.load(sys.stdin)[\"domains\"]}[\"pf.test\"]
assert d[\"users_im2000\"] == 1 and d[\"last_day\"][\"legacy_messages\"] >= 2 and d[\"last_day\"][\"im2000_messages\"] == 1, d
'"

# --- bursts --------------------------------------------------------------
check "smtp-source: a burst of 200 messages over 10 sessions, all filed" bash -c "
  /usr/sbin/smtp-source -s 10 -m 200 -l 2048 -f burst@example.org -t dora@one.test 127.0.0.1:$MX || exit 1
  for i in \$(seq 300); do
    n=\$(count dora@one.test)
    [ \"\${n:-0}\" -ge 201 ] && exit 0; sleep 0.2
  done; echo \"filed: \$n\"; exit 1"

# --- SMTP smuggling: the public scanner's end-of-data variants ------------
check "smuggling scanner variants inbound: all 7 refused, nothing filed" bash -c "
  before=\$(count alice@one.test)
  /usr/bin/python3 tests/interop/smuggling.py inbound $MX alice@one.test || exit 1
  sleep 1; after=\$(count alice@one.test)
  [ \"\$before\" = \"\$after\" ] || { echo \"inbox went from \$before to \$after\"; exit 1; }"
check "smuggling scanner variants outbound: one clean copy each at the legacy host, NUL not relayed" \
  /usr/bin/python3 tests/interop/smuggling.py outbound "https://127.0.0.1:$PRIV" "$work/ca.pem" \
    alice@one.test alice-pw x@smug.test "$work/smuggled.jsonl"

echo
echo "interop: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
