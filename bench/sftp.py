#!/usr/bin/env python3
"""SFTP side by side on loopback: ferry's client next to OpenSSH's sftp, and
ferry's SFTP server next to OpenSSH's sshd (internal-sftp), in one run.

    bench/sftp.sh [--size-mib N] [--runs N]

Rows (MB/s, median of --runs; each ratio is to the OpenSSH figure of the same
row, so only figures of one run are compared):
  client download: `ferry get sftp://...` vs `sftp get -f`, both from sshd
  client upload:   `ferry put` vs `sftp put -f`, both to sshd
  (-f: each flushes the file to disk, as a single ferry get and put do)
  server download: OpenSSH `sftp get` from ferry serve vs from sshd
  server upload:   OpenSSH `sftp put` to ferry serve vs to sshd
and the same four with --small-files files of 4 KiB in one session (files/s):
`ferry mirror` against `sftp get -R` / `put -R` for the client rows.
Needs /usr/sbin/sshd (openssh-server), sftp and ssh-keygen (openssh-client).
"""

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on {port}")


def keygen(path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path], check=True)


def timed(cmd, **kw):
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)
    return time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release")
    ap.add_argument("--size-mib", type=int, default=512)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--small-files", type=int, default=1000)
    args = ap.parse_args()
    ferry = os.path.abspath(os.path.join(args.bin, "ferry"))
    work = tempfile.mkdtemp(prefix="ferry-sftp-bench-")
    procs = []
    try:
        d = work
        keygen(f"{d}/host_key")
        keygen(f"{d}/client_key")
        shutil.copy(f"{d}/client_key.pub", f"{d}/authorized_keys")
        sshd_port = free_port()
        with open(f"{d}/sshd_config", "w") as f:
            f.write(
                f"Port {sshd_port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\n"
                f"AuthorizedKeysFile {d}/authorized_keys\nPasswordAuthentication no\n"
                "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
                "UsePAM no\nStrictModes no\nPidFile none\nSubsystem sftp internal-sftp\n"
            )
        os.makedirs("/run/sshd", exist_ok=True)
        procs.append(subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", f"{d}/sshd_config"],
                                      stderr=subprocess.DEVNULL))
        wait_port(sshd_port)

        # ferry serve with SFTP, one user whose home is the same directory.
        password = "bench-secret"
        pw_hash = subprocess.run([ferry, "hash-password"], input=password + "\n",
                                 capture_output=True, text=True, check=True).stdout.strip()
        os.makedirs(f"{d}/files/data", exist_ok=True)
        ftp_port, ferry_port = free_port(), free_port()
        with open(f"{d}/ferry.toml", "w") as f:
            f.write(
                f'[server]\nlisten = ["127.0.0.1:{ftp_port}"]\n'
                f'[sftp]\nlisten = ["127.0.0.1:{ferry_port}"]\n'
                f'[[users]]\nname = "bench"\npassword_hash = "{pw_hash}"\nhome = "/data"\n'
            )
        procs.append(subprocess.Popen([ferry, "serve", "--config", f"{d}/ferry.toml",
                                       "--root", f"{d}/files"], cwd=d, stderr=subprocess.DEVNULL))
        wait_port(ferry_port)

        data_dir = f"{d}/files/data"
        src = f"{data_dir}/big.bin"
        with open(src, "wb") as f:
            chunk = os.urandom(1 << 20)
            for _ in range(args.size_mib):
                f.write(chunk)
        shutil.copy(src, f"{d}/local.bin")
        small = f"{data_dir}/small"
        os.makedirs(small)
        os.makedirs(f"{d}/local_small")
        for i in range(args.small_files):
            blob = os.urandom(4096)
            for where in (small, f"{d}/local_small"):
                with open(f"{where}/f{i:05}", "wb") as f:
                    f.write(blob)
        size = os.path.getsize(src)
        user = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()

        askpass = f"{d}/askpass.sh"
        with open(askpass, "w") as f:
            f.write(f"#!/bin/sh\necho '{password}'\n")
        os.chmod(askpass, 0o700)
        ssh_opts = ["-oStrictHostKeyChecking=no", f"-oUserKnownHostsFile={d}/known_hosts_ssh"]

        def openssh(port, who, batch, key=True):
            with open(f"{d}/batch", "w") as f:
                f.write(batch)
            env = dict(os.environ)
            auth = ["-i", f"{d}/client_key", "-oPasswordAuthentication=no"]
            if not key:
                env.update(SSH_ASKPASS=askpass, SSH_ASKPASS_REQUIRE="force", DISPLAY="none")
                auth = ["-oBatchMode=no", "-oPubkeyAuthentication=no"]
            return timed(["sftp", *auth, *ssh_opts, "-P", str(port), "-b", f"{d}/batch",
                          f"{who}@127.0.0.1"], env=env, cwd=d)

        ferry_opts = ["-q", "-i", f"{d}/client_key", "-k"]
        sshd_url = f"sftp://{user}@127.0.0.1:{sshd_port}{data_dir}"

        def clean():
            for p in (f"{d}/got.bin", f"{data_dir}/up.bin"):
                if os.path.exists(p):
                    os.remove(p)
            for p in (f"{d}/got_small", f"{data_dir}/up_small"):
                shutil.rmtree(p, ignore_errors=True)

        def count_small(where):
            # A row that moved fewer files than it should is a broken run.
            n = len(os.listdir(where))
            if n != args.small_files:
                sys.exit(f"{where}: {n} files, expected {args.small_files}")

        # A single `ferry get` flushes the file to disk and a single `ferry
        # put` asks the server to (fsync@openssh.com): `sftp` is asked for the
        # same with -f, so that both clients do the same work.
        rows = [
            ("client download (from sshd)",
             lambda: timed([ferry, "get", *ferry_opts, f"{sshd_url}/big.bin", "got.bin"], cwd=d),
             lambda: openssh(sshd_port, user, f"get -f {src} got.bin\n")),
            ("client upload (to sshd)",
             lambda: timed([ferry, "put", *ferry_opts, "local.bin", f"{sshd_url}/up.bin"], cwd=d),
             lambda: openssh(sshd_port, user, f"put -f local.bin {data_dir}/up.bin\n")),
            ("server download (OpenSSH sftp)",
             lambda: openssh(ferry_port, "bench", "get big.bin got.bin\n", key=False),
             lambda: openssh(sshd_port, user, f"get {src} got.bin\n")),
            ("server upload (OpenSSH sftp)",
             lambda: openssh(ferry_port, "bench", "put local.bin up.bin\n", key=False),
             lambda: openssh(sshd_port, user, f"put local.bin {data_dir}/up.bin\n")),
        ]
        def then(run, where):
            def timed_and_counted():
                took = run()
                count_small(where)
                return took
            return timed_and_counted

        got_small, up_small = f"{d}/got_small", f"{data_dir}/up_small"
        n = args.small_files
        small_rows = [
            (f"client download, {n} x 4 KiB (from sshd)",
             then(lambda: timed([ferry, "mirror", *ferry_opts, f"{sshd_url}/small", "got_small"],
                                cwd=d), got_small),
             then(lambda: openssh(sshd_port, user, f"get -R {small} got_small\n"), got_small)),
            (f"client upload, {n} x 4 KiB (to sshd)",
             then(lambda: timed([ferry, "mirror", *ferry_opts, "local_small",
                                 f"{sshd_url}/up_small"], cwd=d), up_small),
             then(lambda: openssh(sshd_port, user, f"put -R local_small {up_small}\n"), up_small)),
            (f"server download, {n} x 4 KiB (OpenSSH sftp)",
             then(lambda: openssh(ferry_port, "bench", "get -R small got_small\n", key=False),
                  got_small),
             then(lambda: openssh(sshd_port, user, f"get -R {small} got_small\n"), got_small)),
            (f"server upload, {n} x 4 KiB (OpenSSH sftp)",
             then(lambda: openssh(ferry_port, "bench", "put -R local_small up_small\n",
                                  key=False), up_small),
             then(lambda: openssh(sshd_port, user, f"put -R local_small {up_small}\n"), up_small)),
        ]

        def table(title, unit, rows, amount):
            print(f"SFTP, {title}, median of {args.runs} runs, {unit} (ratio to OpenSSH)")
            print(f"{'row':44} {'ferry':>8} {'OpenSSH':>8} {'ratio':>6}")
            for name, ours, theirs in rows:
                a, b = [], []
                for _ in range(args.runs):
                    clean()
                    a.append(amount / ours())
                    clean()
                    b.append(amount / theirs())
                ma, mb = statistics.median(a), statistics.median(b)
                print(f"{name:44} {ma:8.0f} {mb:8.0f} {ma / mb:6.2f}", flush=True)

        table(f"{args.size_mib} MiB", "MB/s", rows, size / 1e6)
        table("small files", "files/s", small_rows, n)
    finally:
        for p in procs:
            p.terminate()
            p.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
