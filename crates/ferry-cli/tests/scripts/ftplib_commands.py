"""Every command of the server core, driven by Python's ftplib.

Usage: ftplib_commands.py HOST PORT FILES_DIR
Exits non-zero (with the failing check) when anything is off.
"""
import ftplib
import hashlib
import io
import os
import socket
import sys
import zlib

HOST, PORT, FILES = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ALICE = os.path.join(FILES, "alice")


def expect_error(code, fn, *args):
    try:
        fn(*args)
    except ftplib.all_errors as e:
        assert str(e).startswith(code), f"expected {code}, got {e}"
        return str(e)
    raise AssertionError(f"expected {code}, got success from {fn.__name__}{args}")


def connect(user="alice", password="alice-pw"):
    f = ftplib.FTP()
    f.connect(HOST, PORT, timeout=30)
    f.login(user, password)
    return f


def get(f, name, rest=None):
    buf = io.BytesIO()
    f.retrbinary(f"RETR {name}", buf.write, rest=rest)
    return buf.getvalue()


f = connect()
assert f.getwelcome().startswith("220")

# --- informational commands -------------------------------------------------
feat = f.sendcmd("FEAT")
for word in ["EPRT", "EPSV", "MDTM", "MFMT", "MLST", "PASV", "REST STREAM", "SIZE", "UTF8", "HASH"]:
    assert word in feat, f"FEAT lacks {word}: {feat}"
assert f.sendcmd("SYST").startswith("215 UNIX")
assert f.sendcmd("NOOP").startswith("200")
assert f.sendcmd("noop").startswith("200"), "command words are case-insensitive"
help_text = f.sendcmd("HELP")
assert help_text.startswith("214") and "MLSD" in help_text
assert f.sendcmd("HELP RETR").startswith("214")
assert f.sendcmd("OPTS UTF8 ON").startswith("200")
assert f.sendcmd("STAT").startswith("211")
assert f.sendcmd("ALLO 1000").startswith("202")
assert f.sendcmd("ACCT whatever").startswith("202")
assert f.sendcmd("MODE S").startswith("200")
expect_error("504", f.sendcmd, "MODE B")
assert f.sendcmd("STRU F").startswith("200")
expect_error("504", f.sendcmd, "STRU R")
assert f.sendcmd("TYPE L 8").startswith("200")
expect_error("504", f.sendcmd, "TYPE E")
assert f.sendcmd("TYPE I").startswith("200")
assert f.sendcmd("SITE HELP").startswith("214")
expect_error("502", f.sendcmd, "SITE EXEC ls")

# --- directories -------------------------------------------------------------
assert f.pwd() == "/"
assert f.sendcmd("XPWD").startswith('257 "/"')
assert f.mkd("d1") == "/d1"
assert f.sendcmd("XMKD d2").startswith('257 "/d2"')
assert os.path.isdir(os.path.join(ALICE, "d1")) and os.path.isdir(os.path.join(ALICE, "d2"))
expect_error("550", f.mkd, "d1")
f.cwd("d1")
assert f.pwd() == "/d1"
assert f.sendcmd("XCWD /d2").startswith("250")
assert f.pwd() == "/d2"
assert f.sendcmd("CDUP").startswith("250") and f.pwd() == "/"
f.cwd("d1")
assert f.sendcmd("XCUP").startswith("250") and f.pwd() == "/"
expect_error("550", f.cwd, "nope")
f.rmd("d1")
assert f.sendcmd("XRMD d2").startswith("250")
assert not os.path.exists(os.path.join(ALICE, "d1"))
expect_error("550", f.rmd, "d1")

# --- binary transfers, passive and active ------------------------------------
data = os.urandom(300_000)
f.storbinary("STOR bin.dat", io.BytesIO(data))
with open(os.path.join(ALICE, "bin.dat"), "rb") as fh:
    assert fh.read() == data, "binary upload must be byte-exact"
assert get(f, "bin.dat") == data
f.set_pasv(False)  # PORT
assert get(f, "bin.dat") == data
f.storbinary("STOR bin2.dat", io.BytesIO(data[:1000]))
assert get(f, "bin2.dat") == data[:1000]
f.set_pasv(True)

# EPRT, by hand
srv = socket.create_server(("127.0.0.1", 0))
port = srv.getsockname()[1]
assert f.sendcmd(f"EPRT |1|127.0.0.1|{port}|").startswith("200")
f.putcmd("RETR bin2.dat")
assert f.getresp().startswith("150")
conn, _ = srv.accept()
got = b""
while chunk := conn.recv(65536):
    got += chunk
conn.close()
srv.close()
assert f.voidresp().startswith("226")
assert got == data[:1000]

