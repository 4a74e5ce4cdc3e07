"""Logins and per-path permissions as the server core enforces them.

Usage: policy_basics.py HOST PORT FILES_DIR
"""
import ftplib
import io
import os
import sys

HOST, PORT, FILES = sys.argv[1], int(sys.argv[2]), sys.argv[3]


def expect_error(code, fn, *args):
    try:
        fn(*args)
    except ftplib.all_errors as e:
        assert str(e).startswith(code), f"expected {code}, got {e}"
        return
    raise AssertionError(f"expected {code} from {fn.__name__}{args}")


def session():
    f = ftplib.FTP()
    f.connect(HOST, PORT, timeout=30)
    return f

# Wrong password and unknown user: the same 530.
f = session()
expect_error("530", f.login, "alice", "wrong")
f = session()
expect_error("530", f.login, "mallory", "alice-pw")

# Commands before login: 530.
f = session()
expect_error("530", f.sendcmd, "PWD")
expect_error("530", f.sendcmd, "RETR x")
expect_error("503", f.sendcmd, "PASS x")
f.quit()

# Anonymous: read-only in /pub.
with open(os.path.join(FILES, "pub", "readme.txt"), "wb") as fh:
    fh.write(b"public")
f = session()
assert f.login().startswith("230")  # anonymous / anonymous@
assert f.nlst() == ["readme.txt"]
buf = io.BytesIO()
f.retrbinary("RETR readme.txt", buf.write)
assert buf.getvalue() == b"public"
expect_error("550", f.storbinary, "STOR up.txt", io.BytesIO(b"x"))
expect_error("550", f.delete, "readme.txt")
expect_error("550", f.mkd, "dir")
assert not os.path.exists(os.path.join(FILES, "pub", "up.txt"))
f.quit()
f = session()
assert f.login("ftp", "me@example.com").startswith("230")
f.quit()

# bob: group "readers" gives list+download at /, his own rule allows upload in /inbox.
with open(os.path.join(FILES, "bob", "doc.txt"), "wb") as fh:
    fh.write(b"doc")
f = session()
f.login("bob", "bob-pw")
buf = io.BytesIO()
f.retrbinary("RETR doc.txt", buf.write)
assert buf.getvalue() == b"doc"
expect_error("550", f.storbinary, "STOR new.txt", io.BytesIO(b"x"))
expect_error("550", f.delete, "doc.txt")
expect_error("550", f.rename, "doc.txt", "inbox/doc.txt")
f.storbinary("STOR inbox/up.txt", io.BytesIO(b"uploaded"))
with open(os.path.join(FILES, "bob", "inbox", "up.txt"), "rb") as fh:
    assert fh.read() == b"uploaded"
# No overwrite permission in /inbox: replacing is refused and the file is kept.
expect_error("550", f.storbinary, "STOR inbox/up.txt", io.BytesIO(b"replaced"))
with open(os.path.join(FILES, "bob", "inbox", "up.txt"), "rb") as fh:
    assert fh.read() == b"uploaded"
# /inbox has no download permission (bob's own rule there beats the group's /).
expect_error("550", f.retrbinary, "RETR inbox/up.txt", lambda b: None)
# Leaving the home is impossible: .. stops at the home.
f.cwd("../../..")
assert f.pwd() == "/"
assert "doc.txt" in f.nlst()
f.quit()
print("policy basics OK")
