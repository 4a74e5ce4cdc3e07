//! Input no polite client sends. After each, the server still serves, and nothing
//! stored is lost.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::{ALICE_PASSWORD, FerryServer, RawControl, make_fifo, random_bytes};

fn alice(server: &FerryServer) -> RawControl {
    RawControl::login(server, "alice", ALICE_PASSWORD)
}

fn code(reply: &str) -> &str {
    &reply[..3]
}

/// Closes a socket with a TCP reset, as a crashed client or a cut cable would.
fn reset(stream: TcpStream) {
    let _ = rustix::net::sockopt::set_socket_linger(&stream, Some(Duration::ZERO));
    drop(stream);
}

#[test]
fn overlong_lines_garbage_and_unknown_commands() {
    let server = FerryServer::start();
    let mut c = alice(&server);
    // Over 4 KiB: answered 500 and skipped whole; the next command works.
    let long = format!("RETR {}\r\n", "a".repeat(10_000));
    c.send_bytes(long.as_bytes());
    let r = c.reply();
    assert_eq!(code(&r), "500", "{r}");
    assert!(r.contains("too long"), "{r}");
    assert_eq!(code(&c.cmd("NOOP")), "200");
    // 100 KiB with no line end at all, then a line end.
    c.send_bytes(&vec![b'x'; 100_000]);
    c.send_bytes(b"\r\n");
    assert_eq!(code(&c.reply()), "500");
    assert_eq!(code(&c.cmd("FOOBAR")), "500");
    assert_eq!(code(&c.cmd("")), "500");
    c.send_bytes(b"\xff\xfe\x80junk\r\n");
    assert_eq!(code(&c.reply()), "500");
    c.send_bytes(b"RETR caf\xe9.txt\r\n");
    let r = c.reply();
    assert_eq!(code(&r), "501", "non-UTF-8 path: {r}");
    c.send_bytes(b"RETR a\0b\r\n");
    assert_eq!(code(&c.reply()), "501", "NUL in a path");
    c.send_bytes(b"MKD x\0y\r\n");
    assert_eq!(code(&c.reply()), "501");
    assert!(!server.files().join("alice/x").exists());
    assert_eq!(code(&c.cmd("PWD extra")), "501");
    assert_eq!(code(&c.cmd("REST abc")), "501");
    assert_eq!(code(&c.cmd("TYPE Q")), "501");
    assert_eq!(code(&c.cmd("RNTO nowhere")), "503");
    // Telnet IP/DM in front of a command is ignored.
    c.send_bytes(b"\xff\xf4\xff\xf2NOOP\r\n");
    assert_eq!(code(&c.reply()), "200");
    assert_eq!(code(&c.cmd("QUIT")), "221");
}

#[test]
fn commands_before_login() {
    let server = FerryServer::start();
    let mut c = RawControl::connect(&server);
    for cmd in [
        "RETR x",
        "LIST",
        "STOR x",
        "CWD /",
        "PWD",
        "DELE x",
        "PASV",
        "PORT 127,0,0,1,200,1",
        "SIZE x",
        "MKD d",
    ] {
        assert_eq!(code(&c.cmd(cmd)), "530", "{cmd}");
    }
    assert_eq!(code(&c.cmd("PASS x")), "503");
    assert_eq!(code(&c.cmd("FEAT")), "211");
    assert_eq!(code(&c.cmd("SYST")), "215");
    assert!(!server.files().join("alice/d").exists());
}

#[test]
fn malformed_and_hostile_data_addresses() {
    let server = FerryServer::start();
    let mut c = alice(&server);
    for bad in [
        "PORT 1,2,3",
        "PORT 127,0,0,1,300,1",
        "PORT a,b,c,d,e,f",
        "PORT",
        "EPRT garbage",
        "EPRT |1|127.0.0.1|99999|",
        "EPRT |2|127.0.0.1|5000|",
        "EPSV x",
    ] {
        assert_eq!(code(&c.cmd(bad)), "501", "{bad}");
    }
    assert_eq!(code(&c.cmd("EPRT |3|1.2.3.4|5000|")), "522");
    // Bounce: a data connection to someone else's address, or to a privileged port.
    assert_eq!(code(&c.cmd("PORT 10,0,0,1,200,1")), "504");
    assert_eq!(code(&c.cmd("EPRT |1|192.0.2.1|5000|")), "504");
    assert_eq!(code(&c.cmd("PORT 127,0,0,1,0,21")), "504");
    // Nothing was set up: a transfer now has no data connection.
    assert_eq!(code(&c.cmd("LIST")), "425");
    assert_eq!(code(&c.cmd("NOOP")), "200");
}

