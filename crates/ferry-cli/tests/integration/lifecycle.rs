//! Starting, configuring, limiting and stopping the server.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{
    ALICE_PASSWORD, FerryServer, RawControl, curl, ferry_bin, free_port, random_bytes, run,
    standard_config,
};

fn code(reply: &str) -> &str {
    &reply[..3]
}

#[test]
fn serve_on_embedded_defaults() {
    let dir = tempfile::tempdir().expect("tmp");
    // The defaults, except the port: tests never take a fixed one.
    let mut child = Command::new(ferry_bin())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve");
    let mut stderr = child.stderr.take().expect("stderr");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    while !text.contains("anonymous access.") && Instant::now() < deadline {
        let n = stderr.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(text.contains("serving FTP on 127.0.0.1:"), "{text}");
    assert!(
        text.contains("ferry user add alice"),
        "must say how to add a user: {text}"
    );
    assert!(
        dir.path().join("ferry-data/accounts.db").is_file(),
        "accounts live in ./ferry-data/accounts.db"
    );
    assert!(
        dir.path().join("ferry-data/files").is_dir(),
        "files go under ./ferry-data"
    );
}

#[test]
fn check_config_names_key_and_line() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("ferry.toml");
    std::fs::write(
        &path,
        "[server]\nbanner = \"hi\"\nidle_timeout = \"soon\"\n",
    )
    .expect("write");
    let out = crate::support::ferry_in(dir.path(), &["check-config", "--config", "ferry.toml"], "");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.starts_with("error: ") && err.contains("ferry.toml:3: server.idle_timeout:"),
        "{err}"
    );

    std::fs::write(&path, standard_config("")).expect("write");
    let out = crate::support::ferry_in(dir.path(), &["check-config", "--config", "ferry.toml"], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK (2 users, 1 group in the file"));
}

#[test]
fn plain_text_passwords_are_refused_at_start() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(
        dir.path().join("ferry.toml"),
        "[server]\nlisten = [\"127.0.0.1:0\"]\n\n[[users]]\nname = \"eve\"\npassword_hash = \"hunter2\"\n",
    )
    .expect("write");
    let out = run(
        Command::new(ferry_bin())
            .arg("serve")
            .current_dir(dir.path()),
        Duration::from_secs(20),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ferry.toml:6: users[0].password_hash:") && err.contains("plain-text"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "the password must not be echoed");
}

#[test]
fn hash_password_makes_argon2id() {
    let h = crate::support::hash("pw");
    assert!(h.starts_with("$argon2id$v=19$"), "{h}");
    let out = run(
        Command::new(ferry_bin()).arg("hash-password"),
        Duration::from_secs(20),
    );
    assert!(!out.status.success(), "an empty password is refused");
}

#[test]
fn connection_caps_answer_421() {
    let server = FerryServer::start_with(&standard_config("max_connections_per_ip = 2"));
    let a = RawControl::connect(&server);
    let b = RawControl::connect(&server);
    let mut third = TcpStream::connect(server.addr).expect("connect");
    third
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut reply = String::new();
    third.read_to_string(&mut reply).expect("read until close");
    assert!(reply.starts_with("421"), "{reply}");
    drop(a);
    drop(b);
    // The places are freed when sessions end.
    std::thread::sleep(Duration::from_millis(200));
    let _again = RawControl::login(&server, "alice", ALICE_PASSWORD);
}

#[test]
fn idle_login_and_data_timeouts() {
    let server = FerryServer::start_with(&standard_config(
        "idle_timeout = \"1s\"\nlogin_timeout = \"2s\"\ndata_timeout = \"1s\"",
    ));
    // Logged in and silent: 421 after the idle timeout, then closed.
    let mut c = RawControl::login(&server, "alice", ALICE_PASSWORD);
    let started = Instant::now();
    let r = c.reply();
    assert!(r.starts_with("421") && r.contains("Idle"), "{r}");
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert!(c.is_closed());

    // Never logging in: closed at the login deadline even while chatting.
    let mut c = RawControl::connect(&server);
    let started = Instant::now();
    let r = loop {
        let r = c.cmd("NOOP");
        if !r.starts_with("200") {
            break r;
        }
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no login deadline"
        );
    };
    assert!(r.starts_with("421") && r.contains("Login"), "{r}");

    // PASV and then never connecting: 425 after the data timeout, with no 150
    // before it (150 follows the data connection); the session stays usable.
    let mut c = RawControl::login(&server, "alice", ALICE_PASSWORD);
    assert_eq!(code(&c.cmd("PASV")), "227");
    std::fs::write(server.files().join("alice/f"), b"x").expect("f");
    let started = Instant::now();
    let r = c.cmd("RETR f");
    assert_eq!(code(&r), "425", "{r}");
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(code(&c.cmd("NOOP")), "200");

    // A download the client stops reading (sendfile into a full socket, from
    // a blocking loop on a thread of its own, as the file is long).
    a_stalled_download_ends_with_426(&server, &mut c);

    // An upload the client stops sending without closing (the blocking
    // receive loop): the same, and the bytes that came are kept.
    let mut data = c.pasv_data();
    assert_eq!(code(&c.cmd("STOR stalled")), "150");
    data.write_all(b"four").expect("send");
    let r = c.reply();
    assert!(r.starts_with("426") && r.contains("no progress"), "{r}");
    drop(data);
    assert_eq!(code(&c.cmd("NOOP")), "200");
    let kept = std::fs::read(server.files().join("alice/stalled")).expect("kept");
    assert_eq!(kept, b"four");
}

