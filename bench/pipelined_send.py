"""One SMTP transaction with many recipients, pipelined (RFC 2920) as a list
server sends it: MAIL and every RCPT in one write, then DATA. Used by
bench/fanout.sh for imgate and Postfix alike.

  send(port, sender, rcpts, message, login=None) -> seconds from MAIL FROM
  to the 250 after the data
  list_message(sender, size) -> the message both are sent
"""
import base64
import socket
import time


def list_message(sender, size):
    """A list post of `size` octets from `sender`."""
    head = f"From: {sender}\r\nTo: list-members:;\r\nSubject: fan-out\r\n\r\n"
    line = "f" * 78 + "\r\n"
    return (head + line * (size // len(line) + 1))[:size]


def _replies(f, n):
    out = []
    while len(out) < n:
        line = f.readline()
        if not line:
            raise RuntimeError(f"connection closed after {len(out)} of {n} replies")
        if line[3:4] != b"-":
            out.append(line.decode(errors="replace").strip())
    return out


def send(port, sender, rcpts, message, login=None):
    s = socket.create_connection(("127.0.0.1", port), timeout=600)
    f = s.makefile("rb")
    _replies(f, 1)
    s.sendall(b"EHLO bench.client\r\n")
    _replies(f, 1)
    if login:
        token = base64.b64encode(f"\0{login[0]}\0{login[1]}".encode()).decode()
        s.sendall(f"AUTH PLAIN {token}\r\n".encode())
        r = _replies(f, 1)[0]
        assert r.startswith("235"), r
    t = time.time()
    cmds = [f"MAIL FROM:<{sender}>"] + [f"RCPT TO:<{r}>" for r in rcpts]
    s.sendall(("\r\n".join(cmds) + "\r\n").encode())
    answers = _replies(f, len(cmds))
    bad = [a for a in answers if not a.startswith("250")]
    assert not bad, bad[:3]
    s.sendall(b"DATA\r\n")
    r = _replies(f, 1)[0]
    assert r.startswith("354"), r
    body = message.replace("\r\n.", "\r\n..")
    s.sendall(body.encode() + (b"" if body.endswith("\r\n") else b"\r\n") + b".\r\n")
    r = _replies(f, 1)[0]
    assert r.startswith("250"), r
    elapsed = time.time() - t
    s.sendall(b"QUIT\r\n")
    s.close()
    return elapsed
