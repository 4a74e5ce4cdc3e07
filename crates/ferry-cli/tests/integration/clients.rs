//! Real clients against ferry: ftplib, urllib, curl, lftp, rclone and wget.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::{FerryServer, files_under, python_script, random_bytes, run, run_ok};

const MINUTE: Duration = Duration::from_secs(60);

#[test]
fn ftplib_every_command() {
    let server = FerryServer::start();
    let out = python_script("ftplib_commands.py", &server, &[]);
    assert!(out.contains("all commands OK"), "{out}");
}

#[test]
fn ftplib_logins_and_permissions() {
    let server = FerryServer::start();
    let out = python_script("policy_basics.py", &server, &[]);
    assert!(out.contains("policy basics OK"), "{out}");
    // Passwords never reach the log.
    let log = server.log();
    assert!(log.contains("login failed"), "failed logins are logged");
    assert!(
        !log.contains("alice-pw") && !log.contains("bob-pw"),
        "a password was logged"
    );
}

#[test]
fn urllib_downloads_ftp_urls() {
    let server = FerryServer::start();
    let body = random_bytes(200_000, 1);
    std::fs::write(server.files().join("alice/u.bin"), &body).expect("write");
    let script = format!(
        "import sys, urllib.request\n\
         data = urllib.request.urlopen('ftp://alice:alice-pw@127.0.0.1:{}/u.bin', timeout=30).read()\n\
         sys.stdout.buffer.write(data)",
        server.port()
    );
    let out = run(Command::new("python3").args(["-c", &script]), MINUTE);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, body);
}

fn curl(server: &FerryServer, path: &str) -> Command {
    let mut c = Command::new("curl");
    c.args([
        "--silent",
        "--show-error",
        "--fail",
        "--max-time",
        "60",
        "--user",
        "alice:alice-pw",
    ])
    .arg(format!("ftp://127.0.0.1:{}/{path}", server.port()));
    c
}