/// The same stalled download on the async path (no place for a blocking
/// loop): 426 once nothing has moved for the data timeout, and the session
/// goes on.
#[test]
fn a_stalled_download_on_the_async_path_ends_with_426() {
    let server = FerryServer::start_with(&standard_config(
        "data_timeout = \"1s\"\nmax_blocking_transfers = 0",
    ));
    let mut c = RawControl::login(&server, "alice", ALICE_PASSWORD);
    assert_eq!(code(&c.cmd("TYPE I")), "200");
    a_stalled_download_ends_with_426(&server, &mut c);
}

/// A 64 MiB download the client never reads: 426 once nothing has moved for
/// the data timeout, and the session goes on.
fn a_stalled_download_ends_with_426(server: &FerryServer, c: &mut RawControl) {
    std::fs::write(server.files().join("alice/big"), vec![7u8; 64 << 20]).expect("big");
    let data = c.pasv_data();
    assert_eq!(code(&c.cmd("RETR big")), "150");
    let r = c.reply();
    assert!(r.starts_with("426") && r.contains("no progress"), "{r}");
    drop(data);
    assert_eq!(code(&c.cmd("NOOP")), "200");
}

#[test]
fn passive_port_refuses_strangers() {
    let server = FerryServer::start();
    std::fs::write(server.files().join("alice/f.bin"), b"the real payload").expect("f");
    let mut c = RawControl::login(&server, "alice", ALICE_PASSWORD);
    let port = c.epsv_port();
    let target = SocketAddr::from(([127, 0, 0, 1], port));
    // A stranger (another address) connects first and gets nothing.
    let mut stranger = crate::support::tcp_from([127, 0, 0, 2], target).expect("stranger connects");
    stranger
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    c.send_bytes(b"RETR f.bin\r\n");
    let mut got = Vec::new();
    let _ = stranger.read_to_end(&mut got);
    assert!(got.is_empty(), "a stranger received data");
    // The real client still gets its transfer; 150 follows its connection.
    let mut data = TcpStream::connect(target).expect("client connects");
    let mut body = Vec::new();
    data.read_to_end(&mut body).expect("read");
    assert_eq!(body, b"the real payload");
    assert_eq!(code(&c.reply()), "150");
    assert_eq!(code(&c.reply()), "226");

    // Both already connected when RETR comes (the connections waiting are
    // taken without waiting): the stranger's is passed over, not served.
    let target = SocketAddr::from(([127, 0, 0, 1], c.epsv_port()));
    let mut stranger = crate::support::tcp_from([127, 0, 0, 2], target).expect("stranger connects");
    stranger
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut data = TcpStream::connect(target).expect("client connects");
    std::thread::sleep(Duration::from_millis(50));
    c.send_bytes(b"RETR f.bin\r\n");
    let mut body = Vec::new();
    data.read_to_end(&mut body).expect("read");
    assert_eq!(body, b"the real payload");
    let mut got = Vec::new();
    let _ = stranger.read_to_end(&mut got);
    assert!(got.is_empty(), "a stranger received data");
    assert_eq!(code(&c.reply()), "150");
    assert_eq!(code(&c.reply()), "226");
}

