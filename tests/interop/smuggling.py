#!/usr/bin/python3
"""SMTP smuggling, both ways, with the end-of-data variants the public
scanners try (SEC Consult's SMTP Smuggling Scanner: 7 inbound, 9 outbound).

  smuggling.py inbound MX_PORT RCPT
      Sends one message per inbound variant to the MX, each hiding a second
      "SMUGGLED" message behind the fake end-of-data. Passes when every one
      is refused (nothing of it, smuggled or not, may be accepted).
  smuggling.py serve PORT OUTFILE
      An aiosmtpd legacy host that writes each message it receives, raw, as
      a JSON line (hex) to OUTFILE.
  smuggling.py outbound BASE_URL CA_FILE USER PASSWORD RCPT OUTFILE
      Submits one IM2000 message per outbound variant to RCPT, a user whose
      mail imgate delivers by SMTP to the `serve` host. Passes when the host
      received each variant exactly once, with CRLF line endings only and no
      NUL, and the NUL variant not at all (imgate refuses to relay it).
"""

import base64
import json
import socket
import ssl
import sys
import time
import urllib.parse
import urllib.request

INBOUND = ["\n.\n", "\n.\r", "\r.\n", "\r.\r", "\n.\r\n", "\r.\r\n", "\r\n\x00.\r\n"]
OUTBOUND = ["\n.\n", "\n.\r", "\r.\n", "\r.\r", "\n.\r\n", "\r.\r\n", "\r\n.\r\r\n", "\r\r\n.\r\r\n", "\r\n\x00.\r\n"]


def reply(f):
    lines = []
    while True:
        line = f.readline()
        if not line:
            return "".join(lines) or "(closed)"
        lines.append(line.decode(errors="replace"))
        if line[3:4] != b"-":
            return "".join(lines)


def inbound(port, rcpt):
    bad = []
    for seq in INBOUND:
        s = socket.create_connection(("127.0.0.1", int(port)), timeout=10)
        f = s.makefile("rb")
        reply(f)
        for cmd in ["EHLO scan.test", "MAIL FROM:<test@scan.test>", f"RCPT TO:<{rcpt}>", "DATA"]:
            s.sendall(cmd.encode() + b"\r\n")
            reply(f)
        body = (
            f"From: test@scan.test\r\nTo: {rcpt}\r\nSubject: CHECK {seq!r}\r\n\r\nTESTING {seq!r}\r\n{seq}"
            f"mail FROM:<smuggled@scan.test>\r\nrcpt TO:<{rcpt}>\r\ndata\r\n"
            f"From: smuggled@scan.test\r\nSubject: SMUGGLED {seq!r}\r\n\r\nSMUGGLED\r\n.\r\n"
        )
        s.sendall(body.encode())
        answers = [reply(f)]
        s.settimeout(1)
        try:
            s.sendall(b"QUIT\r\n")
            while True:
                r = reply(f)
                answers.append(r)
                if r.startswith("221") or r == "(closed)":
                    break
        except OSError:
            pass
        s.close()
        accepted = [a for a in answers if a.startswith("250")]
        print(f"inbound {seq!r}: {answers[0].strip()}")
        if accepted or not answers[0].startswith("5"):
            bad.append(seq)
    if bad:
        print(f"accepted: {bad!r}")
        return 1
    return 0


def serve(port, outfile):
    from aiosmtpd.controller import Controller

    class Recorder:
        async def handle_DATA(self, server, session, envelope):
            with open(outfile, "a") as out:
                out.write(json.dumps({"to": envelope.rcpt_tos, "data": envelope.original_content.hex()}) + "\n")
            return "250 OK"

    controller = Controller(Recorder(), hostname="127.0.0.1", port=int(port))
    controller.start()
    while True:
        time.sleep(3600)


def outbound(base, ca, user, password, rcpt, outfile):
    context = ssl.create_default_context(cafile=ca)
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    for i, seq in enumerate(OUTBOUND):
        content = (
            f"From: {user}\r\nTo: {rcpt}\r\nSubject: EOD {i} {seq!r}\r\n\r\nTESTING {seq!r}\r\nSTART{i}\r\n{seq}\r\nEND{i}\r\n"
        ).encode()
        query = urllib.parse.urlencode({"to": rcpt})
        req = urllib.request.Request(f"{base}/im2000/v1/submissions?{query}", data=content, method="POST")
        req.add_header("Authorization", f"Basic {auth}")
        req.add_header("Content-Type", "message/rfc822")
        with urllib.request.urlopen(req, context=context, timeout=10) as resp:
            assert resp.status == 201, resp.status
    want = [i for i, seq in enumerate(OUTBOUND) if "\x00" not in seq]
    got = []
    for _ in range(300):
        try:
            with open(outfile) as f:
                got = [bytes.fromhex(json.loads(line)["data"]) for line in f]
        except FileNotFoundError:
            got = []
        if len(got) >= len(want):
            break
        time.sleep(0.1)
    time.sleep(1)  # anything more (a smuggled message, the NUL variant) would arrive now
    with open(outfile) as f:
        got = [bytes.fromhex(json.loads(line)["data"]) for line in f]
    problems = []
    for i in want:
        copies = [g for g in got if f"START{i}\r\n".encode() in g]
        if len(copies) != 1:
            problems.append(f"variant {i} {OUTBOUND[i]!r} arrived {len(copies)} times")
            continue
        data = copies[0]
        stripped = data.replace(b"\r\n", b"")
        if b"\r" in stripped or b"\n" in stripped or b"\x00" in data:
            problems.append(f"variant {i} {OUTBOUND[i]!r} arrived with a bare CR/LF or NUL: {data!r}")
        print(f"outbound {OUTBOUND[i]!r}: one copy, CRLF only")
    nul = [i for i, seq in enumerate(OUTBOUND) if "\x00" in seq]
    for i in nul:
        if any(f"START{i}\r\n".encode() in g for g in got):
            problems.append(f"variant {i} with a NUL was relayed")
        else:
            print(f"outbound {OUTBOUND[i]!r}: not relayed")
    if len(got) != len(want):
        problems.append(f"{len(got)} messages arrived for {len(want)} variants")
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    sys.exit({"inbound": inbound, "serve": serve, "outbound": outbound}[mode](*args))