#[test]
fn curl_upload_download_list_resume_active() {
    let server = FerryServer::start();
    let work = tempfile::tempdir().expect("tmp");
    // Over 4 MiB, so that the downloads (passive, active, resumed from 1 MB)
    // take the server's own-thread sendfile loop.
    let body = random_bytes(6_000_000, 2);
    let src = work.path().join("src.bin");
    std::fs::write(&src, &body).expect("write");

    // Upload, creating a directory on the way.
    run_ok(
        curl(&server, "dir/up.bin")
            .args(["--ftp-create-dirs", "-T"])
            .arg(&src),
        MINUTE,
    );
    assert_eq!(
        std::fs::read(server.files().join("alice/dir/up.bin")).expect("uploaded"),
        body
    );

    // Download, passive and active.
    let dst = work.path().join("dst.bin");
    run_ok(curl(&server, "dir/up.bin").arg("-o").arg(&dst), MINUTE);
    assert_eq!(std::fs::read(&dst).expect("dst"), body);
    let active = work.path().join("active.bin");
    run_ok(
        curl(&server, "dir/up.bin")
            .args(["--ftp-port", "127.0.0.1", "-o"])
            .arg(&active),
        MINUTE,
    );
    assert_eq!(std::fs::read(&active).expect("active"), body);

    // Listings: LIST for a directory URL, NLST with --list-only.
    let list = run_ok(&mut curl(&server, "dir/"), MINUTE);
    assert!(
        list.lines()
            .any(|l| l.starts_with("-rw") && l.ends_with(" up.bin")),
        "{list}"
    );
    let names = run_ok(curl(&server, "dir/").arg("--list-only"), MINUTE);
    assert_eq!(names.trim(), "up.bin");

    // Resume a partial download with -C -.
    let partial = work.path().join("partial.bin");
    std::fs::write(&partial, &body[..1_000_000]).expect("partial");
    run_ok(
        curl(&server, "dir/up.bin")
            .args(["-C", "-", "-o"])
            .arg(&partial),
        MINUTE,
    );
    assert_eq!(std::fs::read(&partial).expect("resumed"), body);

    // Resume a partial upload with -C -.
    std::fs::write(server.files().join("alice/half.bin"), &body[..1_234_567]).expect("half");
    run_ok(
        curl(&server, "half.bin").args(["-C", "-", "-T"]).arg(&src),
        MINUTE,
    );
    assert_eq!(
        std::fs::read(server.files().join("alice/half.bin")).expect("half"),
        body
    );

    // A missing file is a 550, which curl reports as "remote file not found" (78).
    let out = run(&mut curl(&server, "nope.bin"), MINUTE);
    assert_eq!(
        out.status.code(),
        Some(78),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn write_tree(root: &Path, files: usize) {
    for i in 0..files {
        let dir = root
            .join(format!("d{}", i % 10))
            .join(format!("e{}", i % 7));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let len = (i * 37) % 5000;
        std::fs::write(dir.join(format!("f{i} x.txt")), random_bytes(len, i as u64))
            .expect("write");
    }
}

/// Every file under `a` is under `b` with the same bytes, and the counts match.
fn assert_same_tree(a: &Path, b: &Path) {
    let contents = |root: &Path| -> Vec<(String, Vec<u8>)> {
        files_under(root)
            .into_iter()
            .map(|(rel, p)| (rel, std::fs::read(&p).expect("read")))
            .collect()
    };
    let (x, y) = (contents(a), contents(b));
    assert_eq!(x.len(), y.len(), "file counts differ");
    for (l, r) in x.iter().zip(&y) {
        assert_eq!(l.0, r.0);
        assert!(l.1 == r.1, "{} differs", l.0);
    }
}

#[test]
fn lftp_mirror_both_ways() {
    let server = FerryServer::start();
    let work = tempfile::tempdir().expect("tmp");
    let local = work.path().join("local");
    write_tree(&local, 1000);
    // One file over 4 MiB, which the server sends from a thread of its own.
    std::fs::write(local.join("large.bin"), random_bytes(6_000_000, 77)).expect("write");
    let url = format!("ftp://alice:alice-pw@127.0.0.1:{}", server.port());
    let lftp = |script: &str| {
        let mut c = Command::new("lftp");
        c.args(["-c", &format!("set ftp:ssl-allow false; set net:max-retries 1; set net:timeout 20; open {url}; {script}")]);
        c
    };
    // Upload the tree.
    run_ok(
        &mut lftp(&format!("mirror -R {} /up", local.display())),
        Duration::from_secs(300),
    );
    assert_same_tree(&local, &server.files().join("alice/up"));
    // And back down.
    let back = work.path().join("back");
    run_ok(
        &mut lftp(&format!("mirror /up {}", back.display())),
        Duration::from_secs(300),
    );
    assert_same_tree(&local, &back);
}

#[test]
fn ipv6_listener_passive_and_active() {
    let config = crate::support::standard_config("")
        .replace("listen = [\"127.0.0.1:0\"]", "listen = [\"[::1]:0\"]");
    let server = FerryServer::start_with(&config);
    assert!(server.addr.is_ipv6());
    let script = r#"
import ftplib, io, os, sys
f = ftplib.FTP()
f.connect("::1", int(sys.argv[2]), timeout=30)
f.login("alice", "alice-pw")
data = os.urandom(100_000)
f.storbinary("STOR v6.bin", io.BytesIO(data))       # EPSV on IPv6
assert f.lastresp == "226"
f.set_pasv(False)                                   # EPRT |2|::1|port|
buf = io.BytesIO(); f.retrbinary("RETR v6.bin", buf.write)
assert buf.getvalue() == data
try:
    f.sendcmd("PASV")
    raise AssertionError("PASV cannot announce an IPv6 address")
except ftplib.error_perm as e:
    assert str(e).startswith("504"), e
print("ipv6 OK")
"#;
    let out = run_ok(
        Command::new("python3").args(["-c", script, "::1", &server.port().to_string()]),
        MINUTE,
    );
    assert!(out.contains("ipv6 OK"));
    assert_eq!(
        std::fs::read(server.files().join("alice/v6.bin"))
            .expect("v6")
            .len(),
        100_000
    );
}

/// rclone, over FTP and over SFTP, with `-v` (what it did goes to stderr),
/// its configuration in `work`, one try per run.
fn rclone(work: &Path, args: &[&str]) -> std::process::Output {
    run(
        Command::new("rclone")
            .env("RCLONE_CONFIG", work.join("rclone.conf"))
            .args(["-v", "--retries", "1", "--low-level-retries", "1"])
            .args(args)
            .current_dir(work),
        MINUTE,
    )
}

/// An rclone remote of ferry's server for `user` (password "secret"):
/// `:ftp,…:` or `:sftp,…:` with the port and rclone's obscured password.
fn rclone_remote(kind: &str, port: u16, user: &str, work: &Path) -> String {
    let obscured = run_ok(
        Command::new("rclone")
            .env("RCLONE_CONFIG", work.join("rclone.conf"))
            .args(["obscure", "secret"]),
        MINUTE,
    );
    format!(
        ":{kind},host=127.0.0.1,port={port},user={user},pass={}:",
        obscured.trim()
    )
}

/// rclone keeps a tree in sync over FTP and over SFTP (sizes and
/// modification times round-trip, so a second sync moves nothing; a changed
/// and a removed file are carried over), reads a quota as the space there
/// is, and is refused past it; wget mirrors the tree back over FTP.
#[test]
fn rclone_syncs_trees_over_ftp_and_sftp_and_wget_mirrors_them() {
    let server = FerryServer::start_with(&crate::sftp::config());
    let sftp_port = crate::sftp::sftp_addr(&server).port();
    let work = tempfile::tempdir().expect("tmp");
    let w = work.path();
    let local = w.join("local");
    write_tree(&local, 200);
    std::fs::write(local.join("large.bin"), random_bytes(3_000_000, 5)).expect("write");
    let said = |out: &std::process::Output| String::from_utf8_lossy(&out.stderr).into_owned();
    let synced = |out: &std::process::Output| {
        assert!(out.status.success(), "rclone failed:\n{}", said(out));
        said(out)
    };

    for (kind, port, dir) in [
        ("ftp", server.port(), "ftp-tree"),
        ("sftp", sftp_port, "sftp-tree"),
    ] {
        let remote = format!("{}{dir}", rclone_remote(kind, port, "alice", w));
        let local_s = local.display().to_string();
        synced(&rclone(w, &["sync", &local_s, &remote]));
        let stored = server.files().join("alice").join(dir);
        assert_same_tree(&local, &stored);
        // Sizes and times as rclone set them: nothing to do the second time.
        let again = synced(&rclone(w, &["sync", &local_s, &remote]));
        assert!(
            again.contains("There was nothing to transfer"),
            "{kind}:\n{again}"
        );
        // One file changed, one removed: exactly those are carried over.
        std::fs::write(local.join("d1/e1/f1 x.txt"), format!("changed for {kind}")).expect("write");
        let removed = files_under(&local)
            .into_iter()
            .find(|(rel, _)| rel.starts_with("d2/"))
            .expect("a file under d2");
        std::fs::remove_file(&removed.1).expect("remove");
        let changed = synced(&rclone(w, &["sync", &local_s, &remote]));
        assert!(
            changed.contains("f1 x.txt: Copied (replaced existing)"),
            "{kind}:\n{changed}"
        );
        assert!(changed.contains(": Deleted"), "{kind}:\n{changed}");
        assert_same_tree(&local, &stored);
        let checked = synced(&rclone(w, &["check", &local_s, &remote]));
        assert!(
            checked.contains("0 differences found"),
            "{kind}:\n{checked}"
        );
    }

    // carol's quota is 100 KiB: what rclone reads as the space (SFTP's
    // statvfs), and an upload past it is refused over both protocols with
    // nothing left behind.
    let about = run_ok(
        Command::new("rclone")
            .env("RCLONE_CONFIG", w.join("rclone.conf"))
            .args([
                "about",
                "--json",
                &rclone_remote("sftp", sftp_port, "carol", w),
            ]),
        MINUTE,
    );
    assert!(about.contains("\"total\": 102400"), "{about}");
    std::fs::write(w.join("big.bin"), random_bytes(200_000, 6)).expect("write");
    for (kind, port) in [("ftp", server.port()), ("sftp", sftp_port)] {
        let out = rclone(
            w,
            &["copy", "big.bin", &rclone_remote(kind, port, "carol", w)],
        );
        assert!(!out.status.success(), "{kind}: stored past the quota");
        assert!(
            said(&out).contains("quota_bytes"),
            "{kind}:\n{}",
            said(&out)
        );
    }
    assert!(files_under(&server.files().join("carol")).is_empty());

    // wget's recursive FTP download of what rclone stored over FTP (the
    // local tree has lost a file since).
    let mirror = w.join("wget");
    std::fs::create_dir_all(&mirror).expect("mkdir");
    run_ok(
        Command::new("wget")
            .args(["-q", "-r", "-np", "-nH", "--cut-dirs=1"])
            .arg(format!(
                "ftp://alice:secret@127.0.0.1:{}/ftp-tree/",
                server.port()
            ))
            .current_dir(&mirror),
        MINUTE,
    );
    assert_same_tree(&server.files().join("alice/ftp-tree"), &mirror);
}
