//! The client over SFTP (`sftp://`): ferry's commands, shell and URL opener
//! against ferry's own SFTP server (passwords, accounts with rules and quotas)
//! and against OpenSSH's sshd (keys), with host keys checked against a
//! known_hosts file.

use std::net::{SocketAddr, TcpStream};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::client::{args, client, client_ok, everyday, with};
use crate::sftp::{audit_once, config, sftp_addr};
use crate::support::{
    FerryServer, ferry_bin, ferry_in, free_port, mtimes_of, random_bytes, run, set_mtime,
};

const LIMIT: Duration = Duration::from_secs(120);

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The SSH host key fingerprint ferry's server logged.
pub(crate) fn host_fingerprint(server: &FerryServer) -> String {
    let line = server.wait_for_log("SSH host key fingerprint ");
    line.rsplit(' ')
        .next()
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no fingerprint in {line:?}"))
}

/// Makes a key pair of type `kind` (`ed25519`, `ecdsa`, `rsa`, or with a
/// size: `rsa:1024`) at `path` and `path`.pub.
pub(crate) fn ssh_keygen(path: &Path, kind: &str, passphrase: &str) {
    let (kind, bits) = kind.split_once(':').unwrap_or((kind, ""));
    let mut keygen = Command::new("ssh-keygen");
    keygen
        .args(["-q", "-t", kind, "-N", passphrase, "-f"])
        .arg(path);
    if !bits.is_empty() {
        keygen.args(["-b", bits]);
    }
    let out = run(&mut keygen, LIMIT);
    assert!(out.status.success(), "ssh-keygen: {}", stderr(&out));
}