# EPSV by hand
resp = f.sendcmd("EPSV")
assert resp.startswith("229")
eport = int(resp.split("|||")[1].split("|")[0])
d = socket.create_connection((HOST, eport))
f.putcmd("RETR bin2.dat")
assert f.getresp().startswith("150")
got = b""
while chunk := d.recv(65536):
    got += chunk
d.close()
assert f.voidresp().startswith("226") and got == data[:1000]

# --- ASCII transfers convert line endings both ways --------------------------
f.storlines("STOR text.txt", io.BytesIO(b"one\r\ntwo\r\nthree\r\n"))
with open(os.path.join(ALICE, "text.txt"), "rb") as fh:
    assert fh.read() == b"one\ntwo\nthree\n", "TYPE A upload must store LF"
lines = []
f.retrlines("RETR text.txt", lines.append)
assert lines == ["one", "two", "three"], lines
f.voidcmd("TYPE A")
raw = []
f.retrbinary("RETR text.txt", raw.append)  # retrbinary re-sends TYPE I, so do it by hand
f.voidcmd("TYPE A")
conn = f.transfercmd("RETR text.txt")
wire = b""
while chunk := conn.recv(65536):
    wire += chunk
conn.close()
f.voidresp()
assert wire == b"one\r\ntwo\r\nthree\r\n", wire
f.voidcmd("TYPE I")

# --- resume and append --------------------------------------------------------
assert get(f, "bin.dat", rest=123_456) == data[123_456:]
f.storbinary("STOR part.dat", io.BytesIO(data[:100_000]))
f.storbinary("STOR part.dat", io.BytesIO(data[100_000:]), rest=100_000)
assert get(f, "part.dat") == data
f.storbinary("APPE part.dat", io.BytesIO(b"tail"))
assert get(f, "part.dat") == data + b"tail"
f.storbinary("APPE new-by-appe.dat", io.BytesIO(b"fresh"))
assert get(f, "new-by-appe.dat") == b"fresh"
assert f.sendcmd("REST 5").startswith("350")
expect_error("554", f.retrbinary, "RETR text.txt", lambda b: None, 8192, 10_000)

# STOU
def stou(arg=""):
    host, port = f.makepasv()
    conn = socket.create_connection((host, port))
    resp = f.sendcmd(("STOU " + arg).strip())
    return conn, resp


conn, resp = stou()
assert resp.startswith("150 FILE: "), resp
unique_name = resp.split("FILE: ", 1)[1].strip()
conn.sendall(b"unique")
conn.close()
assert f.voidresp().startswith("226")
assert get(f, unique_name) == b"unique"
conn, resp = stou("bin2.dat")
second = resp.split("FILE: ", 1)[1].strip()
conn.close()
f.voidresp()
assert second != "bin2.dat" and second.startswith("bin2.dat"), second

# --- ABOR during a download and an upload -------------------------------------
big = os.urandom(64 * 1024 * 1024)
with open(os.path.join(ALICE, "big.dat"), "wb") as fh:
    fh.write(big)
conn = f.transfercmd("RETR big.dat")
conn.recv(1000)
resp = f.abort()
assert resp.startswith("426"), resp
conn.close()
assert f.voidresp().startswith("226")
assert f.sendcmd("NOOP").startswith("200"), "session usable after ABOR"

# The same file whole (a long plain download: the server's own-thread sendfile
# loop), passive; then active (PORT) from an offset.
assert get(f, "big.dat") == big, "64 MiB download differs"
f.set_pasv(False)
assert get(f, "big.dat", rest=1_000_000) == big[1_000_000:], "active download from an offset differs"
f.set_pasv(True)

original = b"keep me" * 1000
f.storbinary("STOR precious.dat", io.BytesIO(original))
conn = f.transfercmd("STOR precious.dat")
conn.sendall(b"x" * 100_000)
resp = f.abort()
assert resp[:3] in ("426", "226"), resp
conn.close()
if resp.startswith("426"):
    f.voidresp()
assert get(f, "precious.dat") == original, "an aborted upload must not damage the file it was replacing"

# --- listings ------------------------------------------------------------------
names = f.nlst()
for n in ["bin.dat", "text.txt", "part.dat"]:
    assert n in names, (n, names)
listing = []
f.retrlines("LIST", listing.append)
line = next(l for l in listing if l.endswith(" bin.dat"))
assert line.startswith("-rw") and " 300000 " in line, line
listing = []
f.retrlines("LIST -la", listing.append)
assert any(l.endswith(" bin.dat") for l in listing)
facts = dict(f.mlsd())
assert facts["bin.dat"]["type"] == "file" and facts["bin.dat"]["size"] == "300000"
assert "r" in facts["bin.dat"]["perm"] and "w" in facts["bin.dat"]["perm"]
assert f.sendcmd("OPTS MLST type;size;").startswith("200")
facts = dict(f.mlsd())
assert set(facts["bin.dat"].keys()) == {"type", "size"}, facts["bin.dat"]
f.sendcmd("OPTS MLST type;size;modify;perm;unique;")
mlst = f.sendcmd("MLST bin.dat")
assert mlst.startswith("250-") and "type=file;size=300000;" in mlst and "/bin.dat" in mlst, mlst
stat = f.sendcmd("STAT bin.dat")
assert stat.startswith("213") and "bin.dat" in stat, stat
stat = f.sendcmd("STAT /")
assert "text.txt" in stat and stat.rstrip().endswith("213 End of status."), stat
assert f.nlst("*.txt") == ["text.txt"], f.nlst("*.txt")

