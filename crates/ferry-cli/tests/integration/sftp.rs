//! SFTP over SSH (`[sftp] listen`): ferry's server driven by the SFTP clients
//! people use, OpenSSH's `sftp` and curl (libssh2), with the same accounts,
//! files, permission rules, quotas and logs as FTP.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use crate::support::{FerryServer, curl, hash, random_bytes, run};

const LIMIT: Duration = Duration::from_secs(60);

pub(crate) fn config() -> String {
    let pw = hash("secret");
    format!(
        r#"
[server]
listen = ["127.0.0.1:0"]

[sftp]
listen = ["127.0.0.1:0"]

[log]
audit = "audit.jsonl"
xferlog = "xferlog"

[[users]]
name = "alice"
password_hash = "{pw}"
home = "/alice"

[[users]]
name = "bob"
password_hash = "{pw}"
home = "/bob"
permissions = {{ "/" = ["list", "download"] }}

[[users]]
name = "carol"
password_hash = "{pw}"
home = "/carol"
quota_bytes = "100 KiB"
denied_files = ["*.exe"]
"#
    )
}

pub(crate) fn sftp_addr(server: &FerryServer) -> SocketAddr {
    let line = server.wait_for_log("ferry: serving SFTP on ");
    line.rsplit(' ')
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no SFTP address in {line:?}"))
}