/// The server closes what a transfer used (passive listener, data connection,
/// file) only after the final reply, so that the client does not wait for
/// those calls; but the end of the data still comes before the 226, and
/// nothing is left open afterwards.
#[test]
fn a_transfer_has_ended_when_its_226_arrives_and_leaves_nothing_open() {
    let server = FerryServer::start();
    let body = random_bytes(4096, 7);
    std::fs::write(server.files().join("alice/small.bin"), &body).expect("file");
    let mut c = RawControl::login(&server, "alice", ALICE_PASSWORD);
    let open_descriptors = || {
        std::fs::read_dir(format!("/proc/{}/fd", server.pid()))
            .expect("server's descriptors")
            .count()
    };
    // One transfer first, so that whatever the server opens once is open.
    let mut data = c.pasv_data();
    assert_eq!(code(&c.cmd("RETR small.bin")), "150");
    std::io::copy(&mut data, &mut std::io::sink()).expect("read");
    assert_eq!(code(&c.reply()), "226");
    drop(data);
    assert_eq!(code(&c.cmd("NOOP")), "200");
    let before = open_descriptors();

    // With the 226 read, the whole data and its end are already here:
    // reading does not wait.
    let read_without_waiting = |data: &mut TcpStream| {
        data.set_nonblocking(true).expect("nonblocking");
        let mut got = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match data.read(&mut buf) {
                Ok(0) => return got,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => panic!("the data's end was not in before the 226: {e}"),
            }
        }
    };
    for _ in 0..20 {
        let mut data = c.pasv_data();
        assert_eq!(code(&c.cmd("RETR small.bin")), "150");
        assert_eq!(code(&c.reply()), "226");
        assert_eq!(read_without_waiting(&mut data), body);
        // A listing too.
        let mut data = c.pasv_data();
        assert_eq!(code(&c.cmd("NLST")), "150");
        assert_eq!(code(&c.reply()), "226");
        let names = String::from_utf8(read_without_waiting(&mut data)).expect("names");
        assert!(names.contains("small.bin"), "NLST: {names:?}");
    }
    // The session closes them before it reads the next command: once NOOP is
    // answered, every listener, data connection and file is closed again.
    assert_eq!(code(&c.cmd("NOOP")), "200");
    assert_eq!(
        open_descriptors(),
        before,
        "descriptors left open by 20 downloads and 20 listings"
    );
}

#[test]
fn graceful_shutdown_lets_transfers_finish() {
    let mut server = FerryServer::start_with(&standard_config("shutdown_grace = \"30s\""));
    let body = random_bytes(40_000_000, 11);
    std::fs::write(server.files().join("alice/big.bin"), &body).expect("big");
    let mut idle = RawControl::login(&server, "alice", ALICE_PASSWORD);
    let mut c = RawControl::login(&server, "alice", ALICE_PASSWORD);
    let mut data = c.pasv_data();
    assert_eq!(code(&c.cmd("RETR big.bin")), "150");
    let mut first = vec![0u8; 1000];
    data.read_exact(&mut first).expect("first bytes");
    // Stop the server while the download is in flight, and read slowly meanwhile.
    server.signal("TERM");
    // The idle session is told and closed.
    let r = idle.reply();
    assert!(r.starts_with("421"), "{r}");
    // New connections are no longer accepted.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        TcpStream::connect(server.addr).is_err(),
        "still accepting after SIGTERM"
    );
    // The transfer in flight completes, whole.
    let mut rest = Vec::new();
    data.read_to_end(&mut rest).expect("rest");
    first.extend_from_slice(&rest);
    assert!(first == body, "download cut by the shutdown");
    assert_eq!(code(&c.reply()), "226");
    let status = server.terminate_wait();
    assert!(status.success(), "exit status {status}");
}

