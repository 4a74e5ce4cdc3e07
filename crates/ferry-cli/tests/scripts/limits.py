"""Limits at their boundaries, over real FTP sessions.

Usage: limits.py HOST PORT FILES_DIR
"""
import ftplib
import io
import os
import sys
import threading
import time

HOST, PORT, FILES = sys.argv[1], int(sys.argv[2]), sys.argv[3]


def session(user, password="pw", source=None):
    f = ftplib.FTP(source_address=(source, 0) if source else None)
    f.connect(HOST, PORT, timeout=60)
    f.login(user, password)
    return f


def expect_error(code, fn, *args):
    try:
        fn(*args)
    except ftplib.all_errors as e:
        assert str(e).startswith(code), f"expected {code}, got {e}"
        return str(e)
    raise AssertionError(f"expected {code} from {fn.__name__}{args}")


def put(f, name, data, cmd="STOR"):
    f.storbinary(f"{cmd} {name}", io.BytesIO(data))


def on_disk(user, name):
    p = os.path.join(FILES, user, name)
    if not os.path.exists(p):
        return None
    with open(p, "rb") as fh:
        return fh.read()


# --- quota_bytes = 100000, quota_files = 3 ----------------------------------
f = session("quota")
put(f, "f1", b"a" * 60_000)
r = expect_error("552", put, f, "f2", b"b" * 50_000)        # crosses at byte 40,001
assert on_disk("quota", "f2") is None, "nothing of an over-quota new file is kept"
put(f, "f2", b"b" * 40_000)                                 # exactly at the quota
expect_error("552", put, f, "f3", b"c")                     # the byte that crosses
assert on_disk("quota", "f3") is None
expect_error("552", put, f, "f1", b"d" * 60_001)            # replacing: one byte too many
assert on_disk("quota", "f1") == b"a" * 60_000, "the replaced file keeps its old content"
put(f, "f1", b"e" * 30_000)                                 # replacing with less frees room
expect_error("552", put, f, "f1", b"g" * 40_000, "APPE")    # room is 30,000
assert on_disk("quota", "f1") == b"e" * 30_000 + b"g" * 30_000, "APPE stores up to the quota, nothing beyond"
f.delete("f2")                                              # frees 40,000 bytes and a file
put(f, "f2", b"h" * 40_000)
f.delete("f2")
put(f, "a", b"1")
put(f, "b", b"1")                                           # f1, a, b: 3 files
r = expect_error("552", put, f, "c", b"1")                  # the fourth file
assert "quota_files" in r, r
put(f, "a", b"22")                                          # replacing is not a new file
f.quit()

# --- max_file_size = 50000 ----------------------------------------------------
f = session("sized")
put(f, "ok", b"x" * 50_000)
expect_error("552", put, f, "big", b"x" * 50_001)
assert on_disk("sized", "big") is None
expect_error("552", put, f, "ok", b"y", "APPE")
assert on_disk("sized", "ok") == b"x" * 50_000
# A client still sending after the byte that crosses the limit: what it sends
# is taken and dropped (not answered with a reset), and it reads the 552.
conn = f.transfercmd("STOR late")
conn.sendall(b"z" * 60_000)                                 # crosses at 50,001
for _ in range(3):                                          # a closed socket would reset these
    time.sleep(0.3)
    conn.sendall(b"z" * 60_000)
conn.close()
expect_error("552", f.voidresp)
assert on_disk("sized", "late") is None
f.quit()

# --- allowed_files / denied_files ----------------------------------------------
f = session("patterns")
put(f, "notes.txt", b"t")
r = expect_error("553", put, f, "setup.exe", b"x")           # denied_files wins over allowed_files
r = expect_error("553", put, f, "SETUP.EXE", b"x")           # case does not matter
expect_error("553", put, f, "photo.jpg", b"x")              # not in allowed_files
expect_error("553", f.rename, "notes.txt", "notes.exe")     # renaming into a refused name
assert on_disk("patterns", "notes.txt") == b"t"
assert on_disk("patterns", "setup.exe") is None
f.quit()

# --- allow_from / deny_from: the first address outside -------------------------
session("net").quit()                                        # 127.0.0.1 is in 127.0.0.0/31
expect_error("530", session, "net", "pw", "127.0.0.2")      # the first address outside
expect_error("530", session, "denied", "pw")                # deny_from 127.0.0.1 beats allow_from 127.0.0.0/8
session("denied", "pw", "127.0.0.3").quit()

# --- login_hours ---------------------------------------------------------------
session("daytime").quit()                                    # hours around now
r = expect_error("530", session, "nighttime")               # hours that ended a minute ago
assert "time" in r, r

# --- max_sessions: the user's own value, then the group's -----------------------
a = session("solo")
r = expect_error("421", session, "solo")
a.quit()
time.sleep(0.2)
session("solo").quit()                                       # the place is free again
one, two = session("paired"), session("paired")              # group "pairs": 2
expect_error("421", session, "paired")
one.quit(); two.quit()
three = [session("own_limit") for _ in range(3)]             # user 3 beats group 2
expect_error("421", session, "own_limit")
for s in three:
    s.quit()

# --- download_rate shared by all of a user's sessions --------------------------
with open(os.path.join(FILES, "slow", "4m.bin"), "wb") as fh:
    fh.write(os.urandom(4 * 1024 * 1024))
with open(os.path.join(FILES, "slow", "2m.bin"), "wb") as fh:
    fh.write(os.urandom(2 * 1024 * 1024))
f = session("slow")
start = time.monotonic()
f.retrbinary("RETR 4m.bin", lambda b: None)
alone = time.monotonic() - start
assert alone >= 3.5, f"4 MiB at 1 MiB/s took {alone:.2f}s"
f.quit()
times = []


def fetch():
    g = session("slow")
    g.retrbinary("RETR 2m.bin", lambda b: None)
    g.quit()


start = time.monotonic()
workers = [threading.Thread(target=fetch) for _ in range(2)]
for w in workers:
    w.start()
for w in workers:
    w.join()
together = time.monotonic() - start
assert together >= 3.5, f"two sessions moved 4 MiB in {together:.2f}s: the rate is not shared"

# upload_rate
f = session("slow")
start = time.monotonic()
put(f, "up.bin", os.urandom(2 * 1024 * 1024))
took = time.monotonic() - start
assert took >= 1.7, f"2 MiB up at 1 MiB/s took {took:.2f}s"
f.quit()
print(f"limits OK (download alone {alone:.2f}s, shared {together:.2f}s, upload {took:.2f}s)")