/// Runs OpenSSH's `sftp` in batch mode as `user` with `password` (given
/// through SSH_ASKPASS), from `dir`.
fn openssh_sftp(addr: SocketAddr, user: &str, password: &str, dir: &Path, batch: &str) -> Output {
    let askpass = dir.join("askpass.sh");
    std::fs::write(&askpass, format!("#!/bin/sh\necho '{password}'\n")).expect("askpass");
    std::fs::set_permissions(
        &askpass,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .expect("chmod askpass");
    std::fs::write(dir.join("batch"), batch).expect("batch");
    run(
        Command::new("sftp")
            .current_dir(dir)
            .env("SSH_ASKPASS", &askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("DISPLAY", "none")
            .args([
                // -b turns BatchMode on, which forbids passwords; the first
                // value given wins.
                "-oBatchMode=no",
                "-oStrictHostKeyChecking=no",
                "-oUserKnownHostsFile=/dev/null",
                "-oPubkeyAuthentication=no",
                "-oNumberOfPasswordPrompts=1",
                "-P",
                &addr.port().to_string(),
                "-b",
                "batch",
                &format!("{user}@{}", addr.ip()),
            ]),
        LIMIT,
    )
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn openssh_sftp_and_curl_share_accounts_files_and_rules_with_ftp() {
    let server = FerryServer::start_with(&config());
    let addr = sftp_addr(&server);
    let work = tempfile::tempdir().expect("tempdir");
    let big = random_bytes(3_000_000, 7);
    std::fs::write(work.path().join("big.bin"), &big).expect("write");
    // A partial copy on the server, for reput (resume by appending).
    std::fs::write(server.files().join("alice/part.bin"), &big[..1_000_000]).expect("part");

    // OpenSSH sftp: upload, listing, directories, rename, download, resume.
    let out = openssh_sftp(
        addr,
        "alice",
        "secret",
        work.path(),
        "put big.bin\nls -l\nmkdir d\nrename big.bin d/moved.bin\nls -l d\n\
         get d/moved.bin back.bin\nreput big.bin part.bin\nput big.bin gone.bin\nrm gone.bin\n\
         mkdir empty\nrmdir empty\n",
    );
    let said = text(&out);
    assert!(out.status.success(), "sftp failed:\n{said}");
    assert!(said.contains("3000000"), "ls -l shows sizes:\n{said}");
    assert!(said.contains("moved.bin"), "{said}");
    let stored = std::fs::read(server.files().join("alice/d/moved.bin")).expect("stored");
    assert!(stored == big, "uploaded {} bytes", stored.len());
    let back = std::fs::read(work.path().join("back.bin")).expect("downloaded");
    assert!(back == big, "downloaded {} bytes", back.len());
    let resumed = std::fs::read(server.files().join("alice/part.bin")).expect("resumed");
    assert!(resumed == big, "resumed to {} bytes", resumed.len());
    assert!(!server.files().join("alice/gone.bin").exists());
    assert!(!server.files().join("alice/empty").exists());
    assert!(
        !server.files().join("alice/big.bin").exists(),
        "renamed away"
    );

    // The same file over FTP.
    let ftp = run(
        &mut curl(
            &["--user", "alice:secret"],
            format!("ftp://{}/d/moved.bin", server.addr),
        ),
        LIMIT,
    );
    assert!(ftp.status.success(), "{}", text(&ftp));
    assert!(ftp.stdout == big, "FTP read {} bytes", ftp.stdout.len());

    // curl (libssh2): download, upload, a quoted rename.
    let sftp_url = |path: &str| format!("sftp://{}:{}/{path}", addr.ip(), addr.port());
    let got = run(
        &mut curl(
            &["--insecure", "--user", "alice:secret"],
            sftp_url("d/moved.bin"),
        ),
        LIMIT,
    );
    assert!(got.status.success(), "{}", text(&got));
    assert!(got.stdout == big, "curl read {} bytes", got.stdout.len());
    let small = random_bytes(70_000, 9);
    std::fs::write(work.path().join("small.bin"), &small).expect("write");
    let put = run(
        &mut curl(
            &[
                "--insecure",
                "--user",
                "alice:secret",
                "--upload-file",
                &work.path().join("small.bin").display().to_string(),
                "--quote",
                "-rename /up.bin /renamed.bin",
            ],
            sftp_url("up.bin"),
        ),
        LIMIT,
    );
    assert!(put.status.success(), "{}", text(&put));
    let stored = std::fs::read(server.files().join("alice/renamed.bin")).expect("curl upload");
    assert!(stored == small, "curl stored {} bytes", stored.len());
    // A missing file is curl's "remote file not found" (78), not a hang.
    let missing = run(
        &mut curl(
            &["--insecure", "--user", "alice:secret"],
            sftp_url("nope.bin"),
        ),
        LIMIT,
    );
    assert_eq!(missing.status.code(), Some(78), "{}", text(&missing));

    // lftp (through OpenSSH's ssh): upload, download, remove.
    let lftp = run(
        Command::new("lftp").current_dir(work.path()).args([
            "-c",
            &format!(
                "set sftp:connect-program 'ssh -a -x -oStrictHostKeyChecking=no \
                 -oUserKnownHostsFile=/dev/null -oPubkeyAuthentication=no'; \
                 open -u alice,secret sftp://{}:{}; put small.bin -o lftp.bin; \
                 get lftp.bin -o lftp-back.bin; put small.bin -o lftp2.bin; rm lftp2.bin",
                addr.ip(),
                addr.port()
            ),
        ]),
        LIMIT,
    );
    assert!(lftp.status.success(), "lftp failed:\n{}", text(&lftp));
    let back = std::fs::read(work.path().join("lftp-back.bin")).expect("lftp download");
    assert!(back == small, "lftp read {} bytes", back.len());
    let stored = std::fs::read(server.files().join("alice/lftp.bin")).expect("lftp upload");
    assert!(stored == small, "lftp stored {} bytes", stored.len());
    assert!(!server.files().join("alice/lftp2.bin").exists(), "lftp rm");

    // `..` does not leave the home: the root of the view is the home.
    let escape = run(
        &mut curl(
            &["--insecure", "--user", "alice:secret"],
            sftp_url("../../ferry.toml"),
        ),
        LIMIT,
    );
    assert!(!escape.status.success(), "read outside the home");
    assert!(!String::from_utf8_lossy(&escape.stdout).contains("password_hash"));

    // Read-only bob: downloads work, uploads and deletes are refused.
    std::fs::create_dir_all(server.files().join("bob")).expect("bob's home");
    std::fs::write(server.files().join("bob/keep.txt"), b"bob's file").expect("write");
    let out = openssh_sftp(addr, "bob", "secret", work.path(), "get keep.txt bob.txt\n");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read(work.path().join("bob.txt")).expect("got"),
        b"bob's file"
    );
    let out = openssh_sftp(addr, "bob", "secret", work.path(), "put small.bin\n");
    assert!(!out.status.success(), "bob uploaded:\n{}", text(&out));
    assert!(text(&out).contains("ermission denied"), "{}", text(&out));
    assert!(!server.files().join("bob/small.bin").exists());
    let out = openssh_sftp(addr, "bob", "secret", work.path(), "rm keep.txt\n");
    assert!(!out.status.success(), "bob deleted:\n{}", text(&out));
    assert!(server.files().join("bob/keep.txt").exists());

    // Carol's quota (100 KiB) and file-name rules.
    let out = openssh_sftp(addr, "carol", "secret", work.path(), "put small.bin\n");
    assert!(out.status.success(), "{}", text(&out));
    let out = openssh_sftp(
        addr,
        "carol",
        "secret",
        work.path(),
        "put small.bin second.bin\n",
    );
    assert!(!out.status.success(), "over the quota:\n{}", text(&out));
    assert!(
        !server.files().join("carol/second.bin").exists(),
        "an upload over the quota is not kept"
    );
    assert_eq!(
        std::fs::read(server.files().join("carol/small.bin"))
            .expect("first")
            .len(),
        small.len(),
        "what was stored before stays"
    );
    std::fs::write(work.path().join("tool.exe"), b"MZ").expect("write");
    let out = openssh_sftp(addr, "carol", "secret", work.path(), "put tool.exe\n");
    assert!(!out.status.success(), "denied name stored:\n{}", text(&out));
    assert!(!server.files().join("carol/tool.exe").exists());

    // A wrong password is refused, and recorded.
    let out = openssh_sftp(addr, "alice", "wrong", work.path(), "ls\n");
    assert!(!out.status.success());
    assert!(text(&out).contains("Permission denied"), "{}", text(&out));

    // The audit log and the xferlog name SFTP's actions.
    let audit = std::fs::read_to_string(server.dir.path().join("audit.jsonl")).expect("audit");
    let sftp_lines: Vec<&str> = audit
        .lines()
        .filter(|l| l.contains(r#""protocol":"sftp""#))
        .collect();
    for (command, path) in [
        ("RENAME", "/alice/big.bin"),
        ("MKDIR", "/alice/d"),
        ("REMOVE", "/alice/gone.bin"),
        ("CLOSE", "/alice/d/moved.bin"),
    ] {
        assert!(
            sftp_lines
                .iter()
                .any(|l| l.contains(&format!(r#""command":"{command}""#))
                    && l.contains(&format!(r#""path":"{path}""#))
                    && l.contains(r#""code":0"#)),
            "no {command} of {path} in the audit log:\n{audit}"
        );
    }
    assert!(
        sftp_lines.iter().any(|l| l.contains(r#""command":"LOGIN""#)
            && l.contains(r#""user":"alice""#)
            && l.contains(r#""code":3"#)),
        "the failed login is recorded:\n{audit}"
    );
    let xferlog = std::fs::read_to_string(server.dir.path().join("xferlog")).expect("xferlog");
    assert!(
        xferlog
            .lines()
            .any(|l| l.contains("3000000 /alice/big.bin b _ i r alice")),
        "{xferlog}"
    );
    assert!(
        xferlog
            .lines()
            .any(|l| l.contains("3000000 /alice/d/moved.bin b _ o r alice")),
        "{xferlog}"
    );
}

#[test]
fn ssh_connections_that_do_not_speak_or_sign_in_are_closed() {
    let server = FerryServer::start_with(&format!(
        "{}\n",
        config().replace("[log]", "[security]\nmax_login_failures = 2\n\n[log]")
    ));
    let addr = sftp_addr(&server);
    // Garbage instead of an SSH identification: the connection ends.
    use std::io::{Read, Write};
    let mut raw = std::net::TcpStream::connect(addr).expect("connect");
    raw.set_read_timeout(Some(LIMIT)).expect("timeout");
    let mut banner = [0u8; 64];
    let n = raw.read(&mut banner).expect("banner");
    assert!(
        banner[..n].starts_with(b"SSH-2.0-ferry"),
        "{:?}",
        String::from_utf8_lossy(&banner[..n])
    );
    raw.write_all(&[0xff; 4096]).expect("garbage");
    let mut rest = Vec::new();
    let _ = raw.read_to_end(&mut rest);
    // Shell and exec are refused; SFTP works on the same login.
    let work = tempfile::tempdir().expect("tempdir");
    let askpass = work.path().join("askpass.sh");
    std::fs::write(&askpass, "#!/bin/sh\necho secret\n").expect("askpass");
    std::fs::set_permissions(
        &askpass,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .expect("chmod");
    let exec = run(
        Command::new("ssh")
            .env("SSH_ASKPASS", &askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("DISPLAY", "none")
            .args([
                "-oStrictHostKeyChecking=no",
                "-oUserKnownHostsFile=/dev/null",
                "-oPubkeyAuthentication=no",
                "-p",
                &addr.port().to_string(),
                &format!("alice@{}", addr.ip()),
                "cat /etc/passwd",
            ]),
        LIMIT,
    );
    assert!(!exec.status.success(), "exec ran:\n{}", text(&exec));
    assert!(!String::from_utf8_lossy(&exec.stdout).contains("root:"));
    // Two wrong passwords ban the address: FTP refuses it too.
    for _ in 0..2 {
        let out = openssh_sftp(addr, "alice", "wrong", work.path(), "ls\n");
        assert!(!out.status.success());
    }
    let out = openssh_sftp(addr, "alice", "secret", work.path(), "ls\n");
    assert!(
        !out.status.success(),
        "a banned address signed in:\n{}",
        text(&out)
    );
    let ftp = run(
        &mut curl(
            &["--user", "alice:secret"],
            format!("ftp://{}/", server.addr),
        ),
        LIMIT,
    );
    assert!(!ftp.status.success(), "FTP let the banned address in");
}
