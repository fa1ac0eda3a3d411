#!/usr/bin/env bash
# Interop: the real imgate binary against SMTP software nobody here wrote —
# swaks as a client (MX, submission with STARTTLS + AUTH, implicit TLS,
# relay attempts), aiosmtpd and Postfix as legacy hosts receiving IM2000
# mail, Postfix with SASL as an upstream relay and as a recipient's MX,
# NSD as the authoritative DNS, dkimpy signing and verifying, an HTTPS
# MTA-STS policy server, smtp-source bursts; and IMAP clients — mbsync
# (isync), fetchmail, and neomutt driven in tmux. (isync and fetchmail
# check a certificate's DNS names only: they connect to "localhost".) Installs them from Debian. Prints "N passed, M failed"
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
command -v nsd >/dev/null || need+=(nsd)
/usr/bin/python3 -c 'import dkim, dns.resolver, nacl' 2>/dev/null || need+=(python3-dkim python3-dnspython python3-nacl)
command -v saslpasswd2 >/dev/null || need+=(sasl2-bin)
command -v mbsync >/dev/null || need+=(isync)
command -v fetchmail >/dev/null || need+=(fetchmail)
command -v neomutt >/dev/null || need+=(neomutt)
command -v tmux >/dev/null || need+=(tmux)
[ -e /usr/lib/x86_64-linux-gnu/sasl2/libplain.so ] || ls /usr/lib/*/sasl2/libplain.so >/dev/null 2>&1 || need+=(libsasl2-modules)
if [ ${#need[@]} -gt 0 ]; then
  echo "interop: installing ${need[*]}" >&2
  apt-get update -qq
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  # The packaged NSD starts itself on port 53; the test runs its own.
  systemctl stop nsd >/dev/null 2>&1; systemctl disable nsd >/dev/null 2>&1; pkill -x nsd
fi
scripts/setup
cargo build --quiet --bin imgate || exit 1
IMGATE="$(cargo metadata --format-version 1 --no-deps | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/imgate"

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  postfix stop >/dev/null 2>&1
  [ -f "$work/nsd/nsd.pid" ] && kill "$(cat "$work/nsd/nsd.pid")" 2>/dev/null
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

read -r PUB PRIV MX SUB AIO PF ADM SMUG DNSP SUBS UP MXP IMAPP IMAPS < <(free_ports 14)

# --- legacy hosts: aiosmtpd (Maildir) and Postfix (virtual mailboxes) -----
mkdir -p "$work/aio/tmp" "$work/aio/new" "$work/aio/cur"
/usr/bin/python3 -m aiosmtpd -n -l "127.0.0.1:$AIO" -c aiosmtpd.handlers.Mailbox "$work/aio" &
pids+=($!)
# A raw recorder (aiosmtpd too) for the smuggling scenario's outbound half.
/usr/bin/python3 tests/interop/smuggling.py serve "$SMUG" "$work/smuggled.jsonl" &
pids+=($!)

chmod 755 "$work"; mkdir -p "$work/vmail"; chmod 777 "$work/vmail"
[ -f /etc/postfix/main.cf ] || cp /usr/share/postfix/main.cf.debian /etc/postfix/main.cf
# Each run adds its own listeners: start from the packaged master.cf, so
# those of earlier runs (other ports) are not bound again.
cp /usr/share/postfix/master.cf.dist /etc/postfix/master.cf
printf 'bob@pf.test pf.test/bob/\ndest@far.test far.test/dest/\nuser@sts.test sts.test/user/\n' > "$work/vmailboxes"
postmap "$work/vmailboxes"
postconf -e "inet_interfaces = loopback-only" "mydestination =" "myhostname = postfix.pf.test" \
  "mynetworks = 127.0.0.0/8" "virtual_mailbox_domains = pf.test far.test sts.test" "virtual_mailbox_base = $work/vmail" \
  "virtual_mailbox_maps = hash:$work/vmailboxes" "virtual_uid_maps = static:65534" "virtual_gid_maps = static:65534" \
  "smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination" \
  "local_transport = discard" "default_transport = discard" "relay_transport = discard" \
  "compatibility_level = 3.6" "maillog_file = /var/log/postfix-interop.log" \
  "smtpd_tls_cert_file = $work/cert.pem" "smtpd_tls_key_file = $work/key.pem" "smtpd_tls_security_level = may" \
  "smtpd_sasl_type = cyrus" "smtpd_sasl_path = smtpd" "smtpd_sasl_local_domain = postfix.pf.test"
postconf -M "${PF}/inet=${PF} inet n - n - - smtpd"
# An upstream relay: TLS and AUTH required, nothing relayed without them.
postconf -M "${UP}/inet=${UP} inet n - n - - smtpd -o smtpd_tls_security_level=encrypt -o smtpd_sasl_auth_enable=yes -o smtpd_tls_auth_only=yes -o smtpd_client_restrictions=permit_sasl_authenticated,reject -o smtpd_recipient_restrictions=permit_sasl_authenticated,reject"
# The MX of sts.test (an MTA-STS domain), with STARTTLS.
postconf -M "127.0.0.1:${MXP}/inet=127.0.0.1:${MXP} inet n - n - - smtpd"
mkdir -p /etc/postfix/sasl
printf 'pwcheck_method: auxprop\nauxprop_plugin: sasldb\nmech_list: PLAIN LOGIN\n' > /etc/postfix/sasl/smtpd.conf
echo "rita-relay-pw" | saslpasswd2 -p -c -u postfix.pf.test rita
chown root:postfix /etc/sasldb2; chmod 640 /etc/sasldb2

# --- imgate: one.test (IM2000 users), legacy.test (aiosmtpd), pf.test (Postfix),
# relayed.test (through the upstream Postfix), and MX deliveries to the
# MTA-STS domains of the test DNS.
# A private CA and a certificate for 127.0.0.1 / localhost signed by it.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=imgate interop CA" \
  -keyout "$work/ca.key" -out "$work/ca.pem" >/dev/null 2>&1
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$work/key.pem" -out "$work/leaf.csr" >/dev/null 2>&1
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:upstream.test,DNS:mx.sts.test,DNS:mx.plainsts.test,DNS:mta-sts.sts.test,DNS:mta-sts.badsts.test,DNS:mta-sts.plainsts.test,DNS:mta-sts.one.test\n' > "$work/san.ext"
openssl x509 -req -in "$work/leaf.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial -days 2 \
  -extfile "$work/san.ext" -out "$work/cert.pem" >/dev/null 2>&1
postfix stop >/dev/null 2>&1; postfix start >/dev/null 2>&1

# DKIM keys: imgate's own (both algorithms), and one for dkimpy to sign with.
"$IMGATE" dkim-keygen --domain one.test --selector rsa2026 --out "$work/one-rsa.pem" > "$work/dkim-rsa.txt" || exit 1
"$IMGATE" dkim-keygen --domain one.test --selector ed2026 --algorithm ed25519 --out "$work/one-ed.pem" > "$work/dkim-ed.txt" || exit 1
openssl genrsa -out "$work/signer.pem" 2048 >/dev/null 2>&1
SIGNER_P=$(openssl rsa -in "$work/signer.pem" -pubout -outform DER 2>/dev/null | base64 -w0)
# --- NSD, authoritative for test.: what a real zone would publish ---------
mkdir -p "$work/nsd"
{
  printf '$ORIGIN test.\n$TTL 60\n@ IN SOA ns.test. hostmaster.test. 1 3600 600 86400 60\n@ IN NS ns.test.\nns IN A 127.0.0.1\n'
  grep -h '_domainkey' "$work/dkim-rsa.txt" "$work/dkim-ed.txt"
  printf 'one.test. IN TXT "v=spf1 -all"\n_dmarc.one.test. IN TXT "v=DMARC1; p=reject"\n'
  printf '_mta-sts.one.test. IN TXT "v=STSv1; id=1"\nmta-sts.one.test. IN A 127.0.0.1\n'
  printf 's1._domainkey.signer.test. IN TXT "v=DKIM1; k=rsa; p=%s" "%s"\n' "${SIGNER_P:0:200}" "${SIGNER_P:200}"
  printf '_dmarc.signer.test. IN TXT "v=DMARC1; p=none"\n'
  printf 'upstream.test. IN A 127.0.0.1\nfar.test. IN MX 10 upstream.test.\n'
  printf 'sts.test. IN MX 10 mx.sts.test.\nmx.sts.test. IN A 127.0.0.1\n_mta-sts.sts.test. IN TXT "v=STSv1; id=1"\nmta-sts.sts.test. IN A 127.0.0.1\n'
  printf 'badsts.test. IN MX 10 mx.badsts.test.\nmx.badsts.test. IN A 127.0.0.1\n_mta-sts.badsts.test. IN TXT "v=STSv1; id=1"\nmta-sts.badsts.test. IN A 127.0.0.1\n'
  printf 'tlsreq.test. IN MX 10 mx.plainsts.test.\n'
  printf 'plainsts.test. IN MX 10 mx.plainsts.test.\nmx.plainsts.test. IN A 127.0.0.3\n_mta-sts.plainsts.test. IN TXT "v=STSv1; id=1"\nmta-sts.plainsts.test. IN A 127.0.0.1\n'
} > "$work/nsd/test.zone"
cat > "$work/nsd/nsd.conf" <<NSD
server:
  ip-address: 127.0.0.1@$DNSP
  username: ""
  zonesdir: "$work/nsd"
  database: ""
  pidfile: "$work/nsd/nsd.pid"
  xfrdfile: "$work/nsd/xfrd.state"
  zonelistfile: "$work/nsd/zone.list"
  logfile: "$work/nsd/nsd.log"
remote-control:
  control-enable: no
zone:
  name: "test"
  zonefile: "test.zone"
NSD
nsd -c "$work/nsd/nsd.conf" || { echo "nsd did not start"; cat "$work/nsd/nsd.log"; exit 1; }
# The MTA-STS policy server (HTTPS on 443, as RFC 8461 fixes), and a
# recipient MX without STARTTLS for plainsts.test.
/usr/bin/python3 tests/interop/internet.py policies "$work/cert.pem" "$work/key.pem" 443 &
pids+=($!)
/usr/bin/python3 -m aiosmtpd -n -l "127.0.0.3:$MXP" -c aiosmtpd.handlers.Sink &
pids+=($!)
echo "rita-relay-pw" > "$work/relay.pw"
export IMGATE_BAD_RELAY_PW="not-the-password"

cat > "$work/imgate.toml" <<TOML
hostname = "localhost"
data_dir = "$work/data"
[im2000]
public = ["127.0.0.1:$PUB"]
private = ["127.0.0.1:$PRIV"]
admin = ["127.0.0.1:$ADM"]
private_peers = true
[smtp]
mx = ["127.0.0.1:$MX"]
submission = ["127.0.0.1:$SUB"]
submissions = ["127.0.0.1:$SUBS"]
relay_port = $MXP
[imap]
listen = ["127.0.0.1:$IMAPP"]
implicit_tls = ["127.0.0.1:$IMAPS"]
[smtp.destinations."tlsreq.test"]
tls = "required"
[dns]
nameservers = ["127.0.0.1:$DNSP"]
[notify]
retry_min = "1s"
[tls]
cert = "$work/cert.pem"
key = "$work/key.pem"
ca = "$work/ca.pem"
[[domain]]
name = "one.test"
[[domain.dkim]]
selector = "rsa2026"
key = "$work/one-rsa.pem"
[[domain.dkim]]
selector = "ed2026"
key = "$work/one-ed.pem"
[[domain]]
name = "relayed.test"
[domain.relayhost]
host = "upstream.test:$UP"
username = "rita"
password_file = "$work/relay.pw"
[[domain]]
name = "badrelay.test"
[domain.relayhost]
host = "upstream.test:$UP"
username = "rita"
password_env = "IMGATE_BAD_RELAY_PW"
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
address = "rita@relayed.test"
password = "rita-pw"
[[user]]
address = "bert@badrelay.test"
password = "bert-pw"
[[user]]
address = "ivy@one.test"
password = "ivy-pw"
[[user]]
address = "ops@one.test"
password = "ops-pw"
admin = true
TOML
"$IMGATE" serve --config "$work/imgate.toml" >"$work/imgate.log" 2>&1 &
pids+=($!)
wait_port "$MX" && wait_port "$AIO" && wait_port "$PF" && wait_port "$SMUG" && wait_port 443 || { echo "a server did not start"; cat "$work/imgate.log"; exit 1; }

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

# --- the internet's terms: DKIM, DMARC, 465, an upstream relay, MTA-STS --
Q() { "$IMGATE" queue --config "$C" --user ops@one.test --json list; }
export -f Q
printf 'From: alice@one.test\r\nTo: dkim@smug.test\r\nSubject: signed\r\nDate: Tue, 1 Dec 2026 00:00:00 +0000\r\nMessage-ID: <dkim1@one.test>\r\n\r\nsigned by imgate, checked by dkimpy\r\n.dot line\r\n' > "$work/signed.eml"
check "dkimpy verifies both of imgate's signatures (RSA, Ed25519) on mail to a legacy host" bash -c "
  \"$IMGATE\" send --config $C --from alice@one.test --to dkim@smug.test $work/signed.eml >/dev/null || exit 1
  for i in \$(seq 100); do grep -q dkim@smug.test $work/smuggled.jsonl 2>/dev/null && break; sleep 0.1; done
  /usr/bin/python3 tests/interop/internet.py verify $work/smuggled.jsonl dkim@smug.test $DNSP 2"
check "dns-check finds both DKIM keys, DMARC and MTA-STS (its policy fetched over HTTPS); a key not the published one is named" bash -c "
  \"$IMGATE\" dns-check --config $C one.test > $work/dnscheck.out 2>&1
  grep -q '^ok .*rsa2026._domainkey.one.test' $work/dnscheck.out && grep -q '^ok .*ed2026._domainkey.one.test' $work/dnscheck.out \
    && grep -q '^ok .*_dmarc.one.test' $work/dnscheck.out && grep -q '^ok .*_mta-sts.one.test' $work/dnscheck.out \
    && grep -q '^ok .*https://mta-sts.one.test/.*lists localhost' $work/dnscheck.out || { cat $work/dnscheck.out; exit 1; }
  \"$IMGATE\" dkim-keygen --domain one.test --selector rsa2026 --out $work/other.pem >/dev/null || exit 1
  sed 's#$work/one-rsa.pem#$work/other.pem#' $C > $work/other.toml
  \"$IMGATE\" dns-check --config $work/other.toml one.test > $work/dnscheck2.out 2>&1
  grep -q '^wrong .*rsa2026._domainkey.one.test.*other.pem' $work/dnscheck2.out || { cat $work/dnscheck2.out; exit 1; }"
check "check-config names the domain and the file of a DKIM key that does not parse" bash -c "
  echo 'not a key' > $work/broken.pem
  sed 's#$work/one-ed.pem#$work/broken.pem#' $C > $work/broken.toml
  ! \"$IMGATE\" check-config $work/broken.toml > $work/cc.out 2>&1 && grep -q 'one.test' $work/cc.out && grep -q broken.pem $work/cc.out || { cat $work/cc.out; exit 1; }"
check "a dkimpy-signed message is filed dkim=pass; its body changed in transit, dkim=fail" bash -c "
  printf 'From: news@signer.test\r\nTo: alice@one.test\r\nSubject: signed elsewhere\r\nDate: Tue, 1 Dec 2026 00:00:00 +0000\r\n\r\noriginal body\r\n' \
    | /usr/bin/python3 tests/interop/internet.py sign $work/signer.pem s1 signer.test > $work/dkimpy.eml || exit 1
  sed 's/original body/changed body/' $work/dkimpy.eml > $work/tampered.eml
  swaks --server 127.0.0.1:$MX --from news@signer.test --to alice@one.test --data $work/dkimpy.eml --hide-all || exit 1
  swaks --server 127.0.0.1:$MX --from news@signer.test --to alice@one.test --data $work/tampered.eml --hide-all || exit 1
  for i in \$(seq 50); do
    \"$IMGATE\" inbox --config $C --json alice@one.test > $work/inbox.json && /usr/bin/python3 -c '
import json, sys
o = [e[\"notification\"][\"origin\"] for e in json.load(open(sys.argv[1])) if e[\"notification\"][\"sender\"] == \"news@signer.test\"]
assert [x[\"dkim\"] for x in o[-2:]] == [\"pass\", \"fail\"], o
' $work/inbox.json 2>$work/inbox.err && exit 0; sleep 0.2
  done; cat $work/inbox.err; exit 1"
check "swaks: MX refuses a spoof of one.test (its DMARC says reject) with 550 5.7.1" bash -c "
  swaks --server 127.0.0.1:$MX --from someone@far.test --to dora@one.test --header 'From: ceo@one.test' > $work/spoof.out 2>&1
  grep -q '<\*\* *550 5.7.1.*one.test' $work/spoof.out || { cat $work/spoof.out; exit 1; }"
check "swaks: implicit-TLS submission (port 465 style) with AUTH PLAIN, certificate verified" \
  swaks --server "127.0.0.1:$SUBS" --tlsc --tls-verify --tls-ca-path "$work/ca.pem" --auth PLAIN \
    --auth-user alice@one.test --auth-password alice-pw --from alice@one.test --to dora@one.test --hide-all
check "the implicit-TLS listener says nothing in plain text" bash -c "
  ! swaks --server 127.0.0.1:$SUBS --quit-after CONNECT --timeout 3 >/dev/null 2>&1"
check "relayhost: a relayed.test user's mail goes through the upstream Postfix (STARTTLS, AUTH) to far.test" bash -c "
  swaks --server 127.0.0.1:$SUB --tls --auth PLAIN --auth-user rita@relayed.test --auth-password rita-pw \
    --from rita@relayed.test --to dest@far.test --header 'Subject: via upstream' --hide-all || exit 1
  for i in \$(seq 200); do f=\$(grep -l 'Subject: via upstream' $work/vmail/far.test/dest/new/* 2>/dev/null | head -1); [ -n \"\$f\" ] && break; sleep 0.1; done
  [ -n \"\$f\" ] && grep -q 'with ESMTPSA' \"\$f\" || { [ -n \"\$f\" ] && cat \"\$f\"; Q; tail -20 /var/log/postfix-interop.log; exit 1; }"
check "relayhost refusing our credentials: a deferral with its 535 in queue list, the password nowhere" bash -c "
  swaks --server 127.0.0.1:$SUB --tls --auth PLAIN --auth-user bert@badrelay.test --auth-password bert-pw \
    --from bert@badrelay.test --to dest@far.test --hide-all || exit 1
  for i in \$(seq 100); do Q > $work/q.out 2>&1; grep -q 'refused our credentials.*535' $work/q.out && break; sleep 0.2; done
  grep -q 'refused our credentials.*535' $work/q.out || { cat $work/q.out; exit 1; }
  ! grep -q 'not-the-password' $work/q.out $work/imgate.log"
check "MTA-STS enforce: mail to sts.test goes over verified TLS to the MX its policy lists" bash -c "
  swaks --server 127.0.0.1:$SUB --tls --auth PLAIN --auth-user alice@one.test --auth-password alice-pw \
    --from alice@one.test --to user@sts.test --header 'Subject: over sts' --hide-all || exit 1
  for i in \$(seq 200); do f=\$(grep -l 'Subject: over sts' $work/vmail/sts.test/user/new/* 2>/dev/null | head -1); [ -n \"\$f\" ] && break; sleep 0.1; done
  [ -n \"\$f\" ] && grep -q 'with ESMTPS' \"\$f\" || { Q; tail -20 /var/log/postfix-interop.log; exit 1; }"
check "MTA-STS enforce or tls = required: an MX the policy does not list, or one without STARTTLS, is a deferral saying why" bash -c "
  for d in badsts.test plainsts.test tlsreq.test; do
    swaks --server 127.0.0.1:$SUB --tls --auth PLAIN --auth-user alice@one.test --auth-password alice-pw \
      --from alice@one.test --to user@\$d --hide-all || exit 1
  done
  for i in \$(seq 100); do
    Q > $work/q2.out 2>&1
    grep -q 'MTA-STS policy of badsts.test (enforce) lists none' $work/q2.out \
      && grep -q 'TLS required by the MTA-STS policy of plainsts.test' $work/q2.out \
      && grep -q 'TLS required by smtp.destinations.*tlsreq.test' $work/q2.out && exit 0
    sleep 0.2
  done; cat $work/q2.out; exit 1"

# --- IMAP clients over ivy@one.test's inbox --------------------------------
imap_py() { /usr/bin/python3 - "$IMAPS" "$work/ca.pem" "$@"; }
export -f imap_py eventually
export work IMAPS
for i in 1 2 3; do
  swaks --server 127.0.0.1:$MX --from someone@far.test --to ivy@one.test --header "Subject: imap $i" --body "body $i" --hide-all
done
eventually 20 bash -c '[ "$(count ivy@one.test)" -ge 3 ]'
mkdir -p "$work/maildir"
cat > "$work/mbsyncrc" <<RC
IMAPAccount ivy
Host localhost
Port $IMAPS
User ivy@one.test
Pass ivy-pw
SSLType IMAPS
CertificateFile $work/ca.pem

IMAPStore ivy-remote
Account ivy

MaildirStore ivy-local
Path $work/maildir/
Inbox $work/maildir/INBOX
SubFolders Verbatim

Channel ivy
Far :ivy-remote:
Near :ivy-local:
Patterns *
Create Near
Sync All
Expunge Both
SyncState *
RC
check "mbsync over implicit TLS (certificate verified) syncs INBOX and the special folders to a Maildir" bash -c "
  mbsync -c $work/mbsyncrc ivy || exit 1
  [ \$(ls $work/maildir/INBOX/new | wc -l) -eq 3 ] && [ -d $work/maildir/Sent ] && [ -d $work/maildir/Drafts ] \
    && grep -l 'Subject: imap 2' $work/maildir/INBOX/new/* >/dev/null"
check "mbsync back: a flag set, a message trashed and a draft written offline reach the server" bash -c "
  cd $work/maildir/INBOX/new
  f1=\$(grep -l 'Subject: imap 1' *); f2=\$(grep -l 'Subject: imap 2' *)
  mv \"\$f1\" ../cur/\"\$f1\"FS; mv \"\$f2\" ../cur/\"\$f2\"T
  printf 'From: ivy@one.test\r\nSubject: offline draft\r\n\r\nwritten on the train\r\n' > $work/maildir/Drafts/new/1.draft
  sleep 1.1
  mbsync -c $work/mbsyncrc ivy || exit 1
  imap_py <<'PY'
import imaplib, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
m = imaplib.IMAP4_SSL('127.0.0.1', int(sys.argv[1]), ssl_context=ctx)
m.login('ivy@one.test', 'ivy-pw')
typ, n = m.select('INBOX'); assert n[0] == b'2', n
typ, d = m.fetch('1:*', '(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])')
text = repr(d); assert 'imap 2' not in text and 'Flagged' in text, text
typ, n = m.select('Drafts'); assert n[0] == b'1', n
typ, d = m.fetch('1', 'BODY.PEEK[]'); assert b'written on the train' in d[0][1], d
PY"
cat > "$work/fetchmailrc" <<RC
poll localhost service $IMAPP protocol IMAP
  user "ivy@one.test" password "ivy-pw" is "root" here
  sslproto "tls1.2+"
  sslcertck sslcertfile "$work/ca.pem"
  mda "/bin/sh -c 'cat >> $work/fetchmail.mbox'"
  fetchall
RC
chmod 600 "$work/fetchmailrc"
check "fetchmail over STARTTLS (certificate checked) takes the inbox and expunges it; the store is told" bash -c "
  swaks --server 127.0.0.1:$MX --from someone@far.test --to ivy@one.test --header 'Subject: for fetchmail' --body 'fetch me' --hide-all
  eventually 20 bash -c '[ \$(count ivy@one.test) -ge 3 ]'
  fetchmail -f $work/fetchmailrc --nodetach --sslproto tls1.2+ 2>&1 | tail -5
  grep -q 'Subject: for fetchmail' $work/fetchmail.mbox && [ \$(grep -c '^Subject: ' $work/fetchmail.mbox) -eq 3 ] \
    && [ \"\$(count ivy@one.test)\" -eq 0 ]"
cat > "$work/muttrc" <<RC
set folder="imap://ivy%40one.test@127.0.0.1:$IMAPP/"
set spoolfile="+INBOX"
set imap_pass="ivy-pw"
set ssl_starttls=yes
set ssl_force_tls=yes
set certificate_file="$work/ca.pem"
set ssl_ca_certificates_file="$work/ca.pem"
set imap_idle=yes
set mail_check=1
set timeout=1
set header_cache=""
set message_cachedir=""
set sort=date
set confirmappend=no
set delete=yes
set mark_old=no
set record=""
RC
pane() { tmux capture-pane -p -t nm; }
export -f pane
check "neomutt (tmux, STARTTLS): lists and reads the inbox, flags, deletes, saves to a folder; IDLE shows new mail" bash -c "
  for s in one two; do
    swaks --server 127.0.0.1:$MX --from someone@far.test --to ivy@one.test --header \"Subject: mutt \$s\" --body \"mutt body \$s\" --hide-all
  done
  eventually 20 bash -c '[ \$(count ivy@one.test) -ge 2 ]'
  tmux kill-server 2>/dev/null
  tmux new-session -d -s nm -x 160 -y 40 \"neomutt -n -F $work/muttrc\"
  eventually 15 bash -c 'pane | grep -q \"mutt two\"' || { pane; exit 1; }
  tmux send-keys -t nm Enter; eventually 10 bash -c 'pane | grep -q \"mutt body one\"' || { pane; exit 1; }
  tmux send-keys -t nm q; sleep 0.5
  tmux send-keys -t nm F; sleep 0.3; tmux send-keys -t nm j; sleep 0.3
  tmux send-keys -t nm s; sleep 0.5; tmux send-keys -t nm C-u '=Trash' Enter; sleep 1
  tmux send-keys -t nm '\$'; sleep 1.5
  swaks --server 127.0.0.1:$MX --from someone@far.test --to ivy@one.test --header 'Subject: while mutt idles' --body x --hide-all
  eventually 15 bash -c 'pane | grep -q \"while mutt idles\"' || { pane; exit 1; }
  tmux send-keys -t nm q; sleep 0.5; tmux kill-server 2>/dev/null
  imap_py <<'PY'
import imaplib, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
m = imaplib.IMAP4_SSL('127.0.0.1', int(sys.argv[1]), ssl_context=ctx)
m.login('ivy@one.test', 'ivy-pw')
m.select('INBOX')
typ, d = m.fetch('1:*', '(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])')
text = repr(d)
assert 'mutt one' in text and 'Flagged' in text and 'Seen' in text, text
assert 'mutt two' not in text and 'while mutt idles' in text, text
m.select('Trash')
typ, d = m.fetch('1:*', 'BODY.PEEK[HEADER.FIELDS (SUBJECT)]')
assert 'mutt two' in repr(d), d
PY"

echo
echo "interop: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