#[test]
fn paths_cannot_escape_the_home() {
    let server = FerryServer::start();
    let files = server.files();
    std::fs::write(files.join("secret.txt"), b"root secret").expect("secret");
    std::fs::write(files.join("bob/bob.txt"), b"bob's").expect("bob");
    let home = files.join("alice");
    std::fs::write(home.join("mine.txt"), b"mine").expect("mine");
    std::os::unix::fs::symlink("/etc/passwd", home.join("abs-link")).expect("link");
    std::os::unix::fs::symlink("../bob", home.join("rel-dir")).expect("link");
    std::os::unix::fs::symlink("../secret.txt", home.join("rel-file")).expect("link");
    std::os::unix::fs::symlink("/", home.join("root-dir")).expect("link");
    std::os::unix::fs::symlink("mine.txt", home.join("ok-link")).expect("link");

    let mut c = alice(&server);
    let retr = |c: &mut RawControl, path: &str| {
        let _ = c.pasv_data();
        c.cmd(&format!("RETR {path}"))
    };
    for path in [
        "../secret.txt",
        "../../secret.txt",
        "/../secret.txt",
        "/../../../../../../etc/passwd",
        "..\\secret.txt",
        "abs-link",
        "rel-file",
        "rel-dir/bob.txt",
        "root-dir/etc/passwd",
        "/rel-dir/../secret.txt",
    ] {
        let r = retr(&mut c, path);
        assert_eq!(code(&r), "550", "RETR {path}: {r}");
    }
    for cmd in [
        "CWD rel-dir",
        "CWD root-dir",
        "CWD ../bob",
        "SIZE rel-file",
        "MDTM abs-link",
        "MKD rel-dir/new",
        "DELE rel-dir/bob.txt",
        "RNFR rel-dir/bob.txt",
        "SITE CHMOD 777 rel-file",
        "XMD5 rel-file",
        "MLST rel-dir",
    ] {
        let r = c.cmd(cmd);
        assert_eq!(code(&r), "550", "{cmd}: {r}");
    }
    // Uploads through a link leading out are refused, and nothing lands outside.
    let _ = c.pasv_data();
    assert_eq!(code(&c.cmd("STOR rel-dir/planted.txt")), "550");
    let _ = c.pasv_data();
    assert_eq!(code(&c.cmd("APPE rel-file")), "550");
    assert!(!files.join("bob/planted.txt").exists());
    // Listing a link that leads out is refused; listing the home hides such links.
    let _ = c.pasv_data();
    assert_eq!(code(&c.cmd("LIST rel-dir")), "550");
    let mut data = c.pasv_data();
    assert_eq!(code(&c.cmd("NLST")), "150");
    let mut names = String::new();
    data.read_to_string(&mut names).expect("nlst");
    assert_eq!(code(&c.reply()), "226");
    let mut names: Vec<&str> = names.lines().collect();
    names.sort();
    assert_eq!(names, ["mine.txt", "ok-link"]);
    // A link that stays inside works.
    assert_eq!(c.retr("ok-link"), b"mine");
    // Names too long for any file system.
    assert_eq!(code(&c.cmd(&format!("MKD {}", "n".repeat(256)))), "550");
    assert_eq!(code(&c.cmd(&format!("CWD {}", "a/".repeat(2100)))), "500");
    // CWD .. at the top stays at the top.
    assert_eq!(code(&c.cmd("CWD ../../..")), "250");
    assert!(c.cmd("PWD").starts_with("257 \"/\""));
    // Nothing outside was touched.
    assert_eq!(
        std::fs::read(files.join("secret.txt")).expect("secret"),
        b"root secret"
    );
    assert_eq!(
        std::fs::read(files.join("bob/bob.txt")).expect("bob"),
        b"bob's"
    );
}

