#!/usr/bin/env python3
"""SFTP side by side on loopback: ferry's client next to OpenSSH's sftp, and
ferry's SFTP server next to OpenSSH's sshd (internal-sftp), in one run.

    bench/sftp.sh [--size-mib N] [--runs N]

Rows (MB/s, median of --runs; each ratio is to the OpenSSH figure of the same
row, so only figures of one run are compared):
  client download: `ferry get sftp://...` vs `sftp get`, both from sshd
  client upload:   `ferry put` vs `sftp put`, both to sshd
  server download: OpenSSH `sftp get` from ferry serve vs from sshd
  server upload:   OpenSSH `sftp put` to ferry serve vs to sshd
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

        rows = [
            ("client download (from sshd)",
             lambda: timed([ferry, "get", *ferry_opts, f"{sshd_url}/big.bin", "got.bin"], cwd=d),
             lambda: openssh(sshd_port, user, f"get {src} got.bin\n")),
            ("client upload (to sshd)",
             lambda: timed([ferry, "put", *ferry_opts, "local.bin", f"{sshd_url}/up.bin"], cwd=d),
             lambda: openssh(sshd_port, user, f"put local.bin {data_dir}/up.bin\n")),
            ("server download (OpenSSH sftp)",
             lambda: openssh(ferry_port, "bench", "get big.bin got.bin\n", key=False),
             lambda: openssh(sshd_port, user, f"get {src} got.bin\n")),
            ("server upload (OpenSSH sftp)",
             lambda: openssh(ferry_port, "bench", "put local.bin up.bin\n", key=False),
             lambda: openssh(sshd_port, user, f"put local.bin {data_dir}/up.bin\n")),
        ]
        print(f"SFTP, {args.size_mib} MiB, median of {args.runs} runs, MB/s (ratio to OpenSSH)")
        print(f"{'row':34} {'ferry':>8} {'OpenSSH':>8} {'ratio':>6}")
        for name, ours, theirs in rows:
            a, b = [], []
            for _ in range(args.runs):
                clean()
                a.append(size / ours() / 1e6)
                clean()
                b.append(size / theirs() / 1e6)
            ma, mb = statistics.median(a), statistics.median(b)
            print(f"{name:34} {ma:8.0f} {mb:8.0f} {ma / mb:6.2f}")
    finally:
        for p in procs:
            p.terminate()
            p.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