# Names with spaces, UTF-8, a leading dash, 255 bytes round-trip.
special = ["with space.txt", " leading space", "ünïcödé-日本.txt", "-dash", "x" * 251 + ".txt"]
for i, name in enumerate(special):
    f.storbinary(f"STOR {name}", io.BytesIO(name.encode() * 3))
    assert os.path.exists(os.path.join(ALICE, name)), name
names = f.nlst()
listing = []
f.retrlines("LIST", listing.append)
mlsd_names = [n for n, _ in f.mlsd()]
for name in special:
    assert name in names, name
    assert name in mlsd_names, name
    assert any(l.endswith(" " + name) for l in listing), name
    assert get(f, name) == name.encode() * 3, name
expect_error("550", f.storbinary, "STOR " + "y" * 256, io.BytesIO(b"x"))

# --- file operations -----------------------------------------------------------
assert f.size("bin.dat") == 300_000
expect_error("550", f.size, "nope")
mdtm = f.sendcmd("MDTM bin.dat")
import time
expected = time.strftime("%Y%m%d%H%M%S", time.gmtime(os.stat(os.path.join(ALICE, "bin.dat")).st_mtime))
assert mdtm == "213 " + expected, (mdtm, expected)
assert f.sendcmd("MFMT 20200101000000 bin.dat").startswith("213")
assert int(os.stat(os.path.join(ALICE, "bin.dat")).st_mtime) == 1577836800
assert f.sendcmd("MDTM bin.dat") == "213 20200101000000"
assert f.sendcmd("SITE CHMOD 600 bin.dat").startswith("200")
assert os.stat(os.path.join(ALICE, "bin.dat")).st_mode & 0o777 == 0o600
assert f.sendcmd("SITE CHMOD 644 bin.dat").startswith("200")
expect_error("501", f.sendcmd, "SITE CHMOD xyz bin.dat")
f.rename("bin2.dat", "renamed.dat")
assert get(f, "renamed.dat") == data[:1000]
expect_error("503", f.sendcmd, "RNTO x")
expect_error("550", f.rename, "nope", "x")
f.delete("renamed.dat")
assert not os.path.exists(os.path.join(ALICE, "renamed.dat"))
expect_error("550", f.delete, "renamed.dat")

# --- checksums -------------------------------------------------------------------
whole = data
assert f.sendcmd("XCRC bin.dat") == "250 %08X" % zlib.crc32(whole)
assert f.sendcmd("XMD5 bin.dat") == "250 " + hashlib.md5(whole).hexdigest()
assert f.sendcmd("XSHA1 bin.dat") == "250 " + hashlib.sha1(whole).hexdigest()
assert f.sendcmd("XSHA256 bin.dat") == "250 " + hashlib.sha256(whole).hexdigest()
assert f.sendcmd("XMD5 bin.dat 10 5000") == "250 " + hashlib.md5(whole[10:5000]).hexdigest()
h = f.sendcmd("HASH bin.dat")
assert h == f"213 SHA-256 0-299999 {hashlib.sha256(whole).hexdigest()} bin.dat", h
assert f.sendcmd("OPTS HASH MD5") == "200 MD5"
assert f.sendcmd("RANG 100 199").startswith("350")
h = f.sendcmd("HASH bin.dat")
assert h == f"213 MD5 100-199 {hashlib.md5(whole[100:200]).hexdigest()} bin.dat", h
assert f.sendcmd("OPTS HASH CRC32") == "200 CRC32"
assert f.sendcmd("HASH bin.dat").split()[3] == "%08X" % zlib.crc32(whole)
expect_error("504", f.sendcmd, "OPTS HASH WHIRLPOOL")

# --- EPSV ALL, REIN, QUIT --------------------------------------------------------
g = connect()
assert g.sendcmd("EPSV ALL").startswith("200")
expect_error("503", g.sendcmd, "PASV")
expect_error("503", g.sendcmd, "PORT 127,0,0,1,200,1")
assert g.sendcmd("EPSV").startswith("229")
assert g.sendcmd("REIN").startswith("220")
expect_error("530", g.sendcmd, "PWD")
g.login("alice", "alice-pw")
assert g.pwd() == "/"
assert g.quit().startswith("221")

assert f.quit().startswith("221")
print("ftplib: all commands OK")