#[test]
fn listing_100k_entries_streams() {
    let server = FerryServer::start();
    let dir = server.files().join("alice/many");
    std::fs::create_dir(&dir).expect("mkdir");
    for i in 0..100_000 {
        std::fs::File::create(dir.join(format!("entry-with-a-longish-name-{i:06}.dat")))
            .expect("create");
    }
    let mut c = RawControl::login(&server, "alice", ALICE_PASSWORD);
    // Warm up: one small listing, so that buffers and threads exist already.
    let mut data = c.pasv_data();
    c.cmd("LIST /");
    std::io::copy(&mut data, &mut std::io::sink()).expect("drain");
    c.reply();
    let before = server.memory_kib("VmHWM");
    for cmd in ["LIST many", "MLSD many", "NLST many"] {
        let text = String::from_utf8(c.receive(cmd)).expect("utf-8");
        assert_eq!(text.lines().count(), 100_000, "{cmd}");
        assert!(text.len() > 3_000_000, "{cmd} is {} bytes", text.len());
    }
    let grown_kib = server.memory_kib("VmHWM").saturating_sub(before);
    // A listing held in memory would be ~5-9 MB per command; streaming keeps the
    // peak to a few batches, and LIST's and NLST's first 10,000 entries
    // (`server.listing_sort_limit`, gathered to be sorted: ~1.5 MiB).
    assert!(
        grown_kib < 4096,
        "peak memory grew by {grown_kib} KiB while listing"
    );
}

/// Names created in an order neither sorted nor reversed, so that no file
/// system lists them sorted by itself: not one that keeps the order of
/// creation, nor tmpfs, which lists the newest first, nor one that lists
/// by a hash of the name (the test checks).
const SHUFFLED: [&str; 12] = [
    "m.txt", "B.txt", "z", "a b.txt", "é.txt", "a", "Zeta", "ab", ".dot", "0", "a.txt", "mm",
];

/// The names of `ls`-style lines, or of MLSD lines (after the facts).
fn listed_names(text: &str, mlsd: bool) -> Vec<String> {
    text.lines()
        .map(|l| {
            if mlsd {
                l.split_once(' ').map_or("", |(_, n)| n).to_owned()
            } else {
                // `ls -l`: the name follows the 8th field (the time or year).
                let mut rest = l;
                for _ in 0..8 {
                    rest = rest.trim_start_matches(' ');
                    rest = rest.split_once(' ').map_or("", |(_, r)| r);
                }
                rest.trim_start_matches(' ').to_owned()
            }
        })
        .collect()
}

