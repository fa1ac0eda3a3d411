#!/usr/bin/python3
"""Outside checks of imgate's internet-facing SMTP, with software nobody
here wrote: dkimpy signs and verifies, dnspython asks the test's NSD.

  internet.py verify JSONL RCPT DNS_PORT MIN_SIGNATURES
      Verifies every DKIM-Signature of the newest message to RCPT that the
      raw recorder (smuggling.py serve) wrote, looking keys up in the test
      DNS. Passes when at least MIN_SIGNATURES are there and all verify.
  internet.py sign KEY SELECTOR DOMAIN < message > signed
      Prints the message with a dkimpy signature on top.
  internet.py policies CERT KEY PORT
      Serves MTA-STS policies over HTTPS (RFC 8461 §3.3) by Host header:
      the policy server a domain publishes at mta-sts.<domain>.
"""

import http.server
import json
import ssl
import sys

import dkim
import dns.resolver

POLICIES = {
    # one.test's own, naming imgate (hostname "localhost" here) as its MX.
    "mta-sts.one.test": "version: STSv1\r\nmode: enforce\r\nmx: localhost\r\nmax_age: 604800\r\n",
    # Lists its MX: mail goes over verified TLS.
    "mta-sts.sts.test": "version: STSv1\r\nmode: enforce\r\nmx: mx.sts.test\r\nmax_age: 86400\r\n",
    # Its MX records name mx.badsts.test, which the policy does not list.
    "mta-sts.badsts.test": "version: STSv1\r\nmode: enforce\r\nmx: mx.sts.test\r\nmax_age: 86400\r\n",
    # Lists its MX, which offers no STARTTLS.
    "mta-sts.plainsts.test": "version: STSv1\r\nmode: enforce\r\nmx: mx.plainsts.test\r\nmax_age: 86400\r\n",
}


def resolver(port):
    r = dns.resolver.Resolver(configure=False)
    r.nameservers = ["127.0.0.1"]
    r.port = int(port)

    def txt(name, timeout=5):
        name = name.decode() if isinstance(name, bytes) else name
        try:
            answer = r.resolve(name, "TXT", lifetime=timeout)
        except Exception:
            return b""
        return b"".join(b"".join(rr.strings) for rr in answer)

    return txt


def verify(jsonl, rcpt, port, minimum):
    records = [json.loads(line) for line in open(jsonl)]
    mine = [r for r in records if rcpt in r["to"]]
    if not mine:
        print(f"no message for {rcpt} in {jsonl}")
        return 1
    message = bytes.fromhex(mine[-1]["data"])
    d = dkim.DKIM(message)
    count = message.count(b"DKIM-Signature:")
    print(f"{count} signature(s)")
    if count < int(minimum):
        print(message.decode(errors="replace")[:2000])
        return 1
    ok = True
    for i in range(count):
        good = d.verify(idx=i, dnsfunc=resolver(port))
        print(f"signature {i}: {'pass' if good else 'FAIL'} {d.domain!r} {d.selector!r}")
        ok = ok and good
    return 0 if ok else 1


def sign(key, selector, domain):
    message = sys.stdin.buffer.read()
    header = dkim.sign(message, selector.encode(), domain.encode(), open(key, "rb").read(),
                       include_headers=[b"from", b"to", b"subject", b"date"])
    sys.stdout.buffer.write(header + message)
    return 0


class Policy(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        host = (self.headers.get("Host") or "").split(":")[0].lower()
        body = POLICIES.get(host)
        if self.path != "/.well-known/mta-sts.txt" or body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())


def policies(cert, key, port):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", int(port)), Policy)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    sys.exit({"verify": verify, "sign": sign, "policies": policies}[cmd](*args))
