#!/usr/bin/env python3
"""ferry's benchmark harness: ferry next to vsftpd, ProFTPD and Pure-FTPd on
loopback, the same workloads against each, medians of several runs, and ratios
to the best peer. Not part of `cargo test`; see docs/benchmarks.md.

Usage (from bench/run.sh, which builds and installs first):
    python3 bench/run.py [--smoke] [--runs N] [--bin DIR] [--out FILE]

Every server serves the same directory on tmpfs (/dev/shm), with the same
account, no transfer logs, and its usual password hashing (ferry argon2id,
the others sha512-crypt). The machine's limits are measured in the same run: a
loopback TCP stream, a page-cache read, and (in every round of (a)) the same
reader taking the file from a bare sendfile loop.
"""

import argparse
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = "/dev/shm/ferry-bench"
DATA = ROOT + "/data"
PEERS = os.environ.get("FERRY_PEERS", "/opt/ferry-peers")
USER, PASSWORD = "ferrypeer", "ferrypeer-pw"  # the system user vsftpd logs in


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, banner=True, limit=20):
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                if not banner or s.recv(3) == b"220":
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nothing answers on port %d" % port)


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=True, check=True, **kw)


class Server:
    def __init__(self, name, port, proc, tls=False):
        self.name, self.port, self.proc, self.tls = name, port, proc, tls

    def url(self, path="", scheme="ftp"):
        return "%s://%s:%s@127.0.0.1:%d/%s" % (scheme, USER, PASSWORD, self.port, path)

    def stop(self):
        subprocess.run(["pkill", "-KILL", "-P", str(self.proc.pid)], check=False)
        self.proc.kill()
        self.proc.wait()


def prepare(scale):
    if os.path.exists(ROOT):
        shutil.rmtree(ROOT)
    os.makedirs(DATA + "/small")
    os.makedirs(DATA + "/many")
    os.makedirs(DATA + "/up")
    os.makedirs(ROOT + "/empty")
    sh("head -c %d /dev/urandom > %s/big.bin" % (scale["big"], DATA))
    if scale["big"] > 64 << 20:
        sh("head -c %d %s/big.bin > %s/m64.bin" % (64 << 20, DATA, DATA))
    with open(DATA + "/f64k.bin", "wb") as f:
        f.write(os.urandom(64 * 1024))
    for i in range(scale["small"]):
        with open("%s/small/f%d" % (DATA, i), "wb") as f:
            f.write(os.urandom(4096))
    for i in range(scale["many"]):
        os.close(os.open("%s/many/entry-%06d.dat" % (DATA, i), os.O_CREAT | os.O_WRONLY, 0o644))
    sh("chown -R %s %s && chmod -R a+rX %s && chmod 777 %s/up" % (USER, DATA, ROOT, DATA))