/// LIST, NLST and STAT list a directory in name order (byte order, as
/// vsftpd and `LC_ALL=C ls`), not in the order the disk keeps it; over
/// `server.listing_sort_limit` entries, in the disk's order.
#[test]
fn listings_come_in_name_order() {
    let fill = |dir: &std::path::Path| {
        std::fs::create_dir(dir).expect("mkdir");
        for name in SHUFFLED {
            std::fs::write(dir.join(name), name).expect("create");
        }
        let on_disk: Vec<String> = std::fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
            .collect();
        let mut sorted = on_disk.clone();
        sorted.sort();
        // Otherwise this test could not tell sorting from the disk's order.
        assert_ne!(on_disk, sorted, "the file system lists in name order");
        (on_disk, sorted)
    };
    let server = FerryServer::start();
    let (_, sorted) = fill(&server.files().join("alice/mixed"));
    let mut c = RawControl::login(&server, "alice", ALICE_PASSWORD);
    let nlst = String::from_utf8(c.receive("NLST mixed")).expect("utf-8");
    assert_eq!(nlst.lines().collect::<Vec<_>>(), sorted, "NLST");
    let list = String::from_utf8(c.receive("LIST mixed")).expect("utf-8");
    assert_eq!(listed_names(&list, false), sorted, "LIST:\n{list}");
    // MLSD is for programs, which sort (RFC 3659 leaves the order open): it
    // comes as the disk keeps it, and whole.
    let mlsd = String::from_utf8(c.receive("MLSD mixed")).expect("utf-8");
    let mut by_mlsd = listed_names(&mlsd, true);
    by_mlsd.sort();
    assert_eq!(by_mlsd, sorted, "MLSD:\n{mlsd}");
    let stat = c.cmd("STAT mixed");
    let inner: String = stat
        .lines()
        .filter(|l| l.starts_with(' '))
        .map(|l| format!("{}\n", &l[1..]))
        .collect();
    assert_eq!(listed_names(&inner, false), sorted, "STAT:\n{stat}");
    // What curl shows for a directory URL.
    let url = format!("ftp://127.0.0.1:{}/mixed/", server.port());
    let by_curl = run(
        &mut curl(&["--user", "alice:alice-pw", "--list-only"], url),
        Duration::from_secs(60),
    );
    assert!(by_curl.status.success(), "curl: {by_curl:?}");
    let by_curl = String::from_utf8_lossy(&by_curl.stdout).into_owned();
    assert_eq!(by_curl.lines().collect::<Vec<_>>(), sorted, "curl");
    drop(c);
    drop(server);

    // A directory over the limit comes in the disk's order, whole.
    let server = FerryServer::start_with(&standard_config("listing_sort_limit = 5"));
    let (on_disk, _) = fill(&server.files().join("alice/mixed"));
    let mut c = RawControl::login(&server, "alice", ALICE_PASSWORD);
    let nlst = String::from_utf8(c.receive("NLST mixed")).expect("utf-8");
    assert_eq!(
        nlst.lines().collect::<Vec<_>>(),
        on_disk,
        "NLST over the limit"
    );
}

#[test]
fn json_logs() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut child = Command::new(ferry_bin())
        .args(["--log-format", "json", "serve", "--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve");
    let mut stderr = child.stderr.take().expect("stderr");
    let addr: SocketAddr = {
        let mut text = String::new();
        let mut buf = [0u8; 1024];
        while !text.contains(", files under") {
            let n = stderr.read(&mut buf).expect("read");
            assert!(n > 0, "exited: {text}");
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        text.split("serving FTP on ")
            .nth(1)
            .and_then(|s| s.split(',').next())
            .expect("addr")
            .parse()
            .expect("addr")
    };
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(b"QUIT\r\n").expect("quit");
    let mut sink = String::new();
    let _ = s.read_to_string(&mut sink);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let mut rest = String::new();
    let _ = stderr.read_to_string(&mut rest);
    let _ = child.wait();
    let json_lines: Vec<&str> = rest.lines().filter(|l| l.starts_with('{')).collect();
    assert!(!json_lines.is_empty(), "{rest}");
    assert!(
        json_lines
            .iter()
            .all(|l| l.ends_with('}') && l.contains("\"level\":")),
        "{rest}"
    );
}

#[test]
fn passive_ports_and_public_address() {
    // A range of ports outside the ephemeral range, its first one free.
    let first = free_port();
    let last = first + 20;
    let server = FerryServer::start_with(&standard_config(&format!(
        "passive_ports = \"{first}-{last}\"\npublic_address = \"203.0.113.7\""
    )));
    let mut c = RawControl::login(&server, "alice", ALICE_PASSWORD);
    for _ in 0..5 {
        let r = c.cmd("PASV");
        assert!(
            r.starts_with("227 Entering Passive Mode (203,0,113,7,"),
            "{r}"
        );
        let nums: Vec<u16> = r
            .split('(')
            .nth(1)
            .and_then(|s| s.split(')').next())
            .expect("numbers")
            .split(',')
            .map(|n| n.parse().expect("number"))
            .collect();
        let port = nums[4] * 256 + nums[5];
        assert!(
            (first..=last).contains(&port),
            "{port} outside {first}-{last}"
        );
        let port = c.epsv_port();
        assert!(
            (first..=last).contains(&port),
            "EPSV {port} outside {first}-{last}"
        );
    }
}

/// A transfer that takes a while does not hold its passive port: with a
/// range of one port, a second session's PASV gets that port and its
/// transfer runs while the first one's is still going.
#[test]
fn a_one_port_passive_range_serves_two_transfers_at_once() {
    let port = free_port();
    let server = FerryServer::start_with(&standard_config(&format!(
        "passive_ports = \"{port}-{port}\""
    )));
    let body = random_bytes(32 << 20, 3);
    std::fs::write(server.files().join("alice/big.bin"), &body).expect("big");
    let mut first = RawControl::login(&server, "alice", ALICE_PASSWORD);
    let mut data_first = first.pasv_data();
    assert_eq!(code(&first.cmd("RETR big.bin")), "150");
    // The first transfer is under way and stalls on its full socket buffer.
    let mut head = vec![0u8; 1 << 20];
    data_first
        .read_exact(&mut head)
        .expect("first's data begins");

    let mut second = RawControl::login(&server, "alice", ALICE_PASSWORD);
    assert_eq!(
        second.epsv_port(),
        port,
        "the one port, for the second session"
    );
    let mut data_second =
        TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).expect("second connects");
    assert_eq!(code(&second.cmd("RETR big.bin")), "150");
    let mut got = Vec::new();
    data_second.read_to_end(&mut got).expect("second's data");
    assert!(got == body, "the second transfer is whole");
    assert_eq!(code(&second.reply()), "226");

    let mut rest = Vec::new();
    data_first
        .read_to_end(&mut rest)
        .expect("first's data ends");
    head.extend_from_slice(&rest);
    assert!(head == body, "the first transfer is whole");
    assert_eq!(code(&first.reply()), "226");
}

