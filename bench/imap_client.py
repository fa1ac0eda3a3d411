"""IMAP measurements for bench/imap.sh, run the same way against imgate and
Dovecot. A raw socket client (no imaplib parsing in the timing): it sends a
command and reads until its tagged answer.

  imap_client.py listing HOST PORT USER PASS RUNS
      SELECT INBOX, then UID FETCH 1:* (FLAGS RFC822.SIZE ENVELOPE): the
      time of each, per run (a fresh connection each run); prints JSON.
  imap_client.py bodies HOST PORT USER PASS COUNT
      FETCH n BODY[] of messages 1..COUNT one at a time, twice: prints the
      median time of a first read and of a second read.
  imap_client.py idle HOST PORT USER PASS ROUNDS DELIVER...
      IDLE on INBOX; each round runs DELIVER (a command that files one
      message and prints the moment it was filed, time.time()) and times
      until the client reads "* N EXISTS". Prints the median and max.
  imap_client.py hold HOST PORT USER PASS N PIDFILE...
      Opens N connections, each logged in, INBOX selected and IDLE; prints
      the summed RSS (KiB) of the processes in PIDFILEs (or of every
      process named there, for Dovecot's per-connection processes).
"""
import json
import re
import socket
import statistics
import subprocess
import sys
import time


class Conn:
    """A buffered connection: lines are cut from the buffer by position, so
    reading a long answer costs the client time linear in its size."""

    def __init__(self, host, port):
        self.s = socket.create_connection((host, port))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.pos = 0
        self.n = 0
        self.read_until(b"\r\n")

    def fill(self):
        if self.pos > (1 << 20):
            del self.buf[: self.pos]
            self.pos = 0
        chunk = self.s.recv(1 << 20)
        if not chunk:
            raise SystemExit("connection closed: " + bytes(self.buf[-200:]).decode(errors="replace"))
        self.buf += chunk

    def read_until(self, end):
        scanned = 0  # octets after pos already searched
        while True:
            i = self.buf.find(end, self.pos + max(0, scanned - len(end) + 1))
            if i >= 0:
                out = bytes(self.buf[self.pos : i + len(end)])
                self.pos = i + len(end)
                return out
            scanned = len(self.buf) - self.pos
            self.fill()

    def read_exact(self, n):
        while len(self.buf) - self.pos < n:
            self.fill()
        out = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        return out

    def answer(self, tag):
        """Lines (and literals) up to the tagged one; raises unless OK."""
        out = []
        while True:
            line = self.read_until(b"\r\n")
            out.append(line)
            m = re.search(rb"\{(\d+)\+?\}\r\n$", line)
            if m:
                out.append(self.read_exact(int(m.group(1))))
                continue
            if line.startswith(tag + b" "):
                if not line[len(tag) + 1:].startswith(b"OK"):
                    raise SystemExit(f"{tag!r}: {line!r}")
                return b"".join(out)

    def cmd(self, text):
        self.n += 1
        tag = b"t%d" % self.n
        self.s.sendall(tag + b" " + text.encode() + b"\r\n")
        return self.answer(tag)

    def login(self, user, password):
        self.cmd(f'LOGIN "{user}" "{password}"')


def connect(host, port, user, password):
    c = Conn(host, int(port))
    c.login(user, password)
    return c


def listing(host, port, user, password, runs):
    out = {"select": [], "fetch": [], "messages": 0}
    for _ in range(int(runs)):
        c = connect(host, port, user, password)
        t0 = time.perf_counter()
        sel = c.cmd("SELECT INBOX")
        t1 = time.perf_counter()
        data = c.cmd("UID FETCH 1:* (FLAGS RFC822.SIZE ENVELOPE)")
        t2 = time.perf_counter()
        out["select"].append(t1 - t0)
        out["fetch"].append(t2 - t1)
        out["messages"] = int(re.search(rb"\* (\d+) EXISTS", sel).group(1))
        out["fetched"] = data.count(b" FETCH (")
        c.s.close()
    print(json.dumps(out))


def bodies(host, port, user, password, count):
    c = connect(host, port, user, password)
    c.cmd("SELECT INBOX")
    rounds = []
    for _ in range(2):
        times = []
        for n in range(1, int(count) + 1):
            t0 = time.perf_counter()
            data = c.cmd(f"FETCH {n} BODY[]")
            times.append(time.perf_counter() - t0)
            assert b"BODY[]" in data, data[:200]
        rounds.append(statistics.median(times))
    print(json.dumps({"first": rounds[0], "again": rounds[1], "count": int(count)}))


def idle(host, port, user, password, rounds, deliver):
    c = connect(host, port, user, password)
    sel = c.cmd("SELECT INBOX")
    exists = int(re.search(rb"\* (\d+) EXISTS", sel).group(1))
    lat = []
    for _ in range(int(rounds)):
        c.s.sendall(b"i IDLE\r\n")
        c.read_until(b"+ ")
        c.read_until(b"\r\n")
        filed = float(subprocess.run(deliver, shell=True, check=True, capture_output=True, text=True).stdout.strip().split()[-1])
        want = b"* %d EXISTS\r\n" % (exists + 1)
        c.read_until(want)
        lat.append(time.time() - filed)
        exists += 1
        c.s.sendall(b"DONE\r\n")
        c.answer(b"i")
    print(json.dumps({"median_ms": statistics.median(lat) * 1000, "max_ms": max(lat) * 1000, "rounds": len(lat)}))


def rss_of(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


def hold(host, port, user, password, n, pattern):
    def pids():
        out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()
        return [int(p) for p in out]

    time.sleep(3)  # what earlier phases freed is returned first
    before = rss_of(pids())
    conns = []
    for _ in range(int(n)):
        c = connect(host, port, user, password)
        c.cmd("SELECT INBOX")
        c.s.sendall(b"i IDLE\r\n")
        c.read_until(b"+ ")
        conns.append(c)
    time.sleep(3)
    after = rss_of(pids())
    print(json.dumps({"connections": len(conns), "rss_before_kib": before, "rss_after_kib": after,
                      "processes": len(pids())}))


if __name__ == "__main__":
    what, args = sys.argv[1], sys.argv[2:]
    {"listing": listing, "bodies": bodies, "idle": lambda *a: idle(*a[:5], " ".join(a[5:])),
     "hold": lambda *a: hold(*a[:5], " ".join(a[5:]))}[what](*args)