#[test]
fn client_over_sftp_against_ferry_checks_host_keys_and_keeps_the_rules() {
    let server = FerryServer::start_with(&config());
    let addr = sftp_addr(&server);
    let fp = host_fingerprint(&server);
    let work = tempfile::tempdir().expect("tempdir");
    let w = work.path();
    let known = w.join("known_hosts");
    let known_arg = known.display().to_string();
    // Every command below checks the host key against this file.
    let extra = ["--known-hosts", known_arg.as_str()];
    let sftp = |a: &[&str]| client(w, &args(&with(a, &extra)));
    let sftp_ok = |a: &[&str]| client_ok(w, &args(&with(a, &extra)));
    let base = format!("sftp://alice:secret@{addr}");

    // An unknown host key is refused, named, and not recorded.
    let out = sftp(&["ls", &format!("{base}/")]);
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&fp) && said.contains("--accept-new-host-key"),
        "{said}"
    );
    assert!(!known.exists(), "nothing recorded without being asked");
    // A pinned fingerprint: the right one opens, another does not.
    client_ok(w, &["ls", "--pin", &fp, &format!("{base}/")]);
    let wrong_pin = format!("SHA256:{}", "A".repeat(43));
    let out = client(w, &["ls", "--pin", &wrong_pin, &format!("{base}/")]);
    assert!(stderr(&out).contains("not the pinned"), "{}", stderr(&out));
    // Learned once, then trusted without the flag.
    sftp_ok(&["ls", "--accept-new-host-key", &format!("{base}/")]);
    let recorded = std::fs::read_to_string(&known).expect("recorded");
    assert!(
        recorded.starts_with(&format!("[127.0.0.1]:{} ssh-ed25519 ", addr.port())),
        "{recorded}"
    );

    // The everyday commands, checked on the server's disk.
    everyday(&base, &extra, &server.files().join("alice"), "sftp-ferry");
    // Mirrored up and back: ferry's server applies the FSETSTAT sent
    // before the CLOSE once the CLOSE commits the upload.
    mirror_up_and_back(w, &base, &server.files().join("alice/mirrored"), |a| {
        sftp_ok(a);
    });

    // A key that changed is refused even when learning is allowed.
    let other = w.join("other_known_hosts");
    std::fs::write(
        &other,
        format!(
            "[127.0.0.1]:{} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPUODDqohzBbYCaTP2lajSrKzgXWw8rvv4dTlSiuL7XF\n",
            addr.port()
        ),
    )
    .expect("write");
    let out = client(
        w,
        &[
            "ls",
            "--known-hosts",
            &other.display().to_string(),
            "--accept-new-host-key",
            &format!("{base}/"),
        ],
    );
    assert!(
        out.status.code() == Some(1) && stderr(&out).contains("records another key"),
        "{}",
        stderr(&out)
    );

    // Resume both ways: a partial download, a partial upload.
    let big = random_bytes(2_500_000, 11);
    std::fs::write(w.join("big.bin"), &big).expect("write");
    std::fs::write(server.files().join("alice/big.bin"), &big).expect("write");
    std::fs::write(w.join("got.bin.ferry-part"), &big[..700_000]).expect("write");
    let out = sftp_ok(&["get", "-c", &format!("{base}/big.bin"), "got.bin"]);
    assert!(out.contains("resumed at byte 700000"), "{out}");
    let got = std::fs::read(w.join("got.bin")).expect("downloaded");
    assert!(got == big, "resumed download: {} bytes", got.len());
    std::fs::write(server.files().join("alice/up.bin"), &big[..900_000]).expect("write");
    let out = sftp_ok(&["put", "-c", "big.bin", &format!("{base}/up.bin")]);
    assert!(out.contains("resumed at byte 900000"), "{out}");
    let up = std::fs::read(server.files().join("alice/up.bin")).expect("uploaded");
    assert!(up == big, "resumed upload: {} bytes", up.len());

    // A single upload asks the server to flush it to disk (fsync@openssh.com,
    // as a single download is flushed here); the files of a batch are not
    // asked one by one. The server's audit log shows which were.
    std::fs::write(w.join("one.bin"), &big[..1000]).expect("write");
    std::fs::write(w.join("two.bin"), &big[..2000]).expect("write");
    sftp_ok(&["put", "one.bin", &format!("{base}/single.bin")]);
    sftp_ok(&["put", "one.bin", "two.bin", &format!("{base}/batch/")]);
    assert!(server.files().join("alice/batch/two.bin").exists());
    let fsync = r#""command":"FSYNC""#;
    // The batch's CLOSEs come after any FSYNC it sent.
    let closed = |a: &str, name: &str| {
        a.lines()
            .any(|l| l.contains(r#""command":"CLOSE""#) && l.contains(name))
    };
    let audit = audit_once(&server, |a| {
        closed(a, "/single.bin") && closed(a, "batch/one.bin") && closed(a, "batch/two.bin")
    });
    let synced: Vec<&str> = audit.lines().filter(|l| l.contains(fsync)).collect();
    for name in ["/up.bin", "/single.bin"] {
        assert!(
            synced
                .iter()
                .any(|l| l.contains(name) && l.contains(r#""code":0"#)),
            "{name} flushed: {audit}"
        );
    }
    assert!(
        !synced.iter().any(|l| l.contains("batch/")),
        "a batch's files are not flushed one by one: {audit}"
    );

    // Refusals keep the account's rules: wrong password, read-only, quota.
    let out = sftp(&["ls", &format!("sftp://alice:wrong@{addr}/")]);
    assert!(
        out.status.code() == Some(1) && stderr(&out).contains("authentication as alice failed"),
        "{}",
        stderr(&out)
    );
    let out = sftp(&[
        "put",
        "big.bin",
        &format!("sftp://bob:secret@{addr}/big.bin"),
    ]);
    assert!(
        out.status.code() == Some(1) && stderr(&out).contains("permission denied"),
        "{}",
        stderr(&out)
    );
    assert!(!server.files().join("bob/big.bin").exists());
    let out = sftp(&[
        "put",
        "big.bin",
        &format!("sftp://carol:secret@{addr}/big.bin"),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        !server.files().join("carol/big.bin").exists(),
        "an upload over the quota is not kept"
    );

    // The shell, scripted on stdin.
    std::fs::write(w.join("note.txt"), b"shell over sftp\n").expect("write");
    let out = ferry_in(
        w,
        &["shell", "--known-hosts", &known_arg, &format!("{base}/")],
        "pwd\nmkdir sh\ncd sh\nput note.txt\ndir\nget note.txt back.txt\nstatus\nquote NOOP\ncdup\nls\nquit\n",
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("(SFTP)") && said.contains("/sh"), "{said}");
    assert!(
        said.contains("note.txt") && said.contains("SFTP over SSH"),
        "{said}"
    );
    assert_eq!(
        std::fs::read(server.files().join("alice/sh/note.txt")).expect("put"),
        b"shell over sftp\n"
    );
    assert_eq!(
        std::fs::read(w.join("back.txt")).expect("get"),
        b"shell over sftp\n"
    );
    // `quote` is FTP only: one failed command, so the shell exits 1.
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("SFTP has no raw commands"),
        "{}",
        stderr(&out)
    );

    // The URL opener (`ferry fetch`): a file, a listing, a missing file.
    let out = run(
        Command::new(ferry_bin())
            .args(["fetch", "-s", "-k", &format!("{base}/big.bin")])
            .current_dir(w),
        LIMIT,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(out.stdout == big, "fetched {} bytes", out.stdout.len());
    let out = run(
        Command::new(ferry_bin())
            .args(["fetch", "-s", "-k", &format!("{base}/sh/")])
            .current_dir(w),
        LIMIT,
    );
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("-rw") && l.ends_with(" note.txt")),
        "{listing}"
    );
    let out = run(
        Command::new(ferry_bin())
            .args(["fetch", "-s", "-f", "-k", &format!("{base}/missing.bin")])
            .current_dir(w),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(22), "{}", stderr(&out));
    // Without -k, the opener checks ~/.ssh/known_hosts: an empty HOME knows
    // no host, and the answer is curl's exit status for an untrusted peer.
    let home = w.join("home");
    std::fs::create_dir_all(&home).expect("home");
    let out = run(
        Command::new(ferry_bin())
            .args(["fetch", "-s", &format!("{base}/big.bin")])
            .env("HOME", &home)
            .current_dir(w),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(60), "{}", stderr(&out));
    assert!(stderr(&out).contains(&fp), "{}", stderr(&out));
}

/// OpenSSH's sshd on a free loopback port, with a fresh host key, taking one
/// client key for the user who runs the tests and the certificates of a
/// user CA (`user_ca`, `TrustedUserCAKeys`); killed on drop.
struct Sshd {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Sshd {
    fn start() -> Sshd {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        ssh_keygen(&d.join("host_key"), "ed25519", "");
        ssh_keygen(&d.join("client_key"), "ed25519", "");
        ssh_keygen(&d.join("user_ca"), "ed25519", "");
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).expect("copy");
        let port = free_port();
        std::fs::write(
            d.join("sshd_config"),
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\n\
                 AuthorizedKeysFile {auth}\nPubkeyAuthentication yes\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\nUsePAM no\nStrictModes no\n\
                 PidFile none\nSubsystem sftp internal-sftp\nTrustedUserCAKeys {ca}\n",
                host = d.join("host_key").display(),
                auth = d.join("authorized_keys").display(),
                ca = d.join("user_ca.pub").display(),
            ),
        )
        .expect("config");
        // sshd run by root wants its privilege-separation directory.
        let _ = std::fs::create_dir_all("/run/sshd");
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start /usr/sbin/sshd (.ci/run installs openssh-server)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "sshd did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Sshd { child, port, dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn local_user() -> String {
    let out = run(Command::new("id").arg("-un"), LIMIT);
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn client_over_sftp_against_openssh_sshd_with_keys() {
    let sshd = Sshd::start();
    let user = local_user();
    let remote = tempfile::tempdir().expect("tempdir");
    let work = tempfile::tempdir().expect("tempdir");
    let w = work.path();
    let known = w.join("known_hosts").display().to_string();
    let key = sshd.path("client_key").display().to_string();
    let addr = SocketAddr::from(([127, 0, 0, 1], sshd.port));
    let base = format!("sftp://{user}@{addr}{}", remote.path().display());
    // Every command below offers this key and checks the host key here.
    let extra = ["-i", key.as_str(), "--known-hosts", known.as_str()];
    let sshd_run = |a: &[&str]| client(w, &args(&with(a, &extra)));
    let sshd_ok = |a: &[&str]| client_ok(w, &args(&with(a, &extra)));
    // The first contact records the host key.
    sshd_ok(&["ls", "--accept-new-host-key", &format!("{base}/")]);
    everyday(&base, &extra, remote.path(), "sftp-openssh");

    // A large file in four ranges on four connections.
    let big = random_bytes(6 << 20, 5);
    std::fs::write(remote.path().join("big.bin"), &big).expect("write");
    sshd_ok(&["get", "--segments", "4", &format!("{base}/big.bin")]);
    let got = std::fs::read(w.join("big.bin")).expect("downloaded");
    assert!(got == big, "segmented download: {} bytes", got.len());
    // Resumed upload: the server's prefix is kept, the rest appended.
    std::fs::write(remote.path().join("half.bin"), &big[..3 << 20]).expect("write");
    let out = sshd_ok(&["put", "-c", "big.bin", &format!("{base}/half.bin")]);
    assert!(out.contains("resumed at byte"), "{out}");
    let up = std::fs::read(remote.path().join("half.bin")).expect("uploaded");
    assert!(up == big, "resumed upload: {} bytes", up.len());

    // `get -r` of a directory named without a trailing slash.
    sshd_ok(&[
        "get",
        "-r",
        "-q",
        &format!("{base}/t-sftp-openssh/tree"),
        "tree-copy",
    ]);
    let copied = std::fs::read(w.join("tree-copy/sub/b.bin")).expect("copied tree");
    let original = std::fs::read(remote.path().join("t-sftp-openssh/tree/sub/b.bin"))
        .expect("left by everyday");
    assert!(copied == original, "get -r of a directory URL");

    // Mirror a tree up and back down: bytes and times (OpenSSH's server
    // takes the FSETSTAT sent behind the last WRITE).
    mirror_up_and_back(w, &base, &remote.path().join("mirrored"), |a| {
        sshd_ok(a);
    });

    // A name that is not UTF-8 on the server: that file fails with the
    // server's answer and leaves nothing here; the others still arrive.
    let odd = remote.path().join("odd");
    std::fs::create_dir_all(&odd).expect("mkdir");
    std::fs::write(odd.join("good.txt"), b"good\n").expect("write");
    std::fs::write(
        odd.join(std::ffi::OsStr::from_bytes(b"caf\xe9.txt")),
        b"latin-1 name\n",
    )
    .expect("write");
    let out = sshd_run(&["get", "-r", "-q", &format!("{base}/odd/"), "odd-copy"]);
    let said = stderr(&out);
    assert!(
        out.status.code() == Some(1) && said.contains("no such file"),
        "{said}"
    );
    assert_eq!(
        std::fs::read(w.join("odd-copy/good.txt")).expect("the good file"),
        b"good\n"
    );
    let copied: Vec<_> = std::fs::read_dir(w.join("odd-copy"))
        .expect("copy")
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        copied,
        ["good.txt"],
        "nothing else written, no partial file"
    );

    // A key the server does not take, and one ferry cannot read.
    let ls_with_key = |name: &str| {
        let key = w.join(name).display().to_string();
        client(
            w,
            &[
                "ls",
                "-i",
                &key,
                "--known-hosts",
                &known,
                &format!("{base}/"),
            ],
        )
    };
    ssh_keygen(&w.join("stranger"), "ed25519", "");
    let out = ls_with_key("stranger");
    let said = stderr(&out);
    assert!(
        out.status.code() == Some(1)
            && said.contains(&format!("authentication as {user} failed"))
            && said.contains("publickey"),
        "{said}"
    );
    ssh_keygen(&w.join("locked"), "ed25519", "a passphrase");
    let out = ls_with_key("locked");
    assert!(
        out.status.code() == Some(1) && stderr(&out).contains("encrypted with a passphrase"),
        "{}",
        stderr(&out)
    );

    // Keys sshd does not list, with certificates from its user CA beside
    // them: the one for this user signs in, the one for someone else
    // does not (and its bare key is tried after it).
    for (name, principal, signs_in) in [
        ("certified", user.as_str(), true),
        ("misnamed", "nobody", false),
    ] {
        ssh_keygen(&w.join(name), "ed25519", "");
        certify(
            &sshd.path("user_ca"),
            &w.join(format!("{name}.pub")),
            &["-n", principal],
        );
        let out = ls_with_key(name);
        assert_eq!(out.status.success(), signs_in, "{name}: {}", stderr(&out));
        if !signs_in {
            let said = stderr(&out);
            assert!(
                said.contains(&format!(
                    "certificate {}",
                    w.join(format!("{name}-cert.pub")).display()
                )) && said.contains(&format!("key {}", w.join(name).display())),
                "{said}"
            );
        }
    }
}

/// Signs the public key `KEY.pub` with the CA key `ca` (`ssh-keygen -s`),
/// writing `KEY-cert.pub` beside it, with the key id `KEY-id`, serial 42,
/// and `options` (`-n` principals, `-V` validity, `-O` options).
pub(crate) fn certify(ca: &Path, public: &Path, options: &[&str]) {
    let name = public
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let signed = run(
        Command::new("ssh-keygen")
            .args(["-q", "-s"])
            .arg(ca)
            .args(["-I", &format!("{name}-id"), "-z", "42"])
            .args(options)
            .arg(public),
        LIMIT,
    );
    assert!(
        signed.status.success(),
        "ssh-keygen -s: {}",
        stderr(&signed)
    );
}

/// Mirrors a small tree of files with past times from `w/m` to
/// `{base}/mirrored` (`there` on disk) and back into `w/back`, through
/// `ferry`; checks bytes and modification times at both ends.
fn mirror_up_and_back(w: &Path, base: &str, there: &Path, ferry: impl Fn(&[&str])) {
    let files = [("m/a.txt", 5_000), ("m/sub/b.bin", 10_000), ("m/empty", 0)];
    for (i, (name, len)) in files.into_iter().enumerate() {
        let p = w.join(name);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, random_bytes(len, i as u64)).expect("write");
        set_mtime(&p, 1_500_000_000 + 3_600 * i as u64);
    }
    ferry(&["mirror", "-q", "m", &format!("{base}/mirrored")]);
    ferry(&["mirror", "-q", &format!("{base}/mirrored"), "back"]);
    for name in ["a.txt", "sub/b.bin", "empty"] {
        let original = std::fs::read(w.join("m").join(name)).expect("original");
        let up = std::fs::read(there.join(name)).expect("up");
        let back = std::fs::read(w.join("back").join(name)).expect("down");
        assert!(up == original && back == original, "{name}");
    }
    let times = mtimes_of(&w.join("m"));
    assert_eq!(mtimes_of(there), times, "uploads took the local times");
    assert_eq!(
        mtimes_of(&w.join("back")),
        times,
        "downloads took the remote times"
    );
}

/// OpenSSH's ssh-agent on a socket of its own; killed on drop.
struct SshAgent {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl SshAgent {
    fn start() -> SshAgent {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ssh-agent");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "ssh-agent made no socket");
            std::thread::sleep(Duration::from_millis(20));
        }
        SshAgent {
            child,
            socket,
            _dir: dir,
        }
    }

    /// `ssh-add FILE`, answering a passphrase through `askpass`.
    fn add(&self, key: &Path, askpass: &Path) {
        let out = run(
            Command::new("ssh-add")
                .arg(key)
                .env("SSH_AUTH_SOCK", &self.socket)
                .env("SSH_ASKPASS", askpass)
                .env("SSH_ASKPASS_REQUIRE", "force")
                .env("DISPLAY", "none"),
            LIMIT,
        );
        assert!(out.status.success(), "ssh-add: {}", stderr(&out));
    }
}

impl Drop for SshAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A script that prints `answer`, for SSH_ASKPASS.
/// An SSH_ASKPASS program that answers `answer` and notes each prompt it is
/// given in `path`.prompts.
fn askpass(path: &Path, answer: &str) -> PathBuf {
    askpass_script(path, &format!("echo '{answer}'"))
}

/// An SSH_ASKPASS program that runs `answer` (shell), noting each prompt in
/// `path`.prompts.
fn askpass_script(path: &Path, answer: &str) -> PathBuf {
    std::fs::write(
        path,
        format!(
            "#!/bin/sh\necho \"$1\" >> '{}.prompts'\n{answer}\n",
            path.display()
        ),
    )
    .expect("askpass");
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .expect("chmod");
    path.to_owned()
}

/// Keys the way people keep them: in an agent, in RSA key files, encrypted
/// files the agent holds, and encrypted files whose passphrase is asked
/// through SSH_ASKPASS; against OpenSSH's sshd.
#[test]
fn client_over_sftp_signs_in_with_an_agent_and_with_passphrases() {
    let sshd = Sshd::start();
    let user = local_user();
    let work = tempfile::tempdir().expect("tempdir");
    let w = work.path();
    let home = w.join("home");
    std::fs::create_dir_all(home.join(".ssh")).expect("home");
    ssh_keygen(&w.join("rsa"), "rsa", "");
    ssh_keygen(&w.join("locked"), "ed25519", "open sesame");
    ssh_keygen(&w.join("locked2"), "ecdsa", "open sesame");
    // sshd takes these keys too (it reads the file at every login).
    let mut keys = std::fs::read_to_string(sshd.path("authorized_keys")).expect("keys");
    for k in ["rsa", "locked", "locked2"] {
        keys.push_str(&std::fs::read_to_string(w.join(format!("{k}.pub"))).expect("pub"));
    }
    std::fs::write(sshd.path("authorized_keys"), keys).expect("authorized_keys");
    let right = askpass(&w.join("right.sh"), "open sesame");
    let wrong = askpass(&w.join("wrong.sh"), "abracadabra");
    std::fs::write(sshd.path("marker.txt"), "here").expect("marker");
    let url = format!(
        "sftp://{user}@127.0.0.1:{}{}/",
        sshd.port,
        sshd.dir.path().display()
    );
    let known = w.join("known_hosts").display().to_string();
    // ferry with an empty HOME (no default keys), no terminal, and `env`.
    let ferry = |extra: &[&str], env: &[(&str, &Path)]| {
        let mut cmd = Command::new(ferry_bin());
        cmd.current_dir(w)
            .env("HOME", &home)
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("SSH_ASKPASS")
            .env_remove("SSH_ASKPASS_REQUIRE")
            .env_remove("DISPLAY")
            .args(["ls", "--accept-new-host-key", "--known-hosts", &known])
            .args(extra)
            .arg(&url);
        for (k, v) in env {
            cmd.env(k, v);
        }
        run(&mut cmd, LIMIT)
    };
    let lists = |out: &Output| {
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("marker.txt")
    };

    // An agent holding only an RSA key: the agent signs (rsa-sha2-512).
    let agent = SshAgent::start();
    agent.add(&w.join("rsa"), &right);
    let by_agent: [(&str, &Path); 1] = [("SSH_AUTH_SOCK", &agent.socket)];
    let out = ferry(&[], &by_agent);
    assert!(lists(&out), "agent's RSA key: {}", stderr(&out));
    // Without the agent nothing is offered, and the message says so.
    let out = ferry(&[], &[]);
    assert!(
        !out.status.success() && stderr(&out).contains("no password and no key to offer"),
        "{}",
        stderr(&out)
    );
    // The same RSA key from its file: ferry signs (rsa-sha2-512).
    let rsa = w.join("rsa").display().to_string();
    let out = ferry(&["-i", &rsa], &[]);
    assert!(lists(&out), "RSA key file: {}", stderr(&out));

    // An encrypted key named with -i that the agent holds: no passphrase asked.
    agent.add(&w.join("locked"), &right);
    let locked = w.join("locked").display().to_string();
    let out = ferry(&["-i", &locked], &by_agent);
    assert!(
        lists(&out),
        "encrypted key through the agent: {}",
        stderr(&out)
    );

    // Without the agent: the passphrase through SSH_ASKPASS, a wrong one
    // refused with a message, none at all named.
    let out = ferry(
        &["-i", &locked],
        &[
            ("SSH_ASKPASS", &right),
            ("SSH_ASKPASS_REQUIRE", Path::new("force")),
        ],
    );
    assert!(lists(&out), "passphrase from SSH_ASKPASS: {}", stderr(&out));
    let out = ferry(
        &["-i", &locked],
        &[
            ("SSH_ASKPASS", &wrong),
            ("SSH_ASKPASS_REQUIRE", Path::new("force")),
        ],
    );
    assert!(
        out.status.code() == Some(1) && stderr(&out).contains("cannot decrypt"),
        "{}",
        stderr(&out)
    );
    // Asked three times, as OpenSSH's NumberOfPasswordPrompts.
    let prompts = |script: &Path| {
        std::fs::read_to_string(format!("{}.prompts", script.display())).unwrap_or_default()
    };
    assert_eq!(prompts(&wrong).lines().count(), 3, "{}", prompts(&wrong));
    // A mistyped passphrase, then the right one.
    let second = askpass_script(
        &w.join("second.sh"),
        &format!(
            "if [ -e '{0}' ]; then echo 'open sesame'; else touch '{0}'; echo 'abracadabra'; fi",
            w.join("asked-once").display()
        ),
    );
    let out = ferry(
        &["-i", &locked],
        &[
            ("SSH_ASKPASS", &second),
            ("SSH_ASKPASS_REQUIRE", Path::new("force")),
        ],
    );
    assert!(lists(&out), "right at the second try: {}", stderr(&out));
    let asked = prompts(&second);
    assert!(
        asked.lines().count() == 2 && asked.contains("Bad passphrase, try again"),
        "{asked}"
    );
    let out = ferry(&["-i", &locked], &[]);
    assert!(
        out.status.code() == Some(1) && stderr(&out).contains("none was given"),
        "{}",
        stderr(&out)
    );

    // A default key file (~/.ssh/id_ecdsa), encrypted: asked through
    // SSH_ASKPASS with a display, as OpenSSH does without a terminal.
    std::fs::copy(w.join("locked2"), home.join(".ssh/id_ecdsa")).expect("copy");
    let out = ferry(
        &[],
        &[("SSH_ASKPASS", &right), ("DISPLAY", Path::new(":0"))],
    );
    assert!(
        lists(&out),
        "default key with a passphrase: {}",
        stderr(&out)
    );
    // With no one to ask, a default key is skipped, not an error.
    let out = ferry(&[], &[]);
    assert!(
        stderr(&out).contains("no password and no key to offer"),
        "{}",
        stderr(&out)
    );
    // ~/.ssh/id_rsa is one of the default keys.
    std::fs::copy(w.join("rsa"), home.join(".ssh/id_rsa")).expect("copy");
    let out = ferry(&[], &[]);
    assert!(lists(&out), "default RSA key: {}", stderr(&out));
    std::fs::remove_file(home.join(".ssh/id_rsa")).expect("rm");

    // An agent holding a key sshd does not list and its certificate from
    // sshd's user CA (ssh-add adds both): the certificate signs in.
    ssh_keygen(&w.join("certified"), "ed25519", "");
    certify(
        &sshd.path("user_ca"),
        &w.join("certified.pub"),
        &["-n", &user],
    );
    let agent = SshAgent::start();
    agent.add(&w.join("certified"), &right);
    let by_agent: [(&str, &Path); 1] = [("SSH_AUTH_SOCK", &agent.socket)];
    let out = ferry(&[], &by_agent);
    assert!(lists(&out), "agent's certificate: {}", stderr(&out));
}