/// A FIFO, a socket or a device in a home is not a file to send: its open
/// would wait for a writer (on a worker of the server's runtime, for the
/// downloads that open inline), or read without end.
#[test]
fn special_files_are_refused_not_waited_on() {
    let server = FerryServer::start();
    let home = server.files().join("alice");
    make_fifo(&home.join("pipe"));
    let mut c = alice(&server);
    // Binary (sendfile's path, which opens on the async worker) and ASCII
    // (the stream's path, on the blocking pool).
    for kind in ["I", "A"] {
        assert_eq!(code(&c.cmd(&format!("TYPE {kind}"))), "200");
        let _data = c.pasv_data();
        let r = c.cmd("RETR pipe");
        assert_eq!(code(&r), "550", "TYPE {kind} RETR of a FIFO: {r}");
        assert!(r.contains("Not a regular file"), "{r}");
    }
    // A socket is refused too; listings show both for what they are.
    let _socket = std::os::unix::net::UnixListener::bind(home.join("sock")).expect("socket");
    let _data = c.pasv_data();
    let r = c.cmd("RETR sock");
    assert_eq!(code(&r), "550", "RETR of a socket: {r}");
    assert_eq!(code(&c.cmd("TYPE I")), "200");
    let list = String::from_utf8(c.receive("LIST")).expect("utf-8");
    let line = |name: &str| {
        list.lines()
            .find(|l| l.ends_with(&format!(" {name}")))
            .unwrap_or_else(|| panic!("{name} not listed:\n{list}"))
            .to_owned()
    };
    assert!(line("pipe").starts_with("prw-"), "{list}");
    assert!(line("sock").starts_with('s'), "{list}");
    let mlsd = String::from_utf8(c.receive("MLSD")).expect("utf-8");
    for name in ["pipe", "sock"] {
        assert!(
            mlsd.lines()
                .any(|l| l.ends_with(&format!(" {name}")) && l.contains("type=OS.unix=special;")),
            "{mlsd}"
        );
    }
    // The session and the server still serve.
    std::fs::write(home.join("after.txt"), b"still here").expect("write");
    assert_eq!(code(&c.cmd("TYPE I")), "200");
    assert_eq!(c.retr("after.txt"), b"still here");
}

#[test]
fn clients_that_vanish_mid_transfer() {
    let server = FerryServer::start();
    let home = server.files().join("alice");
    let old = random_bytes(500_000, 7);
    std::fs::write(home.join("existing.bin"), &old).expect("existing");
    let sent = random_bytes(1_000_000, 8);

    // Upload of a new file, cut by a reset on both connections: the bytes that
    // arrived are kept (a prefix of what was sent) so the client can resume.
    let mut c = alice(&server);
    let mut data = c.pasv_data();
    assert_eq!(code(&c.cmd("STOR new.bin")), "150");
    data.write_all(&sent).expect("send");
    std::thread::sleep(Duration::from_millis(300));
    reset(data);
    drop(c);

    // Replacing an existing file, cut the same way: the old file is intact.
    let mut c = alice(&server);
    let mut data = c.pasv_data();
    assert_eq!(code(&c.cmd("STOR existing.bin")), "150");
    data.write_all(&sent).expect("send");
    std::thread::sleep(Duration::from_millis(300));
    reset(data);
    let r = c.reply();
    assert_eq!(code(&r), "426", "{r}");
    assert_eq!(
        std::fs::read(home.join("existing.bin")).expect("existing"),
        old
    );

    // A download whose client resets the data connection: 426, and the session goes on.
    std::fs::write(home.join("big.bin"), random_bytes(20_000_000, 9)).expect("big");
    let data = c.pasv_data();
    assert_eq!(code(&c.cmd("RETR big.bin")), "150");
    reset(data);
    let r = c.reply();
    assert_eq!(code(&r), "426", "{r}");
    assert_eq!(code(&c.cmd("NOOP")), "200");

    // Wait for the first upload to settle, then check what it kept.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let kept = loop {
        if let Ok(k) = std::fs::read(home.join("new.bin")) {
            break k;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "partial upload was not kept"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!kept.is_empty() && kept.len() <= sent.len());
    assert_eq!(
        kept,
        sent[..kept.len()],
        "kept bytes must be a prefix of what was sent"
    );
    // No temporary upload files are left behind.
    let leftovers: Vec<_> = std::fs::read_dir(&home)
        .expect("dir")
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".ferry-upload-")
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // And the server serves another client as before.
    let mut other = alice(&server);
    assert_eq!(code(&other.cmd("SIZE existing.bin")), "213");
}