#[test]
fn slow_drip_clients_are_closed_by_the_idle_timeout() {
    let server = FerryServer::start_with(&standard_config("idle_timeout = \"1s\""));
    let mut c = RawControl::login(&server, "alice", ALICE_PASSWORD);
    // One byte every 300 ms, never a whole line: the deadline is per line.
    let started = Instant::now();
    let mut closed_after = None;
    for _ in 0..20 {
        c.try_send_bytes(b"N");
        std::thread::sleep(Duration::from_millis(300));
        if started.elapsed() > Duration::from_millis(1500) {
            closed_after = Some(started.elapsed());
            break;
        }
    }
    let r = c.reply();
    assert!(r.starts_with("421") && r.contains("Idle"), "{r}");
    assert!(closed_after.is_some());
    assert!(c.is_closed());
}

/// With every place for a blocking transfer loop taken
/// (`max_blocking_transfers`), transfers that would run as one take the async
/// path instead: a plain upload, a long plain download, and a PROT P download
/// and upload, all whole. Once the place is given back, blocking transfers
/// run again.
#[test]
fn transfers_beyond_the_blocking_cap_take_the_async_path() {
    let server = FerryServer::start_with(&standard_config("max_blocking_transfers = 1"));
    let url = |name: &str| {
        format!(
            "ftp://alice:{ALICE_PASSWORD}@127.0.0.1:{}/{name}",
            server.port()
        )
    };
    let work = tempfile::tempdir().expect("tmp");
    let body = random_bytes(3_000_000, 41);
    let src = work.path().join("src.bin");
    std::fs::write(&src, &body).expect("src");
    let src = src.to_str().expect("path");
    let minute = Duration::from_secs(60);

    // A plain upload takes the one place and holds it, half sent.
    let held = random_bytes(2_000_000, 42);
    let mut c = RawControl::login(&server, "alice", ALICE_PASSWORD);
    assert_eq!(code(&c.cmd("TYPE I")), "200");
    let mut data = c.pasv_data();
    assert_eq!(code(&c.cmd("STOR held.bin")), "150");
    data.write_all(&held[..1_000_000]).expect("first half");

    for (extra, name) in [
        (&[][..], "plain.bin"),
        (&["--ssl-reqd", "-k"][..], "tls.bin"),
    ] {
        let out = run(
            &mut curl(&[extra, &["-T", src]].concat(), url(name)),
            minute,
        );
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            std::fs::read(server.files().join("alice").join(name)).expect("stored") == body,
            "{name} differs"
        );
        let out = run(&mut curl(&["--ssl-reqd", "-k"], url(name)), minute);
        assert!(
            out.status.success() && out.stdout == body,
            "PROT P download of {name}"
        );
    }
    // Long enough for a thread of its own, had a place been free.
    let long = random_bytes(6_000_000, 43);
    std::fs::write(server.files().join("alice/long.bin"), &long).expect("long");
    let out = run(&mut curl(&[], url("long.bin")), minute);
    assert!(
        out.status.success() && out.stdout == long,
        "plain download of long.bin"
    );

    // The held upload finishes whole and gives its place back.
    data.write_all(&held[1_000_000..]).expect("second half");
    drop(data);
    assert_eq!(code(&c.reply()), "226");
    assert!(std::fs::read(server.files().join("alice/held.bin")).expect("held") == held);
    let out = run(&mut curl(&["-T", src], url("again.bin")), minute);
    assert!(out.status.success());
    assert!(std::fs::read(server.files().join("alice/again.bin")).expect("again") == body);
    let out = run(&mut curl(&[], url("long.bin")), minute);
    assert!(out.status.success() && out.stdout == long, "long.bin again");
}

