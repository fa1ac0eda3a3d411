"""An IMAP session by Python's imaplib (a client no one here wrote), run by
tests/it/imap.rs against a node: argv = host port user password. Prints
one JSON object of what it saw; any assertion failing exits non-zero."""
import imaplib
import json
import re
import sys

host, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
seen = {}
m = imaplib.IMAP4(host, port)
seen["capabilities"] = sorted(m.capabilities)
try:
    m.login(user, "wrong password")
    raise SystemExit("a wrong password was accepted")
except imaplib.IMAP4.error as e:
    seen["wrong_password"] = str(e)
typ, _ = m.login(user, password)
assert typ == "OK", typ
typ, folders = m.list()
seen["folders"] = sorted(f.decode() for f in folders)
typ, data = m.select("INBOX")
assert typ == "OK", (typ, data)
seen["exists"] = int(data[0])
typ, data = m.uid("FETCH", "1:*", "(FLAGS RFC822.SIZE ENVELOPE)")
assert typ == "OK", (typ, data)
seen["listing"] = [d.decode(errors="replace") if isinstance(d, bytes) else d[0].decode() for d in data]
typ, data = m.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
assert typ == "OK", (typ, data)
seen["subject_field"] = data[0][1].decode()
typ, data = m.fetch("1", "(FLAGS)")
seen["flags_after_peek"] = data[0].decode()
typ, data = m.fetch("1", "(BODY[])")
assert typ == "OK", (typ, data)
seen["body"] = data[0][1].decode()
typ, data = m.fetch("1", "(FLAGS)")
seen["flags_after_read"] = data[0].decode()
typ, data = m.fetch("1", "(BODY[TEXT]<0.5>)")
seen["partial"] = data[0][1].decode() if isinstance(data[0], tuple) else data[0].decode()
typ, data = m.fetch("1", "(BODYSTRUCTURE)")
seen["bodystructure"] = data[0].decode()
typ, data = m.search(None, "SUBJECT", "imap")
seen["search_subject"] = data[0].decode()
typ, data = m.search(None, "UNSEEN")
seen["search_unseen"] = data[0].decode()
typ, data = m.store("1", "+FLAGS", "(\\Flagged)")
seen["store"] = data[0].decode()
typ, data = m.create("Projects")
assert typ == "OK", (typ, data)
typ, data = m.create("Projects")
seen["create_twice"] = typ + " " + data[0].decode()
typ, data = m.status("INBOX", "(MESSAGES UNSEEN UIDNEXT UIDVALIDITY)")
seen["status"] = data[0].decode()
typ, data = m.uid("COPY", "1:*", "Projects")
seen["copy"] = typ + " COPYUID " + repr(m.response("COPYUID")[1])
typ, data = m._simple_command("MOVE", "1", "Projects")
seen["move"] = typ
seen["move_untagged"] = [x.decode() for x in m.untagged_responses.pop("EXPUNGE", [])]
typ, data = m.select("Projects")
seen["projects_exists"] = int(data[0])
typ, data = m.fetch("1:*", "(UID FLAGS)")
seen["projects_listing"] = [d.decode() for d in data]
typ, data = m.store("1", "+FLAGS", "(\\Deleted)")
typ, data = m.expunge()
seen["expunge"] = [d.decode() for d in data if d]
typ, data = m.select("Projects")
seen["projects_after_expunge"] = int(data[0])
typ, data = m.append("Drafts", "(\\Draft)", None, b"From: " + user.encode() + b"\r\nSubject: draft\r\n\r\nunfinished\r\n")
seen["append"] = typ + " " + data[0].decode()
typ, data = m.select("Drafts")
typ, data = m.fetch("1", "(FLAGS BODY[])")
seen["draft"] = data[0][1].decode()
seen["bad_command"] = m._simple_command("FROBNICATE") if False else None
try:
    m._simple_command("FETCH", "99", "(FLAGS)")
except imaplib.IMAP4.error as e:
    seen["fetch_past_end"] = str(e)
typ, data = m.logout()
seen["logout"] = typ
print(json.dumps(seen))