def start_ferry(bindir, tmp, name="ferry", baseline=False, congestion=None):
    """ferry as shipped; or, with `baseline`, without the optimisations that
    have a switch (sendfile, the login cache, CUBIC on loopback data
    connections), to show what they buy. `congestion` overrides
    `loopback_congestion_control` (for measuring by hand)."""
    if congestion is None:
        congestion = "system" if baseline else "cubic"
    port = free_port()
    h = subprocess.run([bindir + "/ferry", "hash-password"], input=PASSWORD.encode(), capture_output=True, check=True)
    conf = """
[server]
listen = ["127.0.0.1:%d"]
max_connections = 20000
max_connections_per_ip = 20000
idle_timeout = "30m"
login_timeout = "30m"
sendfile = %s
loopback_congestion_control = "%s"
[storage]
root = "%s"
[accounts]
store = "config"
login_cache = "%s"
[log]
audit = ""
xferlog = ""
[[users]]
name = "%s"
password_hash = "%s"
home = "/data"
""" % (port, "false" if baseline else "true", congestion, ROOT, "0s" if baseline else "15m", USER, h.stdout.decode().strip())
    d = tmp + "/" + name
    os.makedirs(d, exist_ok=True)
    with open(d + "/ferry.toml", "w") as f:
        f.write(conf)
    proc = subprocess.Popen([bindir + "/ferry", "serve", "--config", "ferry.toml"], cwd=d,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return Server(name, port, proc, tls=True)


def start_vsftpd(tmp):
    port = free_port()
    d = tmp + "/vsftpd"
    os.makedirs(d, exist_ok=True)
    sh("cd %s && openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem -days 2 "
       "-subj /CN=127.0.0.1 2>/dev/null" % d)
    conf = """listen=YES
listen_address=127.0.0.1
listen_port=%d
background=NO
seccomp_sandbox=NO
secure_chroot_dir=%s/empty
anonymous_enable=NO
local_enable=YES
write_enable=YES
local_root=%s
chroot_local_user=YES
allow_writeable_chroot=YES
pam_service_name=vsftpd
userlist_enable=NO
xferlog_enable=NO
max_clients=0
max_per_ip=0
idle_session_timeout=1800
ssl_enable=YES
rsa_cert_file=%s/cert.pem
rsa_private_key_file=%s/key.pem
require_ssl_reuse=YES
force_local_logins_ssl=NO
force_local_data_ssl=NO
ssl_ciphers=HIGH
""" % (port, ROOT, DATA, d, d)
    with open(d + "/vsftpd.conf", "w") as f:
        f.write(conf)
    proc = subprocess.Popen(["vsftpd", d + "/vsftpd.conf"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return Server("vsftpd", port, proc, tls=True)


def crypt(password):
    return subprocess.run(["openssl", "passwd", "-6", password], capture_output=True, check=True).stdout.decode().strip()


def start_proftpd(tmp):
    port = free_port()
    d = tmp + "/proftpd"
    os.makedirs(d, exist_ok=True)
    uid = int(subprocess.run(["id", "-u", USER], capture_output=True, check=True).stdout)
    with open(d + "/passwd", "w") as f:
        f.write("%s:%s:%d:%d::%s:/bin/sh\n" % (USER, crypt(PASSWORD), uid, uid, DATA))
    os.chmod(d + "/passwd", 0o600)
    # PassivePorts, as Pure-FTPd's -p: without a range ProFTPD binds its
    # passive sockets to port 0, and the kernel's search for a free port walks
    # the TIME_WAIT sockets of finished transfers: past ~7,000 of them (the
    # runs of (d)) it went from ~3,000 to ~150 files/s, and in a full run it
    # failed (d)'s later rows (docs/benchmarks.md, session 12).
    conf = """ServerType standalone
DefaultServer on
Port %d
DefaultAddress 127.0.0.1
UseIPv6 off
User nobody
Group nogroup
PidFile %s/pid
ScoreboardFile %s/scoreboard
DelayTable none
WtmpLog off
TransferLog none
SystemLog %s/system.log
AuthOrder mod_auth_file.c
AuthUserFile %s/passwd
RequireValidShell off
DefaultRoot ~
AllowOverwrite on
UseReverseDNS off
MaxInstances 20000
TimeoutIdle 1800
PassivePorts 20000 60000
""" % (port, d, d, d, d)
    with open(d + "/proftpd.conf", "w") as f:
        f.write(conf)
    env = dict(os.environ, LD_LIBRARY_PATH=PEERS + "/usr/lib/x86_64-linux-gnu")
    proc = subprocess.Popen([PEERS + "/usr/sbin/proftpd", "-n", "-c", d + "/proftpd.conf"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return Server("proftpd", port, proc)


def start_pureftpd(tmp):
    port = free_port()
    d = tmp + "/pureftpd"
    os.makedirs(d, exist_ok=True)
    uid = int(subprocess.run(["id", "-u", USER], capture_output=True, check=True).stdout)
    with open(d + "/passwd", "w") as f:
        f.write("%s:%s:%d:%d::%s/./::::::::::::\n" % (USER, crypt(PASSWORD), uid, uid, DATA))
    subprocess.run([PEERS + "/usr/bin/pure-pw", "mkdb", d + "/pdb", "-f", d + "/passwd"], check=True)
    proc = subprocess.Popen([PEERS + "/usr/sbin/pure-ftpd", "-S", "127.0.0.1,%d" % port, "-l", "puredb:" + d + "/pdb",
                             "-E", "-A", "-H", "-c", "10000", "-C", "10000", "-p", "20000:60000", "-I", "30"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return Server("pure-ftpd", port, proc)


def tcp_out_segments():
    """The machine's count of TCP segments sent (/proc/net/snmp, OutSegs)."""
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Tcp:")]
    return int(dict(zip(rows[0], rows[1]))["OutSegs"])


def bench_tool(bindir, *args, cpus=None):
    """Runs ferry-bench; on the CPUs `cpus` if given."""
    pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    out = subprocess.run([bindir + "/ferry-bench"] + list(args), capture_output=True, check=True, timeout=900,
                         preexec_fn=pin)
    return json.loads(out.stdout)


def pin_server(server, cpus):
    """Puts every thread of a server's process on `cpus`; the session
    processes a forking server makes from then on inherit them."""
    pid = server.proc.pid
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except OSError:  # a thread that has just ended
            pass


# Per server, how long curl took before each transfer began, for the report.
CURL_SETUP = {}


def curl_speed(server, args):
    """curl's rate for one transfer, from the moment the transfer is about to
    begin (`time_pretransfer`) to its end: the connection, the login and the
    data connection's setup are left out, as the 1 MiB reader and writer leave
    them out. curl 7.88 sometimes waits 200 ms before it even connects the data
    connection, when the server's EPSV reply is in before curl looks for it (a
    race in its state machine that fast servers trigger: ferry, ProFTPD and
    Pure-FTPd alike; docs/benchmarks.md). That wait is the client's; over 1 GiB
    it would move a figure by a quarter, in some runs and not others. The
    setup times go to the report."""
    fmt = "%{size_download} %{size_upload} %{time_pretransfer} %{time_total}"
    out = subprocess.run(["curl", "-s", "-S", "--max-time", "600", "-w", fmt] + args, capture_output=True, timeout=700)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.decode().strip())
    down, up, before, total = (float(x) for x in out.stdout.split())
    CURL_SETUP.setdefault(server.name, []).append(before)
    return (down + up) / max(total - before, 1e-6) / 1e6


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


class Table:
    def __init__(self, servers):
        self.servers = servers
        self.rows = []

    def add(self, name, unit, values, higher_is_better=True, note=""):
        """values: server name -> figure (None: not measured)."""
        peers = {k: v for k, v in values.items() if not k.startswith("ferry") and v is not None}
        best_name, best = (None, None)
        if peers:
            best_name = (max if higher_is_better else min)(peers, key=peers.get)
            best = peers[best_name]
        ratio = None
        f = values.get("ferry")
        if f is not None and best:
            ratio = f / best if higher_is_better else (best / f if f else None)
        self.rows.append((name, unit, values, best_name, ratio, note))
        print("  %s: %s" % (name, json.dumps(values)), flush=True)

    def markdown(self):
        cols = ["workload", "unit"] + self.servers + ["best peer", "ferry vs best"]
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * 2 + "---:|" * (len(self.servers) + 2)]
        for name, unit, values, best_name, ratio, note in self.rows:
            cells = [name + ((" (" + note + ")") if note else ""), unit]
            for s in self.servers:
                v = values.get(s)
                cells.append("n/a" if v is None else ("%.3g" % v if abs(v) < 100 else "%.0f" % v))
            cells.append(best_name or "-")
            cells.append("-" if ratio is None else "%.2f×" % ratio)
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)


def ceiling_under(bindir, algorithm, *args):
    """The bench tool's loopback stream (its arguments `args`) with the sender
    under `algorithm`, or None where the kernel will not set it."""
    try:
        return bench_tool(bindir, "stream", "--congestion", algorithm, *args)["mb_s"]
    except Exception as e:  # the run goes on without that figure
        print("  the stream under %s failed: %s" % (algorithm, e), flush=True)
        return None


def congestion_control():
    """The kernel's default TCP congestion control: with BBR, which paces its
    sending, every server's loopback transfers are slower than with CUBIC."""
    try:
        with open("/proc/sys/net/ipv4/tcp_congestion_control") as f:
            return f.read().strip()
    except OSError:
        return "unknown"


def machine():
    """The CPU, its count and the kernel: loopback figures move with all three
    (the same workloads on two hosts of this VM kind differed by 3x under BBR;
    docs/benchmarks.md)."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return "%s, %d CPU(s), kernel %s" % (model, os.cpu_count() or 0, os.uname().release)


def cpu_stolen():
    """The CPU time the hypervisor gave to others (steal, /proc/stat), in
    seconds summed over all CPUs; None where the kernel does not say."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


PAGE_REPORTING = "/sys/module/page_reporting/parameters/page_reporting_order"
# The machine's own value while a run holds reporting off (in /run, which a
# reboot empties along with the setting itself).
PAGE_REPORTING_SAVED = "/run/ferry-bench-page-reporting-order"


def available_memory():
    """MemAvailable from /proc/meminfo, in bytes (0 where unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


class HostMemory:
    """Keeps this VM's memory backed by the host for the run.

    A VM with free page reporting (virtio-balloon, this project's VMs among
    them) hands memory the guest has freed back to the host within seconds,
    and the next write to it waits for the host to fault it in again: here
    ~400 MB/s against ~2,300 MB/s into memory the guest had just used
    (docs/benchmarks.md, "Memory the host takes back"). Every upload and every
    client download writes a fresh 1 GiB file into tmpfs, so its figure
    depended on whether the pages it got had been reported, not on the
    server or the client. For the run, reporting is held off (the order of
    blocks it reports set above the largest), some GiB are written and freed
    once so that the guest has them backed (at most half of what tmpfs and
    the memory have free), and the setting is put back at the end, however
    the run ends (after SIGKILL, by the next run: the machine's value waits in
    /run). Needs root; elsewhere the run goes on as the
    machine is."""

    def __init__(self):
        self.saved = None
        self.note = "free page reporting: not found"

    def hold(self, gib):
        if gib == 0:
            self.note = "left as the machine has it (smoke run)"
            return
        try:
            with open(PAGE_REPORTING) as f:
                saved = f.read().strip()
            # A run killed before it could put the setting back left the
            # machine's own value here: that one is put back at the end.
            try:
                with open(PAGE_REPORTING_SAVED) as f:
                    saved = f.read().strip() or saved
            except OSError:
                with open(PAGE_REPORTING_SAVED, "w") as f:
                    f.write(saved)
            with open(PAGE_REPORTING, "w") as f:
                f.write("11")
            self.saved = saved
        except OSError as e:
            if os.path.exists(PAGE_REPORTING):
                self.note = "free page reporting left on (%s)" % e.strerror
            return
        size = min(gib << 30, shutil.disk_usage(ROOT).free // 2, available_memory() // 2)
        t0 = time.time()
        warm = ROOT + "/warm-memory"
        try:
            sh("head -c %d /dev/zero > %s" % (size, warm))
            touched = "%.1f GiB touched first (%.0f s)" % (size / (1 << 30), time.time() - t0)
        except (subprocess.CalledProcessError, OSError) as e:
            touched = "touching memory first failed (%s)" % e
        finally:
            if os.path.exists(warm):
                os.remove(warm)
        self.note = "free page reporting held off for the run (order %s → 11), %s" % (saved, touched)

    def restore(self):
        if self.saved is not None:
            try:
                with open(PAGE_REPORTING, "w") as f:
                    f.write(self.saved)
                os.remove(PAGE_REPORTING_SAVED)
            except OSError as e:
                print("could not put back %s = %s: %s" % (PAGE_REPORTING, self.saved, e), file=sys.stderr)
            self.saved = None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true", help="small files, two servers, one run (CI)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--transfer-runs", type=int, default=9,
                    help="runs per figure of the plain 1 GiB transfers, (a) and (b), which take a second each "
                         "and vary most from run to run (default 9)")
    ap.add_argument("--bin", default="target/release")
    ap.add_argument("--out", default=None)
    ap.add_argument("--only", default="abcdefghi",
                    help="the workloads to run, by letter (default all: abcdefghi); e.g. --only ad")
    ap.add_argument("--compare", default=None, metavar="DIR",
                    help="also run the ferry server built in DIR (e.g. an older commit's target/release) as "
                         "'ferry-compare', interleaved with the others in the same run: an A/B of two builds")
    ap.add_argument("--servers", default=None,
                    help="comma-separated servers to run (default all: ferry,ferry-baseline,vsftpd,proftpd,pure-ftpd)")
    a = ap.parse_args()
    scale = dict(big=64 << 20, small=100, many=2000, concurrent=20, logins=20, idle_ferry=100, idle_peer=50) if a.smoke \
        else dict(big=1 << 30, small=1000, many=100000, concurrent=200, logins=200, idle_ferry=10000, idle_peer=500)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else min(65536, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < scale["idle_ferry"] + 100:
        scale["idle_ferry"] = max(100, want - 200)
        print("open files limited to %d: idle sessions measured with %d" % (want, scale["idle_ferry"]), flush=True)
    bindir = os.path.abspath(a.bin)
    started = time.time()
    stolen_before = cpu_stolen()
    print("preparing %s ..." % ROOT, flush=True)
    prepare(scale)
    memory = HostMemory()
    try:
        memory.hold(0 if a.smoke else 6)
        run_workloads(a, scale, bindir, started, stolen_before, memory)
    finally:
        memory.restore()


def run_workloads(a, scale, bindir, started, stolen_before, memory):
    selected = lambda letter: letter in a.only
    runs = 1 if a.smoke else a.runs
    transfer_runs = 1 if a.smoke else max(a.transfer_runs, runs)
    tmp = tempfile.mkdtemp(prefix="ferry-bench-")
    chosen = a.servers.split(",") if a.servers else \
        (["ferry", "vsftpd"] if a.smoke else ["ferry", "ferry-baseline", "vsftpd", "proftpd", "pure-ftpd"])
    if "ferry" not in chosen:
        chosen.insert(0, "ferry")
    if a.compare:
        chosen.append("ferry-compare")
    starters = {
        "ferry": lambda: start_ferry(bindir, tmp),
        # The same configuration from another build; the client stays this one's.
        "ferry-compare": lambda: start_ferry(os.path.abspath(a.compare), tmp, "ferry-compare"),
        "ferry-baseline": lambda: start_ferry(bindir, tmp, "ferry-baseline", baseline=True),
        "vsftpd": lambda: start_vsftpd(tmp),
        "proftpd": lambda: start_proftpd(tmp),
        "pure-ftpd": lambda: start_pureftpd(tmp),
    }
    unknown = [c for c in chosen if c not in starters]
    if unknown:
        sys.exit("unknown server(s): %s" % ", ".join(unknown))
    servers = [starters[c]() for c in starters if c in chosen]
    names = [s.name for s in servers]
    table = Table(names)
    limits = {}
    client_figures = {}
    try:
        print("machine limits", flush=True)
        limits["stream"] = median([bench_tool(bindir, "stream", "--bytes", str(4 * scale["big"]))["mb_s"] for _ in range(runs)])
        # The same stream under CUBIC, which ferry's loopback data connections
        # run (server.loopback_congestion_control): the ceiling ferry's own
        # figures meet on a machine whose default paces (BBR).
        under_cubic = [ceiling_under(bindir, "cubic", "--bytes", str(4 * scale["big"])) for _ in range(runs)]
        under_cubic = [x for x in under_cubic if x is not None]
        limits["stream_cubic"] = under_cubic and median(under_cubic)
        limits["cache"] = median([bench_tool(bindir, "cache-read", "--file", DATA + "/big.bin")["mb_s"] for _ in range(runs)])
        size_label = "%d MiB" % (scale["big"] >> 20)

        def stage(title):
            # With the time since the start, so that a slow workload shows
            # in the log (the full run must stay under 15 minutes).
            print("%s (at %.0f s)" % (title, time.time() - started), flush=True)

        def each(fn):
            out = {}
            for s in servers:
                try:
                    out[s.name] = fn(s)
                except Exception as e:  # a server that fails a workload gets no figure
                    print("  %s failed: %s" % (s.name, e), flush=True)
                    out[s.name] = None
            return out

        def interleaved(fn, n=None, per_round=None):
            """Runs fn(server) `n` times (default `runs`) per server, taking the servers in
            turn in each round (not all runs of one server, then the next), so
            that a drift of the machine over the minutes of a workload does not
            fall on one server; each round starts one server further on, so
            that no server always runs first (right after the previous
            workload) or last. `per_round`, if given, is run once in each
            round, after the servers; its results are returned with the
            servers' under the key None. Returns each server's list of
            results."""
            out = {s.name: [] for s in servers}
            extra = []
            for r in range(n or runs):
                k = r % len(servers)
                for s in servers[k:] + servers[:k]:
                    if out[s.name] is None:
                        continue
                    try:
                        out[s.name].append(fn(s))
                    except Exception as e:  # a server that fails a workload gets no figure
                        print("  %s failed: %s" % (s.name, e), flush=True)
                        out[s.name] = None
                if per_round is not None:
                    try:
                        extra.append(per_round())
                    except Exception as e:  # the run goes on without that figure
                        print("  per-round measurement failed: %s" % e, flush=True)
            if per_round is not None:
                out[None] = extra
            return {k: (v if v else None) for k, v in out.items()}

        def interleaved_median(fn, n=None, per_round=None):
            results = interleaved(fn, n, per_round)
            # Every run's figure goes to the log, the medians to the table.
            print("    runs: " + json.dumps({k or "ceiling": v and [round(x, 4) if isinstance(x, (int, float)) else x for x in v]
                                             for k, v in results.items()}), flush=True)
            if per_round is not None:
                # (the system's congestion control, CUBIC) per round.
                ceiling = results.pop(None) or []
                for i, key in enumerate(("sendfile", "sendfile_cubic")):
                    figures = [c[i] for c in ceiling if c[i] is not None]
                    limits[key] = figures and median(figures)
            return {k: v and median(v) for k, v in results.items()}

        # Each upload makes a new file, removed after it is measured:
        # replacing a file measures something else (ferry writes a replacement
        # beside the old file and renames it over at the end, so that a failed
        # upload leaves the old file whole; the peers truncate the old file
        # first). See docs/benchmarks.md.
        uploads = [0]

        def fresh_upload(s, measure):
            uploads[0] += 1
            name = "up/%s-%d.bin" % (s.name, uploads[0])
            try:
                return measure(s.url(name))
            finally:
                if os.path.exists(DATA + "/" + name):
                    os.remove(DATA + "/" + name)

        if selected("a"):
            stage("(a) download")
            # The same reader as the loopback stream (blocking, 1 MiB reads), so
            # that the client is not what limits the figure; then curl. In
            # each round the same reader also takes the file from a bare
            # sendfile(2) loop with no FTP around it: the most a server that
            # sends from the page cache can give this reader, measured beside
            # the servers rather than minutes before them.
            bare = ("--bytes", str(scale["big"]), "--sendfile", DATA + "/big.bin")
            table.add("(a) download %s (1 MiB reads)" % size_label, "MB/s", interleaved_median(lambda s: bench_tool(
                bindir, "download", "--url", s.url("big.bin"))["mb_s"], transfer_runs, per_round=lambda: (
                    bench_tool(bindir, "stream", *bare)["mb_s"], ceiling_under(bindir, "cubic", *bare))))
            table.add("(a) download %s (curl)" % size_label, "MB/s", interleaved_median(lambda s: curl_speed(
                s, ["-o", "/dev/null", s.url("big.bin")]), transfer_runs))
            if scale["big"] > 64 << 20:
                # A 64 MiB download spends a good part of its time getting up
                # to speed: a server whose sending thread ends up sharing a
                # core with the reader shows here more than over 1 GiB
                # (docs/benchmarks.md, session 7).
                table.add("(a) download 64 MiB (1 MiB reads; time to speed)", "MB/s", interleaved_median(lambda s: bench_tool(
                    bindir, "download", "--url", s.url("m64.bin"))["mb_s"], transfer_runs))
        if selected("b"):
            stage("(b) upload")
            table.add("(b) upload %s (1 MiB writes from memory)" % size_label, "MB/s", interleaved_median(lambda s: fresh_upload(
                s, lambda url: bench_tool(bindir, "upload", "--url", url, "--bytes", str(scale["big"]))["mb_s"]), transfer_runs))
            table.add("(b) upload %s (curl, tmpfs)" % size_label, "MB/s", interleaved_median(lambda s: fresh_upload(
                s, lambda url: curl_speed(s, ["-T", DATA + "/big.bin", url])), transfer_runs))
        if selected("c"):
            stage("(c) FTPS")
            tls = lambda s: s.tls or None
            # As for (a) and (b): first the blocking 1 MiB reader and writer
            # (rustls, TLS 1.2, AES-128-GCM where the server prefers it), then
            # curl, which spends most of its core on small reads and polls.
            # The reader decrypts each record in place, in its 1 MiB buffer:
            # rustls's own reader copies every record twice and was, at 92%
            # of its core, what set ferry's pace (session 23). Its row
            # (`download --tls` without `--in-place`, 2.1–2.4×) was dropped in
            # session 24 to keep the harness within its 15 minutes; curl's
            # row shows what a stock client gets. The in-place downloads run
            # as many times as (a): with three runs each, three full runs of
            # the same code gave 3.35×, 3.41× and 1.82× (session 12). The
            # uploads, at 3–5× and five to fifteen seconds a run for vsftpd,
            # keep three.
            table.add("(c) FTPS PROT P download %s (1 MiB reads, decrypted in place)" % size_label, "MB/s", interleaved_median(
                lambda s: tls(s) and bench_tool(bindir, "download", "--tls", "--in-place", "--url", s.url("big.bin"))["mb_s"],
                transfer_runs))
            # curl's row keeps three runs, as the uploads: at 2.3–3.4× and
            # three and a half seconds a run for vsftpd, nine would take the
            # harness past its 15 minutes (session 23).
            table.add("(c) FTPS PROT P download %s (curl)" % size_label, "MB/s", interleaved_median(lambda s: tls(s) and curl_speed(
                s, ["--ssl-reqd", "-k", "-o", "/dev/null", s.url("big.bin")])))
            table.add("(c) FTPS PROT P upload %s (1 MiB writes, rustls)" % size_label, "MB/s", interleaved_median(
                lambda s: tls(s) and fresh_upload(s, lambda url: bench_tool(
                    bindir, "upload", "--tls", "--url", url, "--bytes", str(scale["big"]))["mb_s"])))
            table.add("(c) FTPS PROT P upload %s (curl)" % size_label, "MB/s", interleaved_median(lambda s: tls(s) and fresh_upload(
                s, lambda url: curl_speed(s, ["--ssl-reqd", "-k", "-T", DATA + "/big.bin", url]))))
        if selected("d"):
            stage("(d) small files")
            all_cpus = os.sched_getaffinity(0)

            def small_files(server_cpus=None, client_cpus=None):
                def run(s):
                    if server_cpus:
                        pin_server(s, server_cpus)
                    try:
                        return bench_tool(bindir, "small-files", "--url", s.url("small/"), "--count",
                                          str(scale["small"]), cpus=client_cpus)["files_s"]
                    finally:
                        if server_cpus:
                            pin_server(s, all_cpus)
                return run

            # A file's time here is mostly the wake-ups of the client and the
            # server; where the scheduler puts the two decides how long those
            # take (on a VM one CPU waking another costs a trip through the
            # hypervisor), and it decides differently from run to run. So: as
            # many runs as the big transfers, and the same workload twice more
            # with the placement fixed, the client and the server on one CPU
            # (the server's own cost shows) and on two (every wake-up crosses).
            table.add("(d) %d × 4 KiB in one session" % scale["small"], "files/s",
                      interleaved_median(small_files(), transfer_runs))

            def segments_per_file(s):
                # TCP segments the machine sent (both sides, every connection)
                # per file: what a file costs on the wire. Nothing else runs.
                before = tcp_out_segments()
                bench_tool(bindir, "small-files", "--url", s.url("small/"), "--count", str(scale["small"]))
                return (tcp_out_segments() - before) / scale["small"]
            table.add("(d) TCP segments per file (both sides)", "count", each(segments_per_file),
                      higher_is_better=False)
            if len(all_cpus) >= 2:
                first, second = sorted(all_cpus)[:2]
                table.add("(d) the same, client and server on one CPU", "files/s",
                          interleaved_median(small_files({first}, {first}), transfer_runs))
                table.add("(d) the same, client and server on two CPUs", "files/s",
                          interleaved_median(small_files({first}, {second}), transfer_runs))
        if selected("e"):
            stage("(e) concurrent sessions")
            conc = interleaved(lambda s: bench_tool(bindir, "concurrent", "--url", s.url("f64k.bin"), "--sessions", str(scale["concurrent"])))
            table.add("(e) %d concurrent logins + 64 KiB" % scale["concurrent"], "s", {k: v and median([r["seconds"] for r in v]) for k, v in conc.items()}, higher_is_better=False)
            table.add("(e) sessions failed (of %d per run)" % scale["concurrent"], "count", {k: v and max(r["failed"] for r in v) for k, v in conc.items()}, higher_is_better=False)
        if selected("f"):
            stage("(f) login latency")
            logins = each(lambda s: bench_tool(bindir, "login", "--url", s.url(), "--count", str(scale["logins"])))
            table.add("(f) connect+login+QUIT, median", "ms", {k: v and v["median_ms"] for k, v in logins.items()}, higher_is_better=False)
            table.add("(f) first login", "ms", {k: v and v["first_ms"] for k, v in logins.items()}, higher_is_better=False, note="the run's first; ferry's cache is warm from the workloads before, ferry-baseline has none")
        if selected("g"):
            stage("(g) idle sessions")
            idle = each(lambda s: None if s.name == "ferry-baseline" else
                        bench_tool(bindir, "idle", "--url", s.url(), "--pid", str(s.proc.pid), "--sessions",
                                   str(scale["idle_ferry"] if s.name == "ferry" else scale["idle_peer"])))
            table.add("(g) idle logged-in session, PSS", "KiB", {k: v and v["kib_per_session"] for k, v in idle.items()}, higher_is_better=False,
                      note="ferry %d sessions, peers %d" % (scale["idle_ferry"], scale["idle_peer"]))
            table.add("(g) idle sessions that failed to log in", "count", {k: v and v["failed"] for k, v in idle.items()}, higher_is_better=False)
        if selected("h"):
            stage("(h) listings")
            for cmd in ["LIST", "MLSD"]:
                res = each(lambda s: None if (cmd == "MLSD" and s.name == "vsftpd") else
                           bench_tool(bindir, "list", "--url", s.url("many/"), "--command", cmd, "--pid", str(s.proc.pid)))
                # A server that sends fewer lines than there are entries (a listing
                # limit) gets no time figure: it did not do the work.
                short = {k: v["lines"] for k, v in res.items() if v and v["lines"] < scale["many"]}
                for k, n in short.items():
                    print("  %s sent %d of %d entries" % (k, n, scale["many"]), flush=True)
                table.add("(h) %s of %d entries" % (cmd, scale["many"]), "s",
                          {k: (None if k in short else v and v["seconds"]) for k, v in res.items()}, higher_is_better=False,
                          note=", ".join("%s sent only %d" % kv for kv in short.items()))
                table.add("(h) %s peak extra server memory" % cmd, "KiB", {k: v and v["peak_extra_kib"] for k, v in res.items()}, higher_is_better=False)
        if selected("i"):
            stage("(i) clients against ferry")
            ferry_server = servers[0]
            out_dir = ROOT + "/client-out"
            os.makedirs(out_dir, exist_ok=True)

            def timed(cmd):
                t0 = time.time()
                subprocess.run(cmd, check=True, capture_output=True, timeout=900)
                return scale["big"] / (time.time() - t0) / 1e6

            def fresh(name):
                p = out_dir + "/" + name
                for f in [p, p + ".ferry-part", p + ".ferry-part.state"]:
                    if os.path.exists(f):
                        os.remove(f)
                return p

            url = ferry_server.url("big.bin")
            clients = {
                "ferry get": lambda: timed([bindir + "/ferry", "get", "-q", url, fresh("ferry.bin")]),
                "curl": lambda: timed(["curl", "-s", "-o", fresh("curl.bin"), url]),
                "lftp get": lambda: timed(["lftp", "-c", "set ftp:ssl-allow no; get %s -o %s" % (url, fresh("lftp.bin"))]),
                "ferry get --segments 4": lambda: timed([bindir + "/ferry", "get", "-q", "--segments", "4", url, fresh("seg.bin")]),
                "lftp pget -n 4": lambda: timed(["lftp", "-c", "set ftp:ssl-allow no; pget -n 4 %s -o %s" % (url, fresh("pget.bin"))]),
            }
            client_figures = {}
            for name, fn in clients.items():
                try:
                    client_figures[name] = median([fn() for _ in range(runs)])
                except Exception as e:
                    print("  %s failed: %s" % (name, e), flush=True)
                    client_figures[name] = None
                print("  %s: %s MB/s" % (name, client_figures[name]), flush=True)
            shutil.rmtree(out_dir, ignore_errors=True)
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(ROOT, ignore_errors=True)

    report = []
    elapsed = time.time() - started
    stolen_after = cpu_stolen()
    # A VM's CPUs taken by the host for others: the "slow spells" of
    # docs/benchmarks.md, in which every figure drops and the ratios move.
    steal = "" if stolen_before is None or stolen_after is None else \
        "; CPU time taken by the hypervisor (steal): %.1f%%" % (
            100 * (stolen_after - stolen_before) / max(elapsed * (os.cpu_count() or 1), 1e-6))
    report.append("Run: %s, %s (%s), %d run(s) per figure (medians; %d for the plain transfers (a) and (b), the FTPS download by the in-place reader and (d))%s; "
                  "%.0f s in all%s." % (
                      time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), os.uname().nodename, machine(), runs,
                      transfer_runs, ", SMOKE (small sizes)" if a.smoke else "", elapsed, steal))
    report.append("")
    report.append("Memory: %s." % memory.note)
    report.append("")
    def under_cubic(key):
        return " (%.0f under CUBIC)" % limits[key] if limits.get(key) else ""

    report.append("Machine limits in the same run: loopback TCP stream %.0f MB/s%s, page-cache read %.0f MB/s%s; "
                  "TCP congestion control %s (ferry's loopback data connections: CUBIC)." % (
                      limits["stream"], under_cubic("stream_cubic"), limits["cache"],
                      ", the same reader taking the file from a bare sendfile loop %.0f MB/s%s" % (
                          limits["sendfile"], under_cubic("sendfile_cubic")) if limits.get("sendfile") else "",
                      congestion_control()))
    report.append("")
    report.append(table.markdown())
    report.append("")
    download = [r for r in table.rows if r[0].startswith("(a)")]
    if limits["stream"] and download:
        f = download[0][2].get("ferry")
        if f:
            def share(key, what):
                v = limits.get(key)
                return "%.0f%% of %s" % (100 * f / v, what) if v else None

            shares = [x for x in (
                share("stream", "the loopback stream"), share("stream_cubic", "the stream under CUBIC"),
                share("sendfile", "the bare sendfile loop"), share("sendfile_cubic", "that loop under CUBIC")) if x]
            report.append("ferry's download (1 MiB reads, the stream's reader) is %s." % ", ".join(shares))
            report.append("")
    if CURL_SETUP:
        # The curl rows time the transfers only (curl_speed); what came before
        # each, for every server, so that nothing is hidden.
        report.append("curl's rows time each transfer from its start; before it, curl's connection, login and data "
                      "connection took (median, runs over 150 ms): %s." % ", ".join(
                          "%s %.1f ms, %d of %d" % (name, 1e3 * median(v), sum(x > 0.15 for x in v), len(v))
                          for name, v in CURL_SETUP.items()))
        report.append("")
    if client_figures:
        report.append("| client, against ferry | MB/s | vs curl | vs lftp |")
        report.append("|---|---:|---:|---:|")
    for name, v in client_figures.items():
        def vs(other):
            o = client_figures.get(other)
            return "%.2f×" % (v / o) if v and o else "-"
        ref_lftp = "lftp pget -n 4" if "segments" in name or "pget" in name else "lftp get"
        report.append("| %s | %s | %s | %s |" % (name, "%.0f" % v if v else "failed", vs("curl"), vs(ref_lftp)))
    text = "\n".join(report)
    print()
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")
    failed = [r for r in table.rows if r[2].get("ferry") is None and not r[0].startswith("(h) MLSD")]
    if failed:
        print("ferry produced no figure for: %s" % ", ".join(r[0] for r in failed), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
