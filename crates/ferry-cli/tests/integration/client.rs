//! The client (`ferry ls|get|put|rm|mkdir|rmdir|mv|mirror|shell`) against
//! ferry's own server and against vsftpd, ProFTPD and Pure-FTPd: everyday
//! commands in passive and active mode, plain and TLS; interrupted transfers
//! resumed; mirrors; segmented downloads; rate limits; the shell.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::peers::PeerServer;
use crate::support::{
    ALICE_PASSWORD, FerryServer, ferry_bin, files_under, free_port, mtimes_of, random_bytes, run,
    set_mtime, standard_config,
};

const MINUTE: Duration = Duration::from_secs(60);

/// Runs `ferry ARGS` in `dir` (stdin empty), within `limit`.
pub(crate) fn client(dir: &Path, args: &[&str]) -> Output {
    run(
        Command::new(ferry_bin()).args(args).current_dir(dir),
        3 * MINUTE,
    )
}

/// Like [`client`], insisting on success; returns stdout.
pub(crate) fn client_ok(dir: &Path, args: &[&str]) -> String {
    let out = client(dir, args);
    assert!(
        out.status.success(),
        "ferry {args:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(crate) fn with(base: &[&str], extra: &[&str]) -> Vec<String> {
    base.iter().chain(extra).map(|s| (*s).to_owned()).collect()
}

pub(crate) fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The everyday commands against any server: mkdir -p, put, ls (names, -l,
/// --json), get --verify, mv, rm, rmdir, each checked on the server's disk.
/// Over SFTP (`base` an sftp:// URL), refusals name the SFTP status rather
/// than an FTP code.
pub(crate) fn everyday(base: &str, extra: &[&str], host: &Path, label: &str) {
    let work = tempfile::tempdir().expect("tempdir");
    let w = work.path();
    let data = random_bytes(300_000, label.len() as u64);
    std::fs::write(w.join("one.bin"), &data).expect("write");
    std::fs::write(w.join("two words.txt"), b"hello\n").expect("write");
    let dir_url = format!("{base}/t-{label}/");
    let on_host = host.join(format!("t-{label}"));
    let ok = |a: &[&str]| client_ok(w, &args(&with(a, extra)));

    ok(&["mkdir", "-p", &format!("{dir_url}deep/er")]);
    assert!(on_host.join("deep/er").is_dir(), "{label}: mkdir -p");
    ok(&["mkdir", "-p", &format!("{dir_url}deep")]); // exists: still fine
    ok(&["put", "one.bin", "two words.txt", &dir_url]);
    assert_eq!(
        std::fs::read(on_host.join("one.bin")).expect("uploaded"),
        data,
        "{label}"
    );
    assert_eq!(
        std::fs::read(on_host.join("two words.txt")).expect("uploaded"),
        b"hello\n"
    );

    let names = ok(&["ls", &dir_url]);
    let names: Vec<&str> = names.lines().collect();
    assert_eq!(names, ["deep/", "one.bin", "two words.txt"], "{label}");
    let long = ok(&["ls", "-l", &dir_url]);
    assert!(
        long.lines()
            .any(|l| l.contains(" 300000 ") && l.ends_with(" one.bin")),
        "{label}: {long}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["ls", "--json", &dir_url])).expect("json");
    let one = json
        .as_array()
        .and_then(|a| a.iter().find(|e| e["name"] == "one.bin"))
        .unwrap_or_else(|| panic!("{label}: {json}"));
    assert_eq!(
        (one["kind"].as_str(), one["size"].as_u64()),
        (Some("file"), Some(300_000)),
        "{label}"
    );

    ok(&["get", "--verify", &format!("{dir_url}one.bin"), "back.bin"]);
    assert_eq!(
        std::fs::read(w.join("back.bin")).expect("downloaded"),
        data,
        "{label}"
    );
    ok(&["get", &format!("{dir_url}two%20words.txt")]);
    assert_eq!(
        std::fs::read(w.join("two words.txt")).expect("downloaded"),
        b"hello\n"
    );

    // Whole trees, two files at a time.
    for (i, name) in ["tree/a.txt", "tree/sub/b.bin", "tree/sub/deeper/c.txt"]
        .iter()
        .enumerate()
    {
        let p = w.join(name);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, random_bytes(10_000 * (i + 1), i as u64)).expect("write");
    }
    ok(&["put", "-r", "--parallel", "2", "tree", &dir_url]);
    ok(&[
        "get",
        "-r",
        "--parallel",
        "2",
        &format!("{dir_url}tree/"),
        "copy",
    ]);
    for name in ["a.txt", "sub/b.bin", "sub/deeper/c.txt"] {
        let original = std::fs::read(w.join("tree").join(name)).expect("original");
        assert_eq!(
            std::fs::read(on_host.join("tree").join(name)).expect("uploaded"),
            original,
            "{label}"
        );
        assert_eq!(
            std::fs::read(w.join("copy").join(name)).expect("downloaded"),
            original,
            "{label}"
        );
    }

    // The new name as a path relative to the login directory (FTP), or as a
    // URL (SFTP, whose URL paths are absolute).
    let sftp = base.starts_with("sftp:");
    let new_name = if sftp {
        format!("{dir_url}renamed.bin")
    } else {
        format!("t-{label}/renamed.bin")
    };
    ok(&["mv", &format!("{dir_url}one.bin"), &new_name]);
    assert!(
        !on_host.join("one.bin").exists() && on_host.join("renamed.bin").is_file(),
        "{label}: mv"
    );
    ok(&[
        "rm",
        &format!("{dir_url}renamed.bin"),
        &format!("{dir_url}two%20words.txt"),
    ]);
    ok(&["rmdir", &format!("{dir_url}deep/er")]);
    assert!(
        !on_host.join("renamed.bin").exists() && !on_host.join("deep/er").exists(),
        "{label}"
    );

    // A refusal is an error with the server's code, and exit status 1.
    let out = client(
        w,
        &args(&with(&["rmdir", &format!("{dir_url}no-such-dir")], extra)),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{label}: {stderr}");
    let refusal = if sftp { "no such file" } else { "550" };
    assert!(
        stderr.starts_with("error: ") && stderr.contains(refusal),
        "{label}: {stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{label}: one line: {stderr}");
    let out = client(
        w,
        &args(&with(&["get", &format!("{dir_url}missing.bin")], extra)),
    );
    assert_eq!(out.status.code(), Some(1), "{label}");
    assert!(
        !w.join("missing.bin").exists() && !w.join("missing.bin.ferry-part").exists(),
        "{label}"
    );
}

#[test]
fn everyday_against_ferry_plain_tls_active_passive() {
    let server = FerryServer::start_with(&standard_config("").replace(
        "[anonymous]",
        "[tls]\nimplicit_listen = [\"127.0.0.1:0\"]\n\n[anonymous]",
    ));
    let fp = server.fingerprint();
    let host = server.files().join("alice");
    let plain = format!("ftp://alice:{ALICE_PASSWORD}@127.0.0.1:{}", server.port());
    let explicit = format!("ftpes://alice:{ALICE_PASSWORD}@127.0.0.1:{}", server.port());
    let implicit = format!(
        "ftps://alice:{ALICE_PASSWORD}@127.0.0.1:{}",
        server.implicit_addr().port()
    );
    everyday(&plain, &[], &host, "plain-passive");
    everyday(&plain, &["--active"], &host, "plain-active");
    everyday(&explicit, &["--pin", &fp], &host, "explicit-passive");
    everyday(
        &explicit,
        &["--pin", &fp, "--active"],
        &host,
        "explicit-active",
    );
    everyday(&implicit, &["--pin", &fp], &host, "implicit");
    // TLS 1.3 on request: fine for a session with few data connections (each
    // uses up one of the tickets the server sent; see docs/client.md).
    let listing = client_ok(
        server.dir.path(),
        &["ls", "--pin", &fp, "--tls13", &format!("{implicit}/")],
    );
    assert!(listing.contains("t-implicit/"), "{listing}");
    // The certificate is self-signed: without a pin or --insecure it is refused.
    let out = client(server.dir.path(), &["ls", &format!("{explicit}/")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("TLS"),
        "{out:?}"
    );
    let wrong_pin = "00".repeat(32);
    let out = client(
        server.dir.path(),
        &["ls", "--pin", &wrong_pin, &format!("{explicit}/")],
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not the pinned one"),
        "{out:?}"
    );
}

#[test]
fn everyday_against_vsftpd_with_required_session_reuse() {
    let vsftpd = PeerServer::vsftpd(false);
    let ca = vsftpd.ca.clone().expect("ca");
    let ca = ca.to_str().expect("utf-8");
    let host = vsftpd.files();
    everyday(&vsftpd.base("ftp"), &[], &host, "plain-passive");
    everyday(&vsftpd.base("ftp"), &["--active"], &host, "plain-active");
    // Certificate checked against the test CA; every data connection must
    // resume the control connection's TLS session (require_ssl_reuse=YES).
    everyday(
        &vsftpd.base("ftpes"),
        &["--ca-file", ca],
        &host,
        "tls-passive",
    );
    everyday(
        &vsftpd.base("ftpes"),
        &["--ca-file", ca, "--active"],
        &host,
        "tls-active",
    );
    // PASV only (no EPSV), the 227 address taken from the control connection.
    everyday(
        &vsftpd.base("ftp"),
        &["--no-epsv", "--pasv-address", "control"],
        &host,
        "pasv",
    );
    let implicit = PeerServer::vsftpd(true);
    let ca = implicit.ca.clone().expect("ca");
    std::fs::write(implicit.files().join("hello.txt"), b"implicit\n").expect("write");
    implicit.hand_over();
    let work = tempfile::tempdir().expect("tempdir");
    let url = format!("{}/hello.txt", implicit.base("ftps"));
    client_ok(
        work.path(),
        &["get", "--ca-file", ca.to_str().expect("utf-8"), &url],
    );
    assert_eq!(
        std::fs::read(work.path().join("hello.txt")).expect("got"),
        b"implicit\n"
    );
}

#[test]
fn everyday_against_proftpd_and_pure_ftpd() {
    let proftpd = PeerServer::proftpd();
    everyday(&proftpd.base("ftp"), &[], &proftpd.files(), "passive");
    everyday(
        &proftpd.base("ftp"),
        &["--active"],
        &proftpd.files(),
        "active",
    );
    // ProFTPD's mod_digest hashes ranges with XSHA256 (its HASH ignores RANG,
    // which the client notices from the range in the reply).
    let data = random_bytes(2_000_000, 14);
    std::fs::write(proftpd.files().join("r.bin"), &data).expect("write");
    proftpd.hand_over();
    let work = tempfile::tempdir().expect("tempdir");
    let w = work.path();
    std::fs::write(w.join("r.bin"), &data[..700_000]).expect("write");
    let url = format!("{}/r.bin", proftpd.base("ftp"));
    let out = client_ok(w, &["get", "-c", "--verify", &url]);
    assert!(
        out.contains("resumed at byte 700000 (prefix checksum matched), verified SHA-1"),
        "{out}"
    );
    assert_eq!(std::fs::read(w.join("r.bin")).expect("got"), data);
    let mut bad = data[..700_000].to_vec();
    bad[123] ^= 1;
    std::fs::write(w.join("bad.bin"), &bad).expect("write");
    let out = client(w, &["get", "-c", &url, "bad.bin"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("differ"),
        "{out:?}"
    );
    assert_eq!(std::fs::read(w.join("bad.bin")).expect("kept"), bad);

    let pure = PeerServer::pure_ftpd();
    everyday(&pure.base("ftp"), &[], &pure.files(), "passive");
    everyday(&pure.base("ftp"), &["--active"], &pure.files(), "active");
}

/// Starts `ferry ARGS` in the background.
fn spawn_client(dir: &Path, args: &[&str]) -> Child {
    client_command(dir, args).spawn().expect("ferry")
}

/// The command of a background client: in `dir`, output captured.
fn client_command(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(ferry_bin());
    command
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Waits for a background client; returns (success, stdout, stderr).
fn finish_client(mut child: Child) -> (bool, String, String) {
    let deadline = Instant::now() + 2 * MINUTE;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the client did not finish");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    let mut err = String::new();
    let _ = child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out);
    let _ = child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err);
    (status.success(), out, err)
}

/// Waits until `path` holds at least `bytes`.
fn wait_for_size(path: &Path, bytes: u64) {
    let deadline = Instant::now() + MINUTE;
    while std::fs::metadata(path).map(|m| m.len()).unwrap_or(0) < bytes {
        assert!(
            Instant::now() < deadline,
            "{} never reached {bytes} bytes",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A server on a fixed port (so it can come back where it was after a crash)
/// that sends alice at most 2 MiB/s: it cannot run ahead of the client into
/// the socket buffers, so a crash cuts a download mid-file.
fn fixed_port_server() -> FerryServer {
    let port = free_port();
    let config = standard_config("")
        .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"))
        .replace(
            "name = \"alice\"\n",
            "name = \"alice\"\ndownload_rate = \"2 MiB/s\"\n",
        );
    assert!(config.contains("download_rate"));
    FerryServer::start_with(&config)
}

#[test]
fn download_cut_by_a_server_crash_resumes_with_retries() {
    let mut server = fixed_port_server();
    let data = random_bytes(4_000_000, 7);
    std::fs::write(server.files().join("alice/big.bin"), &data).expect("write");
    let work = tempfile::tempdir().expect("tempdir");
    let url = format!(
        "ftp://alice:{ALICE_PASSWORD}@127.0.0.1:{}/big.bin",
        server.port()
    );
    let child = spawn_client(work.path(), &["get", "--retries", "6", &url]);
    wait_for_size(&work.path().join("big.bin.ferry-part"), 600_000);
    server.crash_and_restart();
    let (ok, out, err) = finish_client(child);
    assert!(ok, "{out}\n{err}");
    assert_eq!(
        std::fs::read(work.path().join("big.bin")).expect("downloaded"),
        data
    );
    assert!(
        out.contains("resumed at byte") && out.contains("prefix checksum matched"),
        "{out}\n{err}"
    );
    assert!(err.contains("retry 1 of 6"), "{err}");
    assert!(!work.path().join("big.bin.ferry-part").exists());
}

/// Waits until at least `bytes` of `path` are written (allocated): a
/// segmented download sets the part file's length first and fills it in.
fn wait_for_written(path: &Path, bytes: u64) {
    use std::os::unix::fs::MetadataExt;
    let deadline = Instant::now() + MINUTE;
    while std::fs::metadata(path)
        .map(|m| m.blocks() * 512)
        .unwrap_or(0)
        < bytes
    {
        assert!(
            Instant::now() < deadline,
            "{} never had {bytes} bytes written",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Starts `ferry get --segments 4 --retries 6 --verify` of alice's
/// big.bin (8,000,000 bytes) from `server`, with `extra` options, and waits
/// until about 1 MB of it is written.
fn start_segmented_download(server: &FerryServer, work: &Path, extra: &[&str]) -> Child {
    let url = format!(
        "ftp://alice:{ALICE_PASSWORD}@127.0.0.1:{}/big.bin",
        server.port()
    );
    let mut args = vec!["get", "--segments", "4", "--retries", "6", "--verify"];
    args.extend_from_slice(extra);
    args.push(&url);
    let child = client_command(work, &args)
        .env("FERRY_LOG", "ferry_client::wire=debug,warn")
        .spawn()
        .expect("ferry");
    // The four ranges share alice's 2 MiB/s: about half a second.
    wait_for_written(&work.join("big.bin.ferry-segments"), 1_000_000);
    child
}

/// The end of a segmented download cut once: whole and verified, each range
/// retried, and at least one range going on from the byte it had reached
/// (REST inside the range) rather than from its start.
fn assert_segments_resumed(child: Child, work: &Path, data: &[u8]) {
    let (ok, out, err) = finish_client(child);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("verified SHA-256"), "{out}");
    assert!(
        std::fs::read(work.join("big.bin")).expect("downloaded") == data,
        "the file differs"
    );
    assert!(err.contains("retry 1 of 6"), "{err}");
    // The ranges start at 0, 2,000,000, 4,000,000 and 6,000,000.
    let size = data.len() as u64;
    let starts: Vec<u64> = (0..4).map(|i| i * size / 4).collect();
    let resumed = err
        .lines()
        .filter_map(|l| l.split("> REST ").nth(1))
        .filter_map(|n| n.trim().parse::<u64>().ok())
        .filter(|n| !starts.contains(n))
        .count();
    assert!(resumed > 0, "no range went on from where it was cut: {err}");
    assert!(!work.join("big.bin.ferry-segments").exists());
}

/// A segmented download cut by a server crash (the data connections end):
/// each range is retried on a new session from where it was.
#[test]
fn segmented_download_cut_by_a_server_crash_resumes_each_range() {
    let mut server = fixed_port_server();
    let data = random_bytes(8_000_000, 17);
    std::fs::write(server.files().join("alice/big.bin"), &data).expect("write");
    let work = tempfile::tempdir().expect("tempdir");
    let child = start_segmented_download(&server, work.path(), &[]);
    server.crash_and_restart();
    assert_segments_resumed(child, work.path(), &data);
}

/// A segmented download whose server stops sending (stopped with SIGSTOP
/// for longer than the client's `--timeout`): each range fails with a
/// timeout, keeps the bytes it had, and is retried from there once the
/// server runs again.
#[test]
fn segmented_download_of_a_stalled_server_resumes_each_range() {
    let server = fixed_port_server();
    let data = random_bytes(8_000_000, 18);
    std::fs::write(server.files().join("alice/big.bin"), &data).expect("write");
    let work = tempfile::tempdir().expect("tempdir");
    let child = start_segmented_download(&server, work.path(), &["--timeout", "1s"]);
    server.signal("STOP");
    // The ranges time out after 1 s and wait 0.5 s before their retry.
    std::thread::sleep(Duration::from_millis(1300));
    server.signal("CONT");
    assert_segments_resumed(child, work.path(), &data);
}

#[test]
fn upload_cut_mid_file_resumes_with_retries() {
    // vsftpd keeps what it received when a session dies, so the retry
    // appends to it.
    let vsftpd = PeerServer::vsftpd(false);
    let data = random_bytes(4_000_000, 8);
    let work = tempfile::tempdir().expect("tempdir");
    std::fs::write(work.path().join("up.bin"), &data).expect("write");
    let url = format!("{}/up.bin", vsftpd.base("ftp"));
    let child = spawn_client(
        work.path(),
        &[
            "put",
            "--limit-rate",
            "2M",
            "--retries",
            "6",
            "up.bin",
            &url,
        ],
    );
    wait_for_size(&vsftpd.files().join("up.bin"), 600_000);
    vsftpd.kill_sessions();
    let (ok, out, err) = finish_client(child);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("resumed at byte"), "{out}\n{err}");
    assert_eq!(
        std::fs::read(vsftpd.files().join("up.bin")).expect("uploaded"),
        data
    );
}

#[test]
fn continue_resumes_only_what_is_safe() {
    let mut server = fixed_port_server();
    let data = random_bytes(3_000_000, 9);
    let remote = server.files().join("alice/big.bin");
    std::fs::write(&remote, &data).expect("write");
    let work = tempfile::tempdir().expect("tempdir");
    let w = work.path();
    let url = format!(
        "ftp://alice:{ALICE_PASSWORD}@127.0.0.1:{}/big.bin",
        server.port()
    );
    let part = w.join("big.bin.ferry-part");

    // A download cut short, no retries: the partial file stays, the real name
    // is never written.
    let child = spawn_client(w, &["get", &url]);
    wait_for_size(&part, 400_000);
    server.crash_and_restart();
    let (ok, _, err) = finish_client(child);
    assert!(!ok && err.starts_with("error: "), "{err}");
    assert!(part.exists() && !w.join("big.bin").exists());

    // The remote file changes: -c refuses and keeps the partial bytes.
    let before = std::fs::read(&part).expect("partial");
    let mut changed = data.clone();
    changed.extend_from_slice(b"more");
    std::fs::write(&remote, &changed).expect("rewrite");
    let out = client(w, &["get", "-c", &url]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot resume") && stderr.contains("changed"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(&part).expect("partial"),
        before,
        "the partial file is kept as it was"
    );

    // Back to the original, a fresh interrupted download, then -c resumes it.
    std::fs::write(&remote, &data).expect("rewrite");
    std::fs::remove_file(&part).expect("rm");
    let child = spawn_client(w, &["get", &url]);
    wait_for_size(&part, 400_000);
    server.crash_and_restart();
    let _ = finish_client(child);
    let out = client_ok(w, &["get", "-c", "--verify", &url]);
    assert!(
        out.contains("resumed at byte") && out.contains("verified SHA-256"),
        "{out}"
    );
    assert_eq!(std::fs::read(w.join("big.bin")).expect("downloaded"), data);

    // A partial file (from another program) whose bytes differ from the
    // server's: the range checksum catches it.
    let mut wrong = data[..500_000].to_vec();
    wrong[1000] ^= 0xff;
    std::fs::write(w.join("other.bin"), &wrong).expect("write");
    let out = client(w, &["get", "-c", &url, "other.bin"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("differ"), "{stderr}");
    assert_eq!(std::fs::read(w.join("other.bin")).expect("kept"), wrong);

    // Uploads: a shorter remote file with the right bytes is continued.
    std::fs::write(w.join("up.bin"), &data).expect("write");
    std::fs::write(server.files().join("alice/up.bin"), &data[..1_234_567]).expect("write");
    let up = format!(
        "ftp://alice:{ALICE_PASSWORD}@127.0.0.1:{}/up.bin",
        server.port()
    );
    let out = client_ok(w, &["put", "-c", "--verify", "up.bin", &up]);
    assert!(
        out.contains("resumed at byte 1234567 (prefix checksum matched)"),
        "{out}"
    );
    assert_eq!(
        std::fs::read(server.files().join("alice/up.bin")).expect("uploaded"),
        data
    );
}

fn tree_of(root: &Path) -> Vec<(String, Vec<u8>)> {
    files_under(root)
        .into_iter()
        .map(|(rel, p)| (rel, std::fs::read(&p).expect("read")))
        .collect()
}

fn transferred(json: &str) -> usize {
    let v: serde_json::Value =
        serde_json::from_str(json.trim()).unwrap_or_else(|e| panic!("{e}: {json}"));
    assert_eq!(v["ok"], true, "{json}");
    v["files"].as_array().map_or(0, Vec::len)
}

#[test]
fn mirror_a_thousand_files_both_ways() {
    let server = FerryServer::start();
    let work = tempfile::tempdir().expect("tempdir");
    let w = work.path();
    let site = w.join("site");
    for d in 0..10 {
        std::fs::create_dir_all(site.join(format!("d{d}"))).expect("mkdir");
        for f in 0..100 {
            let len = (d * 100 + f) * 7 % 3000;
            let bytes = random_bytes(len, (d * 100 + f) as u64);
            let path = site.join(format!("d{d}/f{f}.dat"));
            std::fs::write(&path, bytes).expect("write");
            // Times in the past, each its own: copies must take them.
            set_mtime(&path, 1_600_000_000 + (d * 100 + f) as u64 * 61);
        }
    }
    let url = format!(
        "ftp://alice:{ALICE_PASSWORD}@127.0.0.1:{}/site",
        server.port()
    );
    let up = client_ok(w, &["mirror", "site", &url, "--parallel", "4", "--json"]);
    assert_eq!(transferred(&up), 1000);
    let on_server = server.files().join("alice/site");
    assert_eq!(tree_of(&on_server), tree_of(&site));
    assert!(
        mtimes_of(&on_server) == mtimes_of(&site),
        "MFMT gave the source's times"
    );
    assert_eq!(
        transferred(&client_ok(w, &["mirror", "site", &url, "--json"])),
        0,
        "second run"
    );

    let down = client_ok(w, &["mirror", &url, "copy", "--parallel", "4", "--json"]);
    assert_eq!(transferred(&down), 1000);
    assert_eq!(tree_of(&w.join("copy")), tree_of(&site));
    assert!(
        mtimes_of(&w.join("copy")) == mtimes_of(&site),
        "downloads took the times"
    );
    assert_eq!(
        transferred(&client_ok(w, &["mirror", &url, "copy", "--json"])),
        0,
        "second run"
    );

    // The source loses a directory and a file, and one file changes.
    std::fs::remove_dir_all(site.join("d3")).expect("rm");
    std::fs::remove_file(site.join("d4/f7.dat")).expect("rm");
    std::fs::write(site.join("d5/f1.dat"), b"changed").expect("write");
    let plan = client_ok(w, &["mirror", "site", &url, "--delete", "--dry-run"]);
    assert!(
        plan.contains("copy d5/f1.dat")
            && plan.contains("rmdir d3")
            && plan.contains("delete d4/f7.dat"),
        "{plan}"
    );
    assert!(on_server.join("d3").exists(), "a dry run changes nothing");
    let without_delete = client_ok(w, &["mirror", "site", &url, "--json"]);
    assert_eq!(transferred(&without_delete), 1);
    assert!(
        on_server.join("d3").exists(),
        "nothing deleted without --delete"
    );
    client_ok(w, &["mirror", "site", &url, "--delete"]);
    assert_eq!(tree_of(&on_server), tree_of(&site));
    client_ok(w, &["mirror", &url, "copy", "--delete"]);
    assert_eq!(tree_of(&w.join("copy")), tree_of(&site));
}

/// A 256 MiB file whose every MiB differs (its index in the first 8 bytes), so
/// a range written at the wrong offset shows.
fn write_large(path: &Path, mib: usize) {
    use std::io::Write;
    let base = random_bytes(1 << 20, 11);
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    for i in 0..mib {
        f.write_all(&(i as u64).to_le_bytes()).expect("write");
        f.write_all(&base[8..]).expect("write");
    }
    f.flush().expect("flush");
}

fn same_files(a: &Path, b: &Path) -> bool {
    let (mut fa, mut fb) = (
        std::fs::File::open(a).expect("open"),
        std::fs::File::open(b).expect("open"),
    );
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let na = fa.read(&mut ba).expect("read");
        let mut nb = 0;
        while nb < na {
            let n = fb.read(&mut bb[nb..na]).expect("read");
            if n == 0 {
                return false;
            }
            nb += n;
        }
        if na == 0 {
            return fb.read(&mut bb).expect("read") == 0;
        }
        if ba[..na] != bb[..na] {
            return false;
        }
    }
}

#[test]
fn segmented_download_of_256_mib_is_byte_identical() {
    let server = FerryServer::start();
    let remote = server.files().join("alice/large.bin");
    write_large(&remote, 256);
    let work = tempfile::tempdir().expect("tempdir");
    let url = format!(
        "ftp://alice:{ALICE_PASSWORD}@127.0.0.1:{}/large.bin",
        server.port()
    );
    let out = run(
        Command::new(ferry_bin())
            .args(["get", "--segments", "4", "--verify", &url])
            .env("FERRY_LOG", "ferry_client::wire=debug")
            .current_dir(work.path()),
        3 * MINUTE,
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("verified SHA-256"), "{stdout}");
    // Four transfers, three of them from an offset (64 MiB apart).
    assert_eq!(stderr.matches("> RETR large.bin").count(), 4, "{stderr}");
    for offset in [67_108_864u64, 134_217_728, 201_326_592] {
        assert!(
            stderr.contains(&format!("> REST {offset}")),
            "{offset}: {stderr}"
        );
    }
    assert!(same_files(&work.path().join("large.bin"), &remote));
}

#[test]
fn limit_rate_is_respected() {
    let server = FerryServer::start();
    let data = random_bytes(1_000_000, 12);
    std::fs::write(server.files().join("alice/mb.bin"), &data).expect("write");
    let work = tempfile::tempdir().expect("tempdir");
    let url = format!(
        "ftp://alice:{ALICE_PASSWORD}@127.0.0.1:{}/mb.bin",
        server.port()
    );
    // 1,000,000 bytes at 400,000 bytes/s: at least 2.5 s (less one 50 ms burst).
    let started = Instant::now();
    client_ok(work.path(), &["get", "--limit-rate", "400K", &url]);
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(2400), "took {took:?}");
    assert_eq!(
        std::fs::read(work.path().join("mb.bin")).expect("got"),
        data
    );
    let started = Instant::now();
    client_ok(
        work.path(),
        &[
            "put",
            "--limit-rate",
            "400K",
            "mb.bin",
            &format!("{url}.up"),
        ],
    );
    assert!(
        started.elapsed() >= Duration::from_millis(2400),
        "upload took {:?}",
        started.elapsed()
    );
}

#[test]
fn credentials_from_netrc_and_json_summaries() {
    let server = FerryServer::start();
    std::fs::write(server.files().join("alice/n.txt"), b"netrc\n").expect("write");
    let work = tempfile::tempdir().expect("tempdir");
    let netrc = work.path().join("netrc");
    std::fs::write(
        &netrc,
        format!("machine 127.0.0.1\n  login alice\n  password {ALICE_PASSWORD}\n"),
    )
    .expect("write");
    let url = format!("ftp://127.0.0.1:{}/n.txt", server.port());
    let out = run(
        Command::new(ferry_bin())
            .args(["get", "--json", &url])
            .env("NETRC", &netrc)
            .current_dir(work.path()),
        MINUTE,
    );
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["ok"], true);
    assert_eq!(v["files"][0]["bytes"], 6);
    assert_eq!(v["files"][0]["remote"], "n.txt");
    assert_eq!(
        std::fs::read(work.path().join("n.txt")).expect("got"),
        b"netrc\n"
    );
    // Without the netrc: anonymous, which cannot see alice's file.
    let out = run(
        Command::new(ferry_bin())
            .args(["get", "--json", "--no-netrc", &url])
            .current_dir(work.path()),
        MINUTE,
    );
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["ok"], false);
    assert!(
        v["failed"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("550")),
        "{v}"
    );
}

#[test]
fn pasv_address_is_a_policy() {
    // The server announces an address it cannot be reached on.
    let server = FerryServer::start_with(&standard_config("public_address = \"192.0.2.1\""));
    std::fs::write(server.files().join("alice/p.txt"), b"pasv\n").expect("write");
    let work = tempfile::tempdir().expect("tempdir");
    let url = format!(
        "ftp://alice:{ALICE_PASSWORD}@127.0.0.1:{}/p.txt",
        server.port()
    );
    client_ok(
        work.path(),
        &["get", "--no-epsv", "--pasv-address", "control", &url],
    );
    assert_eq!(
        std::fs::read(work.path().join("p.txt")).expect("got"),
        b"pasv\n"
    );
    let out = client(
        work.path(),
        &[
            "get",
            "--no-epsv",
            "--pasv-address",
            "reply",
            "--connect-timeout",
            "1s",
            &url,
            "q.txt",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("192.0.2.1"), "{stderr}");
}

#[test]
fn shell_reads_commands_from_stdin() {
    let server = FerryServer::start();
    std::fs::write(server.files().join("alice/a.txt"), b"alpha\n").expect("write");
    let work = tempfile::tempdir().expect("tempdir");
    std::fs::write(work.path().join("local.txt"), b"local\n").expect("write");
    std::fs::write(work.path().join("m1.log"), b"1").expect("write");
    std::fs::write(work.path().join("m2.log"), b"2").expect("write");
    let url = format!("ftp://alice:{ALICE_PASSWORD}@127.0.0.1:{}/", server.port());
    std::fs::write(server.files().join("alice/half.txt"), b"0123456789").expect("write");
    std::fs::write(server.files().join("alice/lines.txt"), b"one\ntwo\n").expect("write");
    std::fs::write(work.path().join("half.txt"), b"01234").expect("write");
    std::fs::create_dir_all(work.path().join("lsub")).expect("mkdir");
    let anonymous = format!("ftp://127.0.0.1:{}/", server.port());
    let script = format!(
        "mkdir sub\ncd sub\nput local.txt\nmput *.log\nls\ncdup\npwd\nsize sub/local.txt\n\
         modtime a.txt\nget a.txt fetched.txt\nreget half.txt\npassive\ndir sub\npassive\n\
         rename a.txt b.txt\ndelete sub/m1.log\nbinary\nascii\nstatus\nhelp get\nquote NOOP\n\
         close\nstatus\nopen {anonymous}\nuser alice {ALICE_PASSWORD}\npwd\nbinary\nlcd lsub\n\
         get b.txt\nascii\nget lines.txt\nbinary\nmget half* b*\nmkdir empty\nrmdir empty\n\
         quit\nls\n"
    );
    let out = crate::support::ferry_in(work.path(), &["shell", &url], &script);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "local.txt\nm1.log\nm2.log\n",
        "\n/\n",
        "sub/local.txt: 6 bytes",
        "a.txt: 20",
        "resumed at byte 5",
        "Passive mode off.",
        " local.txt\n",
        "Renamed a.txt to b.txt",
        "Type: ascii",
        "get REMOTE [LOCAL]",
        "200 ",
        "Not connected.",
        "Logged in as alice",
        "Local directory now ",
    ] {
        assert!(stdout.contains(want), "{want:?} in:\n{stdout}");
    }
    assert_eq!(
        std::fs::read(work.path().join("half.txt")).expect("reget"),
        b"0123456789"
    );
    // TYPE A: CRLF on the wire, LF again here.
    assert_eq!(
        std::fs::read(work.path().join("lsub/lines.txt")).expect("ascii get"),
        b"one\ntwo\n"
    );
    assert_eq!(
        std::fs::read(work.path().join("lsub/half.txt")).expect("mget"),
        b"0123456789"
    );
    assert!(
        !server.files().join("alice/empty").exists(),
        "mkdir then rmdir"
    );
    assert_eq!(
        std::fs::read(work.path().join("lsub/b.txt")).expect("lcd, get"),
        b"alpha\n"
    );
    let alice = server.files().join("alice");
    assert_eq!(
        std::fs::read(alice.join("sub/local.txt")).expect("put"),
        b"local\n"
    );
    assert!(
        alice.join("b.txt").exists()
            && !alice.join("sub/m1.log").exists()
            && alice.join("sub/m2.log").exists()
    );
    assert_eq!(
        std::fs::read(work.path().join("fetched.txt")).expect("got"),
        b"alpha\n"
    );
    // A failing command makes the whole script fail, after running the rest.
    let out =
        crate::support::ferry_in(work.path(), &["shell", &url], "get nothing-here.txt\npwd\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains('/'));
    assert!(String::from_utf8_lossy(&out.stderr).contains("550"));
}

/// A tmux server of its own (`-L`) with one session, killed when dropped.
struct Tmux(String);

impl Tmux {
    /// Runs `command` in a detached session 150 columns wide, on a tmux server
    /// of its own named `name`, in `dir`.
    fn start(name: String, dir: &Path, command: &str, rows: u16) -> Self {
        let status = Command::new("tmux")
            .args([
                "-L",
                &name,
                "new-session",
                "-d",
                "-s",
                &name,
                "-x",
                "150",
                "-y",
            ])
            .arg(rows.to_string())
            .arg("-c")
            .arg(dir)
            .arg(command)
            .status()
            .expect("tmux");
        assert!(status.success(), "tmux new-session");
        Tmux(name)
    }

    fn keys(&self, keys: &[&str]) {
        let status = Command::new("tmux")
            .args(["-L", &self.0, "send-keys", "-t", &self.0])
            .args(keys)
            .status()
            .expect("tmux");
        assert!(status.success());
    }

    fn wait_for(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = Command::new("tmux")
                .args(["-L", &self.0, "capture-pane", "-p", "-t", &self.0])
                .output()
                .expect("tmux");
            let screen = String::from_utf8_lossy(&out.stdout).into_owned();
            if screen.contains(text) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "{text:?} never appeared:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // The server may be gone already (the shell ended its session); tmux
        // then says so on stderr, which is not news for the test log.
        let _ = Command::new("tmux")
            .args(["-L", &self.0, "kill-server"])
            .stderr(Stdio::null())
            .status();
    }
}

#[test]
fn shell_in_a_terminal_with_history() {
    let server = FerryServer::start();
    std::fs::create_dir_all(server.files().join("alice/docs")).expect("mkdir");
    std::fs::write(server.files().join("alice/docs/readme.txt"), b"read me\n").expect("write");
    let work = tempfile::tempdir().expect("tempdir");
    let name = format!("ferry-shell-{}", std::process::id());
    let url = format!("ftp://alice:{ALICE_PASSWORD}@127.0.0.1:{}/", server.port());
    let command = format!("HOME={} {} shell {url}", work.path().display(), ferry_bin());
    let tmux = Tmux::start(name, work.path(), &command, 40);
    tmux.wait_for("ferry>");
    tmux.keys(&["cd docs", "Enter"]);
    tmux.wait_for("/docs");
    tmux.keys(&["dir", "Enter"]);
    tmux.wait_for("readme.txt");
    // Line editing: type, erase a word, retype; then history (Up) repeats it.
    tmux.keys(&["size readme.txx", "BSpace", "t", "Enter"]);
    tmux.wait_for("readme.txt: 8 bytes");
    tmux.keys(&["get readme.txt", "Enter"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !work.path().join("readme.txt").exists() {
        assert!(
            Instant::now() < deadline,
            "get in the shell did not write the file"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    tmux.keys(&["C-l", "Up", "Up", "Enter"]);
    tmux.wait_for("readme.txt: 8 bytes");
    tmux.keys(&["quit", "Enter"]);
    // The shell creates the history file, then writes it: wait for what it
    // writes, not only for the file (reading between the two saw it empty).
    let deadline = Instant::now() + Duration::from_secs(30);
    let history_file = work.path().join(".ferry_history");
    let history = loop {
        let text = std::fs::read_to_string(&history_file).unwrap_or_default();
        if text.contains("size readme.txt") || Instant::now() >= deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(history_file.exists(), "history was not saved");
    assert!(history.contains("size readme.txt"), "{history}");
    assert_eq!(
        std::fs::read(work.path().join("readme.txt")).expect("got"),
        b"read me\n"
    );
}

#[test]
fn keepalive_noops_during_long_transfers() {
    // ferry paces alice at 2 MiB/s; vsftpd is paced by the client. vsftpd
    // reads the control connection only after a transfer, ferry during it:
    // the client sorts the NOOP replies from the transfer's either way.
    let server = fixed_port_server();
    let data = random_bytes(3_000_000, 13);
    std::fs::write(server.files().join("alice/slow.bin"), &data).expect("write");
    let vsftpd = PeerServer::vsftpd(false);
    std::fs::write(vsftpd.files().join("slow.bin"), &data).expect("write");
    vsftpd.hand_over();
    let ferry_url = format!(
        "ftp://alice:{ALICE_PASSWORD}@127.0.0.1:{}/slow.bin",
        server.port()
    );
    let vsftpd_url = format!("{}/slow.bin", vsftpd.base("ftp"));
    for (url, extra) in [(ferry_url, None), (vsftpd_url, Some("2M"))] {
        let work = tempfile::tempdir().expect("tempdir");
        let mut cmd = Command::new(ferry_bin());
        cmd.args(["get", "--keepalive", "300ms", "--verify", &url])
            .env("FERRY_LOG", "ferry_client::wire=debug")
            .current_dir(work.path());
        if let Some(rate) = extra {
            cmd.args(["--limit-rate", rate]);
        }
        let out = run(&mut cmd, MINUTE);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{url}: {stderr}");
        assert!(stderr.matches("> NOOP").count() >= 2, "{url}: {stderr}");
        assert_eq!(
            std::fs::read(work.path().join("slow.bin")).expect("got"),
            data
        );
    }
}

#[test]
fn a_silent_server_times_out() {
    // Accepts, then says nothing: no greeting ever comes.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let held = listener.accept();
        let _ = done_rx.recv_timeout(MINUTE);
        drop(held);
    });
    let work = tempfile::tempdir().expect("tempdir");
    let started = Instant::now();
    let out = client(
        work.path(),
        &[
            "ls",
            "--connect-timeout",
            "1s",
            &format!("ftp://127.0.0.1:{port}/"),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("timed out after 1s waiting for a reply"),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    let _ = done_tx.send(());
    holder.join().expect("holder");
}

#[test]
fn password_prompt_and_progress_bars_on_a_terminal() {
    let server = FerryServer::start();
    let data = random_bytes(1_000_000, 15);
    std::fs::write(server.files().join("alice/bar.bin"), &data).expect("write");
    let work = tempfile::tempdir().expect("tempdir");
    let name = format!("ferry-get-{}", std::process::id());
    let url = format!("ftp://127.0.0.1:{}/bar.bin", server.port());
    let command = format!(
        "{} get --no-netrc --user alice --limit-rate 250K {url}; echo exit=$?; sleep 60",
        ferry_bin()
    );
    let tmux = Tmux::start(name, work.path(), &command, 20);
    tmux.wait_for("Password for alice@127.0.0.1:");
    tmux.keys(&[ALICE_PASSWORD, "Enter"]);
    let screen = tmux.wait_for("eta");
    assert!(
        !screen.contains(ALICE_PASSWORD),
        "the password is not echoed:\n{screen}"
    );
    assert!(screen.contains("bar.bin"), "{screen}");
    tmux.wait_for("exit=0");
    assert_eq!(
        std::fs::read(work.path().join("bar.bin")).expect("got"),
        data
    );
}