/// The congestion control of the server's end of a TCP connection, as `ss`
/// shows it, found by `filter` (an `ss` filter such as `sport = :PORT`).
fn server_congestion_control(filter: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = run(
            Command::new("ss").args(["-tinH", "state", "established", filter]),
            Duration::from_secs(10),
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        // The socket's line, then its details: the algorithm is the first
        // word of those without a colon (`cubic wscale:7,7 rto:...`).
        let found = text
            .lines()
            .nth(1)
            .and_then(|l| l.split_whitespace().find(|w| !w.contains(':')))
            .map(str::to_owned);
        if let Some(name) = found {
            return name;
        }
        assert!(
            Instant::now() < deadline,
            "no connection `{filter}`: {text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A data connection whose two ends are on this host takes
/// `loopback_congestion_control`, passive (from its listener) and active
/// (set before it connects); `"system"`, or an algorithm the kernel does not
/// have (a warning at start), leaves the system's.
#[test]
fn loopback_data_connections_take_the_configured_congestion_control() {
    let system = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control")
        .expect("the system's congestion control")
        .trim()
        .to_owned();
    // Reno is built into every kernel; pick CUBIC where reno is the system's,
    // so that the setting is seen to change something.
    let wanted = if system == "reno" { "cubic" } else { "reno" };
    let cases = [
        (wanted.to_owned(), wanted.to_owned()),
        ("system".to_owned(), system.clone()),
        ("no_such_cc".to_owned(), system.clone()),
    ];
    for (setting, expected) in cases {
        let server = FerryServer::start_with(&standard_config(&format!(
            "loopback_congestion_control = \"{setting}\""
        )));
        let mut c = RawControl::login(&server, "alice", ALICE_PASSWORD);

        // Passive: the server's end is the one on the EPSV port.
        let port = c.epsv_port();
        let data = TcpStream::connect(("127.0.0.1", port)).expect("data connect");
        assert_eq!(
            server_congestion_control(&format!("sport = :{port}")),
            expected,
            "passive, setting {setting}"
        );
        assert_eq!(code(&c.cmd("LIST")), "150");
        drop(data);
        let r = c.reply();
        assert!(r.starts_with("226"), "{r}");

        // Active: the server's end is the one connecting to our port; an
        // upload holds it open while `ss` looks.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let r = c.cmd(&format!("EPRT |1|127.0.0.1|{port}|"));
        assert_eq!(code(&r), "200", "{r}");
        c.send_bytes(b"STOR cc.txt\r\n");
        let (mut data, _) = listener.accept().expect("the server connects");
        assert_eq!(
            server_congestion_control(&format!("dport = :{port}")),
            expected,
            "active, setting {setting}"
        );
        data.write_all(b"congestion").expect("upload");
        drop(data);
        let r = c.reply();
        assert!(r.starts_with("150"), "{r}");
        let r = c.reply();
        assert!(r.starts_with("226"), "{r}");

        if setting == "no_such_cc" {
            let log = server.log();
            assert!(
                log.contains("loopback_congestion_control") && log.contains("no_such_cc"),
                "no warning at start: {log}"
            );
        }
    }
}
