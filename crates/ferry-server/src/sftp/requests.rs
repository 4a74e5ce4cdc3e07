//! SFTP requests in memory: packets in, packets out, no SSH and no sockets.
//! What no client sends on purpose is sent here: names that are not UTF-8,
//! NUL bytes, `..` above the home, writes out of order and past the end,
//! over-long packets.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use russh_sftp::protocol::{
    Close, FSetStat, FileAttributes, Init, Lstat, MkDir, Open, OpenDir, OpenFlags, Packet, Read,
    ReadDir, RealPath, SetStat, Stat, StatusCode, Write,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::session::{OpenHandles, SftpSession};
use crate::session::Peer;
use tokio_util::sync::CancellationToken;

async fn session(extra: &str) -> (SftpSession, tempfile::TempDir) {
    session_with(extra, OpenHandles::new(CancellationToken::new())).await
}

/// A session whose handles `handles` counts.
async fn session_with(extra: &str, handles: Arc<OpenHandles>) -> (SftpSession, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tmp");
    let opts =
        crate::test_support::options_with_alice(dir.path(), &format!("home = \"/alice\"\n{extra}"));
    let opts = Arc::new(opts);
    let peer = Peer {
        remote: "127.0.0.1:40000".parse().expect("addr"),
        local: "127.0.0.1:2222".parse().expect("addr"),
        id: 1,
    };
    let user = crate::signin::sign_in(
        &opts,
        1,
        peer.remote,
        "alice",
        crate::signin::Credential::Password("pw"),
    )
    .await
    .expect("signed in");
    let mut s = SftpSession::new(opts, peer, Arc::new(user), handles);
    let version = s
        .handle_packet(body(Packet::Init(Init {
            version: 3,
            extensions: Default::default(),
        })))
        .await;
    assert!(matches!(version, Packet::Version(v) if v.version == 3));
    (s, dir)
}

/// A packet as it arrives, without its length.
fn body(p: Packet) -> Bytes {
    let mut b = Bytes::try_from(p).expect("encode");
    let _ = b.split_to(4);
    b
}

fn status_of(p: &Packet) -> (u32, StatusCode, String) {
    match p {
        Packet::Status(s) => (s.id, s.status_code, s.error_message.clone()),
        other => panic!("expected a status, got {other:?}"),
    }
}

async fn open(s: &mut SftpSession, id: u32, name: &str, flags: OpenFlags) -> Packet {
    s.handle_packet(body(Packet::Open(Open {
        id,
        filename: name.into(),
        pflags: flags,
        attrs: FileAttributes::default(),
    })))
    .await
}

fn handle_of(p: &Packet) -> String {
    match p {
        Packet::Handle(h) => h.handle.clone(),
        other => panic!("expected a handle, got {other:?}"),
    }
}

async fn write(s: &mut SftpSession, id: u32, handle: &str, offset: u64, data: &[u8]) -> Packet {
    s.handle_packet(body(Packet::Write(Write {
        id,
        handle: handle.into(),
        offset,
        data: data.to_vec(),
    })))
    .await
}

async fn read(s: &mut SftpSession, id: u32, handle: &str, offset: u64, len: u32) -> Packet {
    s.handle_packet(body(Packet::Read(Read {
        id,
        handle: handle.into(),
        offset,
        len,
    })))
    .await
}

async fn close(s: &mut SftpSession, id: u32, handle: &str) -> Packet {
    s.handle_packet(body(Packet::Close(Close {
        id,
        handle: handle.into(),
    })))
    .await
}

const CREATE: OpenFlags = OpenFlags::WRITE
    .union(OpenFlags::CREATE)
    .union(OpenFlags::TRUNCATE);

/// A size set by name (SETSTAT) or through a handle (FSETSTAT).
async fn set_size(s: &mut SftpSession, id: u32, target: Result<&str, &str>, size: u64) -> Packet {
    let attrs = FileAttributes {
        size: Some(size),
        ..FileAttributes::empty()
    };
    s.handle_packet(body(match target {
        Ok(path) => Packet::SetStat(SetStat {
            id,
            path: path.into(),
            attrs,
        }),
        Err(handle) => Packet::FSetStat(FSetStat {
            id,
            handle: handle.into(),
            attrs,
        }),
    }))
    .await
}

/// Answers `Ok` to the request `reply` answers, or says why not.
fn assert_ok(reply: &Packet) {
    let (id, code, why) = status_of(reply);
    assert_eq!(code, StatusCode::Ok, "request {id}: {why}");
}

#[tokio::test]
async fn writes_land_anywhere_and_reads_anywhere() {
    let (mut s, dir) = session("").await;
    let h = handle_of(&open(&mut s, 2, "/f.bin", CREATE).await);
    assert_ok(&write(&mut s, 3, &h, 0, b"hello ").await);
    // Past the end (a gap of zeros), then back.
    assert_ok(&write(&mut s, 4, &h, 20, b"gap").await);
    assert_ok(&write(&mut s, 5, &h, 6, b"world").await);
    assert_ok(&close(&mut s, 6, &h).await);
    let mut want = b"hello world".to_vec();
    want.resize(20, 0);
    want.extend_from_slice(b"gap");
    assert_eq!(
        std::fs::read(dir.path().join("alice/f.bin")).expect("stored"),
        want
    );
    std::fs::write(dir.path().join("alice/f.bin"), "hello world").expect("reset");
    // Reads at any offset, then the end.
    let h = handle_of(&open(&mut s, 7, "f.bin", OpenFlags::READ).await);
    for (offset, want) in [(6u64, &b"world"[..]), (0, b"hello world"), (3, b"lo world")] {
        let reply = read(&mut s, 8, &h, offset, 4096).await;
        match reply {
            Packet::Data(d) => assert_eq!(d.data, want, "at {offset}"),
            other => panic!("{other:?}"),
        }
    }
    let end = read(&mut s, 9, &h, 11, 10).await;
    assert_eq!(status_of(&end).1, StatusCode::Eof);
    // A handle that was never given.
    assert_eq!(
        status_of(&close(&mut s, 10, "999").await).1,
        StatusCode::Failure
    );
}

/// An existing file opened without truncation is written in place: the
/// bytes not written over stay, appending takes the `append` permission
/// and writing over the old bytes `overwrite`; a size cuts or grows it,
/// by name or through the handle writing it.
#[tokio::test]
async fn writes_into_a_file_keep_the_rest_and_ask_for_overwrite() {
    let (mut s, dir) = session(
        r#"permissions = { "/" = ["list", "download", "upload", "append"], "/rw" = ["list", "download", "upload", "append", "overwrite"] }"#,
    )
    .await;
    let home = dir.path().join("alice");
    std::fs::create_dir_all(home.join("rw")).expect("rw");
    std::fs::write(home.join("log.txt"), "line 1\n").expect("log");
    std::fs::write(home.join("rw/db"), "0123456789").expect("db");
    let stored = |name: &str| std::fs::read(home.join(name)).expect("stored");

    // Appending only: the end is writable, the old bytes are not.
    let h = handle_of(&open(&mut s, 1, "log.txt", OpenFlags::WRITE).await);
    assert_ok(&write(&mut s, 2, &h, 7, b"line 2\n").await);
    let (_, code, why) = status_of(&write(&mut s, 3, &h, 0, b"LINE").await);
    assert_eq!(code, StatusCode::PermissionDenied, "{why}");
    assert_ok(&write(&mut s, 4, &h, 14, b"line 3\n").await);
    assert_ok(&close(&mut s, 5, &h).await);
    assert_eq!(stored("log.txt"), b"line 1\nline 2\nline 3\n");
    let (_, code, _) = status_of(&set_size(&mut s, 6, Ok("log.txt"), 3).await);
    assert_eq!(code, StatusCode::PermissionDenied);
    assert_eq!(
        stored("log.txt").len(),
        21,
        "the refused cut changed nothing"
    );
    // Opened to append, every write lands at the end, whatever its offset.
    let h = handle_of(&open(&mut s, 6, "log.txt", OpenFlags::WRITE | OpenFlags::APPEND).await);
    assert_ok(&write(&mut s, 6, &h, 0, b"line 4\n").await);
    assert_ok(&write(&mut s, 6, &h, 3, b"line 5\n").await);
    assert_ok(&close(&mut s, 6, &h).await);
    assert_eq!(
        stored("log.txt"),
        b"line 1\nline 2\nline 3\nline 4\nline 5\n"
    );

    // With `overwrite`: a write inside keeps what follows it.
    let h = handle_of(&open(&mut s, 7, "rw/db", OpenFlags::WRITE).await);
    assert_ok(&write(&mut s, 8, &h, 2, b"ab").await);
    assert_ok(&write(&mut s, 9, &h, 8, b"xyz").await);
    assert_ok(&write(&mut s, 10, &h, 0, b"!").await);
    // The name, to this channel, is the file as written.
    let size_now = |reply: Packet| match reply {
        Packet::Attrs(a) => a.attrs.size,
        other => panic!("expected attributes, got {other:?}"),
    };
    let stat = s
        .handle_packet(body(Packet::Stat(Stat {
            id: 11,
            path: "rw/db".into(),
        })))
        .await;
    assert_eq!(size_now(stat), Some(11));
    // Cut by name while the handle writes it, then grown through the handle.
    assert_ok(&set_size(&mut s, 12, Ok("rw/db"), 6).await);
    assert_ok(&set_size(&mut s, 13, Err(&h), 8).await);
    assert_ok(&close(&mut s, 14, &h).await);
    assert_eq!(stored("rw/db"), b"!1ab45\0\0");
    // Grown and cut by name, no handle open.
    assert_ok(&set_size(&mut s, 15, Ok("rw/db"), 10).await);
    assert_eq!(stored("rw/db"), b"!1ab45\0\0\0\0");
    assert_ok(&set_size(&mut s, 16, Ok("rw/db"), 2).await);
    assert_eq!(stored("rw/db"), b"!1");
}

/// A write or a size far past the end is counted against the quota as the
/// file grows: refused over it, the file as it was.
#[tokio::test]
async fn a_gap_past_the_quota_is_refused() {
    let (mut s, dir) = session(r#"quota_bytes = "64 KiB""#).await;
    let home = dir.path().join("alice");
    std::fs::write(home.join("f"), "kept").expect("f");
    let (_, code, why) = status_of(&set_size(&mut s, 1, Ok("f"), 1 << 20).await);
    assert_eq!(code, StatusCode::Failure, "{why}");
    assert!(why.contains("quota_bytes"), "{why}");
    let h = handle_of(&open(&mut s, 2, "f", OpenFlags::WRITE).await);
    let (_, code, why) = status_of(&write(&mut s, 3, &h, 1 << 20, b"far").await);
    assert_eq!(code, StatusCode::Failure, "{why}");
    assert!(
        why.contains("exceeded storage allocation (quota_bytes)"),
        "{why}"
    );
    let _ = close(&mut s, 4, &h).await;
    assert_eq!(std::fs::read(home.join("f")).expect("f"), b"kept");
    // Within the quota, a gap is fine.
    let h = handle_of(&open(&mut s, 5, "f", OpenFlags::WRITE).await);
    assert_ok(&write(&mut s, 6, &h, 1000, b"near").await);
    assert_ok(&close(&mut s, 7, &h).await);
    assert_eq!(std::fs::metadata(home.join("f")).expect("f").len(), 1004);
}

#[tokio::test]
async fn special_files_are_not_regular_files_and_are_not_opened() {
    let (mut s, dir) = session("").await;
    let made = std::process::Command::new("mkfifo")
        .arg(dir.path().join("alice/pipe"))
        .status()
        .expect("mkfifo");
    assert!(made.success(), "mkfifo failed");
    let stat = s
        .handle_packet(body(Packet::Stat(Stat {
            id: 2,
            path: "/pipe".into(),
        })))
        .await;
    let Packet::Attrs(attrs) = stat else {
        panic!("expected attributes, got {stat:?}");
    };
    let mode = attrs.attrs.permissions.expect("permissions");
    assert_eq!(mode & 0o170000, 0, "no file type: {mode:o}");
    let on_disk = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.path().join("alice/pipe"))
            .expect("fifo")
            .permissions(),
    );
    assert_eq!(mode & 0o7777, on_disk & 0o7777, "its permission bits");
    // OPEN answers at once rather than waiting for a writer.
    let opened = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        open(&mut s, 3, "/pipe", OpenFlags::READ),
    )
    .await
    .expect("OPEN of a FIFO answered");
    let (id, code, why) = status_of(&opened);
    assert_eq!((id, code), (3, StatusCode::Failure), "{why}");
    assert!(why.contains("not a regular file"), "{why}");
}

#[tokio::test]
async fn hostile_names_are_refused_with_the_request_id() {
    let (mut s, dir) = session("").await;
    std::fs::write(dir.path().join("secret"), b"outside").expect("write");
    // An OPEN whose name is not UTF-8: BAD_MESSAGE, under the request's id.
    let mut raw = BytesMut::new();
    raw.put_u8(3);
    raw.put_u32(77);
    raw.put_u32(2);
    raw.put_slice(&[0xff, 0xfe]);
    raw.put_u32(OpenFlags::READ.bits());
    raw.put_u32(0);
    let (id, code, why) = status_of(&s.handle_packet(raw.freeze()).await);
    assert_eq!((id, code), (77, StatusCode::BadMessage), "{why}");
    // NUL inside a name.
    let nul = open(&mut s, 78, "a\0b", CREATE).await;
    assert_eq!(status_of(&nul).1, StatusCode::BadMessage);
    // `..` above the home stays at the home.
    let real = s
        .handle_packet(body(Packet::RealPath(RealPath {
            id: 79,
            path: "/../../..".into(),
        })))
        .await;
    match real {
        Packet::Name(n) => assert_eq!(n.files[0].filename, "/"),
        other => panic!("{other:?}"),
    }
    let escape = s
        .handle_packet(body(Packet::Stat(Stat {
            id: 80,
            path: "../secret".into(),
        })))
        .await;
    assert_eq!(status_of(&escape).1, StatusCode::NoSuchFile);
    // A second INIT, and a reply-type packet sent as a request.
    let again = s
        .handle_packet(body(Packet::Init(Init {
            version: 3,
            extensions: Default::default(),
        })))
        .await;
    assert_eq!(status_of(&again).1, StatusCode::BadMessage);
    assert!(!dir.path().join("alice/a").exists());
}

#[tokio::test]
async fn a_replacement_that_fails_leaves_the_old_file() {
    let (mut s, dir) = session("max_file_size = \"8 B\"\n").await;
    std::fs::create_dir_all(dir.path().join("alice")).expect("home");
    std::fs::write(dir.path().join("alice/keep.txt"), b"old").expect("write");
    let h = handle_of(&open(&mut s, 2, "keep.txt", CREATE).await);
    assert_eq!(
        status_of(&write(&mut s, 3, &h, 0, b"12345").await).1,
        StatusCode::Ok
    );
    let (_, code, why) = status_of(&write(&mut s, 4, &h, 5, b"6789").await);
    assert_eq!(code, StatusCode::Failure);
    assert!(why.contains("max_file_size"), "{why}");
    // Later writes and the close answer the same failure.
    assert_eq!(
        status_of(&write(&mut s, 5, &h, 9, b"x").await).1,
        StatusCode::Failure
    );
    assert_eq!(
        status_of(&close(&mut s, 6, &h).await).1,
        StatusCode::Failure
    );
    assert_eq!(
        std::fs::read(dir.path().join("alice/keep.txt")).expect("kept"),
        b"old"
    );
    // An upload left open when the channel ends is not committed either.
    let h = handle_of(&open(&mut s, 7, "keep.txt", CREATE).await);
    assert_eq!(
        status_of(&write(&mut s, 8, &h, 0, b"new").await).1,
        StatusCode::Ok
    );
    let (mut client, server) = tokio::io::duplex(1024);
    let run = tokio::spawn(s.run(server));
    client.shutdown().await.expect("eof");
    run.await.expect("ended");
    assert_eq!(
        std::fs::read(dir.path().join("alice/keep.txt")).expect("kept"),
        b"old"
    );
}

#[tokio::test]
async fn an_overlong_packet_closes_the_channel() {
    let (s, _dir) = session("").await;
    let (mut client, server) = tokio::io::duplex(1024);
    let run = tokio::spawn(s.run(server));
    client
        .write_u32(super::session::MAX_PACKET + 1)
        .await
        .expect("length");
    let mut rest = Vec::new();
    let n = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        client.read_to_end(&mut rest),
    )
    .await
    .expect("closed, not waiting for the body")
    .expect("read");
    assert_eq!(n, 0, "no reply to an overlong packet");
    run.await.expect("ended");
}

#[tokio::test]
async fn a_client_that_does_not_read_replies_is_held_back_and_then_answered() {
    // Requests are read while replies wait to be written (OpenSSH keeps 64
    // in flight), but only up to QUEUED_REQUEST_BYTES: a client that sends
    // and never reads is held back there, not buffered without end. Once it
    // reads, every request is answered.
    use super::session::{MAX_PACKET, QUEUED_REQUEST_BYTES};
    let (s, _dir) = session("").await;
    // Room for about one reply: the channel's writer is stuck at once.
    let (client, server) = tokio::io::duplex(64);
    let run = tokio::spawn(s.run(server));
    let (mut replies, mut requests) = tokio::io::split(client);
    // Requests of the largest size, of a type no version 3 client sends
    // (200): each is answered SSH_FX_OP_UNSUPPORTED.
    let len = MAX_PACKET as usize;
    let mut packet = (MAX_PACKET).to_be_bytes().to_vec();
    packet.push(200);
    packet.resize(4 + len, 0);
    let mut sent = 0usize;
    let stalled = loop {
        let at = sent % packet.len();
        match tokio::time::timeout(
            std::time::Duration::from_millis(500),
            requests.write(&packet[at..]),
        )
        .await
        {
            Ok(Ok(n)) => sent += n,
            Ok(Err(e)) => panic!("the channel closed: {e}"),
            Err(_) => break sent,
        }
        assert!(
            sent <= 4 * QUEUED_REQUEST_BYTES,
            "{sent} bytes taken from a client that reads nothing"
        );
    };
    assert!(
        stalled >= QUEUED_REQUEST_BYTES && stalled <= QUEUED_REQUEST_BYTES + 4 * (len + 4),
        "held back after {stalled} bytes, the queue holds {QUEUED_REQUEST_BYTES}"
    );
    // The client reads now: the rest of its last packet goes through, and
    // every packet gets its answer.
    let reading = tokio::spawn(async move {
        let mut all = Vec::new();
        replies.read_to_end(&mut all).await.expect("replies");
        all
    });
    let rest = (packet.len() - stalled % packet.len()) % packet.len();
    let at = stalled % packet.len();
    requests
        .write_all(&packet[at..at + rest])
        .await
        .expect("the rest");
    requests.shutdown().await.expect("eof");
    run.await.expect("ended");
    let all = reading.await.expect("read");
    let mut answers = 0;
    let mut at = 0;
    while at + 4 <= all.len() {
        let n = u32::from_be_bytes([all[at], all[at + 1], all[at + 2], all[at + 3]]) as usize;
        let reply = Packet::try_from(&mut Bytes::copy_from_slice(&all[at + 4..at + 4 + n]))
            .expect("a reply");
        assert_eq!(status_of(&reply).1, StatusCode::OpUnsupported);
        answers += 1;
        at += 4 + n;
    }
    assert_eq!(at, all.len(), "whole replies only");
    assert_eq!(
        answers,
        (stalled + rest) / packet.len(),
        "one answer per request"
    );
}

/// A graceful stop: files open when the server starts to stop finish, new
/// OPEN and OPENDIR are refused, and the connection is drained once the last
/// handle closes (or the channel ends with handles open).
#[tokio::test]
async fn a_stopping_server_lets_open_files_finish_and_opens_no_new_ones() {
    let stop = CancellationToken::new();
    let handles = OpenHandles::new(stop.clone());
    let (mut s, dir) = session_with("", handles.clone()).await;
    std::fs::write(dir.path().join("alice/old.txt"), b"kept").expect("old");
    let up = handle_of(&open(&mut s, 2, "/up.bin", CREATE).await);
    let down = handle_of(&open(&mut s, 3, "/old.txt", OpenFlags::READ).await);
    let drained = || {
        let handles = handles.clone();
        async move {
            tokio::time::timeout(std::time::Duration::from_millis(50), handles.drained())
                .await
                .is_ok()
        }
    };
    assert!(!drained().await, "drained before the server stops");

    stop.cancel();
    let (_, code, why) = status_of(&open(&mut s, 4, "/new.bin", CREATE).await);
    assert_eq!(code, StatusCode::Failure, "{why}");
    assert!(why.contains("shutting down"), "{why}");
    assert!(!dir.path().join("alice/new.bin").exists());
    let listing = s
        .handle_packet(body(Packet::OpenDir(OpenDir {
            id: 5,
            path: "/".into(),
        })))
        .await;
    assert_eq!(status_of(&listing).1, StatusCode::Failure);

    // What is open goes on: the upload finishes and is stored whole.
    assert_eq!(
        status_of(&write(&mut s, 6, &up, 0, b"whole").await).1,
        StatusCode::Ok
    );
    assert!(!drained().await, "drained with two files open");
    assert_eq!(status_of(&close(&mut s, 7, &up).await).1, StatusCode::Ok);
    s.handles.reply_sent();
    assert_eq!(
        std::fs::read(dir.path().join("alice/up.bin")).expect("up"),
        b"whole"
    );
    assert!(!drained().await, "drained with a download open");
    // A READ takes the handle out of the table for a moment: still counted.
    let data = read(&mut s, 8, &down, 0, 100).await;
    assert!(matches!(data, Packet::Data(_)), "{data:?}");
    s.handles.reply_sent();
    assert!(
        !drained().await,
        "drained with a download open, after a READ"
    );
    assert_eq!(status_of(&close(&mut s, 9, &down).await).1, StatusCode::Ok);
    // The last CLOSE counts until its reply is sent (as `run` does).
    assert!(!drained().await, "drained before the CLOSE was answered");
    s.handles.reply_sent();
    assert!(drained().await, "not drained with every handle closed");

    // A channel that ends with a handle open counts it closed too.
    let stop = CancellationToken::new();
    let other = OpenHandles::new(stop.clone());
    let (mut s2, _dir2) = session_with("", other.clone()).await;
    let _left = handle_of(&open(&mut s2, 2, "/left.bin", CREATE).await);
    stop.cancel();
    let drained = |h: Arc<OpenHandles>| async move {
        tokio::time::timeout(std::time::Duration::from_millis(50), h.drained())
            .await
            .is_ok()
    };
    assert!(!drained(other.clone()).await, "drained with a file open");
    drop(s2);
    assert!(
        drained(other).await,
        "a dropped channel kept its handles counted"
    );
}

/// Requests sent over a channel without waiting for replies, as sshfs and
/// paramiko send them; answers the replies in the order they came, by id,
/// each with its packet. The channel ends after.
async fn run_together(s: SftpSession, requests: Vec<Packet>) -> Vec<(u32, Packet)> {
    let (client, server) = tokio::io::duplex(1 << 20);
    let run = tokio::spawn(s.run(server));
    let (mut replies, mut sending) = tokio::io::split(client);
    let count = requests.len();
    for request in requests {
        let bytes = Bytes::try_from(request).expect("encode");
        sending.write_all(&bytes).await.expect("request");
    }
    let mut answered = Vec::new();
    for _ in 0..count {
        let len = tokio::time::timeout(std::time::Duration::from_secs(30), replies.read_u32())
            .await
            .expect("a reply in time")
            .expect("length");
        let mut reply = vec![0u8; len as usize];
        replies.read_exact(&mut reply).await.expect("reply");
        // The id follows the type (russh-sftp's `get_request_id` knows
        // only requests' ids).
        let id = u32::from_be_bytes(reply.get(1..5).expect("an id").try_into().expect("4"));
        let packet = Packet::try_from(&mut Bytes::from(reply)).expect("decode");
        answered.push((id, packet));
    }
    sending.shutdown().await.expect("eof");
    run.await.expect("ended");
    answered
}

/// Where the reply to request `id` came among `answered`.
fn place(answered: &[(u32, Packet)], id: u32) -> usize {
    answered
        .iter()
        .position(|(i, _)| *i == id)
        .unwrap_or_else(|| panic!("no reply to {id}"))
}

/// A READ held by the user's download rate (as a ranged GET on S3 would
/// be) holds neither a READDIR on another handle nor lookups sent after
/// it: they are answered first. The next READ of the same file waits for
/// it, a STAT of a file this channel is writing answers from its handle,
/// and a MKDIR (a change) waits for every request before it, a STAT after
/// it for the MKDIR: replies come as requests end, each with its id.
#[tokio::test]
async fn a_slow_read_holds_neither_other_handles_nor_lookups() {
    let (mut s, dir) = session("download_rate = \"64 KiB/s\"").await;
    let home = dir.path().join("alice");
    std::fs::create_dir_all(home.join("d")).expect("d");
    for name in ["one", "two"] {
        std::fs::write(home.join("d").join(name), name).expect("entry");
    }
    let content: Vec<u8> = (0..65_536u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(home.join("a.bin"), &content).expect("a.bin");
    let file = handle_of(&open(&mut s, 1, "a.bin", OpenFlags::READ).await);
    let listing = handle_of(
        &s.handle_packet(body(Packet::OpenDir(OpenDir {
            id: 2,
            path: "d".into(),
        })))
        .await,
    );
    let upload = handle_of(&open(&mut s, 3, "up.bin", CREATE).await);
    assert_ok(&write(&mut s, 4, &upload, 0, b"12345").await);
    // Each READ of 32 KiB waits about half a second for the rate.
    let answered = run_together(
        s,
        vec![
            Packet::Read(Read {
                id: 10,
                handle: file.clone(),
                offset: 0,
                len: 32_768,
            }),
            Packet::ReadDir(ReadDir {
                id: 11,
                handle: listing,
            }),
            Packet::Read(Read {
                id: 12,
                handle: file,
                offset: 32_768,
                len: 32_768,
            }),
            Packet::Stat(Stat {
                id: 13,
                path: "a.bin".into(),
            }),
            Packet::Open(Open {
                id: 14,
                filename: "d/one".into(),
                pflags: OpenFlags::READ,
                attrs: FileAttributes::default(),
            }),
            Packet::Lstat(Lstat {
                id: 15,
                path: "up.bin".into(),
            }),
            Packet::MkDir(MkDir {
                id: 16,
                path: "new".into(),
                attrs: FileAttributes::default(),
            }),
            Packet::Stat(Stat {
                id: 17,
                path: "new".into(),
            }),
        ],
    )
    .await;
    let mut data = Vec::new();
    for (id, reply) in &answered {
        match (id, reply) {
            (10 | 12, Packet::Data(d)) => data.push((*id, d.data.clone())),
            (11, Packet::Name(n)) => {
                let mut names: Vec<_> = n.files.iter().map(|f| f.filename.as_str()).collect();
                names.sort_unstable();
                assert_eq!(names, ["one", "two"]);
            }
            (13, Packet::Attrs(a)) => assert_eq!(a.attrs.size, Some(65_536)),
            (14, Packet::Handle(_)) => {}
            // Not stored yet: answered from the handle writing it.
            (15, Packet::Attrs(a)) => assert_eq!(a.attrs.size, Some(5)),
            (16, Packet::Status(_)) => assert_ok(reply),
            (17, Packet::Attrs(a)) => {
                assert_eq!(a.attrs.permissions.map(|p| p & 0o170000), Some(0o040000));
            }
            other => panic!("unexpected reply {other:?}"),
        }
    }
    let ids: Vec<u32> = answered.iter().map(|(id, _)| *id).collect();
    for passing in [11, 13, 14] {
        assert!(
            place(&answered, passing) < place(&answered, 10),
            "{passing} is answered before the slow READ: {ids:?}"
        );
    }
    assert!(
        place(&answered, 10) < place(&answered, 12),
        "one file's READs in order: {ids:?}"
    );
    for before in [10, 11, 12, 13, 14, 15] {
        assert!(
            place(&answered, before) < place(&answered, 16),
            "MKDIR waits for {before}: {ids:?}"
        );
    }
    assert!(
        place(&answered, 16) < place(&answered, 17),
        "STAT after MKDIR: {ids:?}"
    );
    let read: Vec<u8> = data.into_iter().flat_map(|(_, d)| d).collect();
    assert!(read == content, "the READs return the file in order");
}

/// A WRITE held by the upload rate (as a slow backend would hold it)
/// holds neither READs of another file nor lookups sent after it. The
/// next WRITE of the same file waits for it; a STAT of the file, answered
/// from its handle, waits for both WRITEs, and the CLOSE that commits it
/// for every request before it.
#[tokio::test]
async fn a_slow_write_holds_neither_reads_of_other_files_nor_lookups() {
    let (mut s, dir) = session("upload_rate = \"64 KiB/s\"").await;
    let home = dir.path().join("alice");
    std::fs::create_dir_all(&home).expect("home");
    std::fs::write(home.join("a.txt"), b"other file").expect("a.txt");
    let file = handle_of(&open(&mut s, 1, "a.txt", OpenFlags::READ).await);
    let upload = handle_of(&open(&mut s, 2, "up.bin", CREATE).await);
    let content: Vec<u8> = (0..65_536u32).map(|i| (i % 253) as u8).collect();
    let (first, second) = content.split_at(32_768);
    let write = |id, offset: u64, data: &[u8]| {
        Packet::Write(Write {
            id,
            handle: upload.clone(),
            offset,
            data: data.to_vec(),
        })
    };
    // Each WRITE of 32 KiB waits about half a second for the rate.
    let answered = run_together(
        s,
        vec![
            write(10, 0, first),
            Packet::Read(Read {
                id: 11,
                handle: file,
                offset: 0,
                len: 100,
            }),
            Packet::Stat(Stat {
                id: 12,
                path: "a.txt".into(),
            }),
            write(13, 32_768, second),
            Packet::Lstat(Lstat {
                id: 14,
                path: "up.bin".into(),
            }),
            Packet::Close(Close {
                id: 15,
                handle: upload.clone(),
            }),
            Packet::Stat(Stat {
                id: 16,
                path: "up.bin".into(),
            }),
        ],
    )
    .await;
    for (id, reply) in &answered {
        match (id, reply) {
            (10 | 13 | 15, Packet::Status(_)) => assert_ok(reply),
            (11, Packet::Data(d)) => assert_eq!(d.data, b"other file"),
            (12, Packet::Attrs(a)) => assert_eq!(a.attrs.size, Some(10)),
            // Not stored yet: answered from the handle, after both WRITEs.
            (14 | 16, Packet::Attrs(a)) => assert_eq!(a.attrs.size, Some(65_536)),
            other => panic!("unexpected reply {other:?}"),
        }
    }
    let ids: Vec<u32> = answered.iter().map(|(id, _)| *id).collect();
    for passing in [11, 12] {
        assert!(
            place(&answered, passing) < place(&answered, 10),
            "{passing} is answered before the slow WRITE: {ids:?}"
        );
    }
    for (before, after) in [(10, 13), (13, 14), (13, 15), (14, 15), (15, 16)] {
        assert!(
            place(&answered, before) < place(&answered, after),
            "{before} before {after}: {ids:?}"
        );
    }
    let stored = std::fs::read(home.join("up.bin")).expect("committed at CLOSE");
    assert!(stored == content, "the WRITEs land in the file whole");
}

/// A WRITE to a file another handle of the channel is open on runs alone:
/// a READ of the file through that handle, sent after the WRITE, reads
/// what it wrote, however long the WRITE waits for the upload rate.
#[tokio::test]
async fn a_write_to_a_file_open_twice_keeps_its_place() {
    let (mut s, dir) = session("upload_rate = \"64 KiB/s\"").await;
    let home = dir.path().join("alice");
    std::fs::create_dir_all(&home).expect("home");
    std::fs::write(home.join("f.bin"), vec![b'o'; 32_768]).expect("f.bin");
    let reading = handle_of(&open(&mut s, 1, "f.bin", OpenFlags::READ).await);
    // Without TRUNC: the file itself is written (sshfs).
    let writing = handle_of(&open(&mut s, 2, "f.bin", OpenFlags::READ | OpenFlags::WRITE).await);
    let answered = run_together(
        s,
        vec![
            Packet::Write(Write {
                id: 10,
                handle: writing,
                offset: 0,
                data: vec![b'n'; 32_768],
            }),
            Packet::Read(Read {
                id: 11,
                handle: reading,
                offset: 0,
                len: 32_768,
            }),
        ],
    )
    .await;
    let ids: Vec<u32> = answered.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, [10, 11], "the READ waits for the WRITE");
    assert_ok(&answered[0].1);
    match &answered[1].1 {
        Packet::Data(d) => assert!(
            d.data.iter().all(|&b| b == b'n'),
            "the READ sees the WRITE before it"
        ),
        other => panic!("unexpected reply {other:?}"),
    }
}

/// An OPEN that runs beside a READ counts the READ's handle, out of the
/// table meanwhile, among the channel's open handles.
#[tokio::test]
async fn handles_out_for_a_read_count_toward_the_limit() {
    let (mut s, dir) = session("download_rate = \"64 KiB/s\"").await;
    let home = dir.path().join("alice");
    let content = vec![7u8; 65_536];
    std::fs::write(home.join("a.bin"), &content).expect("a.bin");
    let mut file = String::new();
    for id in 0..super::session::MAX_HANDLES - 1 {
        let id = u32::try_from(id).expect("small");
        file = handle_of(&open(&mut s, id, "a.bin", OpenFlags::READ).await);
    }
    let opening = |id| {
        Packet::Open(Open {
            id,
            filename: "a.bin".into(),
            pflags: OpenFlags::READ,
            attrs: FileAttributes::default(),
        })
    };
    let answered = run_together(
        s,
        vec![
            Packet::Read(Read {
                id: 100,
                handle: file,
                offset: 0,
                len: 32_768,
            }),
            opening(101),
            opening(102),
        ],
    )
    .await;
    let reply = |id| &answered[place(&answered, id)].1;
    assert!(matches!(reply(101), Packet::Handle(_)), "{:?}", reply(101));
    let (_, code, why) = status_of(reply(102));
    assert_eq!(code, StatusCode::Failure);
    assert!(why.contains("too many open handles"), "{why}");
    assert!(matches!(reply(100), Packet::Data(d) if d.data.len() == 32_768));
}

/// A STAT and a CLOSE of another file opened to read, sent after 200 READs
/// of one file, each held by the download rate (paramiko's `prefetch`
/// sends a file's READs at once), are answered before the READs are: the
/// READs wait behind their handle, in order, and the others pass them. A
/// CLOSE of the file being read waits for its READs.
#[tokio::test]
async fn lookups_and_closes_pass_the_reads_waiting_for_another_handle() {
    let (mut s, dir) = session("download_rate = \"64 KiB/s\"").await;
    let content: Vec<u8> = (0..204_800u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(dir.path().join("alice/a.bin"), &content).expect("a.bin");
    let file = handle_of(&open(&mut s, 1, "a.bin", OpenFlags::READ).await);
    let other = handle_of(&open(&mut s, 2, "a.bin", OpenFlags::READ).await);
    let mut requests: Vec<Packet> = (0..200u32)
        .map(|i| {
            Packet::Read(Read {
                id: 100 + i,
                handle: file.clone(),
                offset: u64::from(i) * 1024,
                len: 1024,
            })
        })
        .collect();
    requests.push(Packet::Stat(Stat {
        id: 999,
        path: "a.bin".into(),
    }));
    requests.push(Packet::Close(Close {
        id: 998,
        handle: other,
    }));
    requests.push(Packet::Close(Close {
        id: 997,
        handle: file,
    }));
    // The READs take about three seconds at 64 KiB/s.
    let answered = run_together(s, requests).await;
    let ids: Vec<u32> = answered.iter().map(|(id, _)| *id).collect();
    let stat = place(&answered, 999);
    assert!(
        matches!(&answered[stat].1, Packet::Attrs(a) if a.attrs.size == Some(204_800)),
        "{:?}",
        answered[stat].1
    );
    assert!(
        stat < place(&answered, 120),
        "the STAT passes the READs waiting for the handle: {ids:?}"
    );
    assert_ok(&answered[place(&answered, 998)].1);
    assert!(
        place(&answered, 998) < place(&answered, 120),
        "the other file's CLOSE passes them too: {ids:?}"
    );
    assert_ok(&answered[place(&answered, 997)].1);
    assert!(
        place(&answered, 997) > place(&answered, 299),
        "the file's CLOSE waits for its READs: {ids:?}"
    );
    let reads: Vec<u32> = ids
        .iter()
        .copied()
        .filter(|id| *id >= 100 && *id < 300)
        .collect();
    assert_eq!(reads, (100..300).collect::<Vec<_>>(), "READs in order");
    let data: Vec<u8> = answered
        .iter()
        .filter_map(|(_, p)| match p {
            Packet::Data(d) => Some(d.data.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert!(data == content, "the READs return the file");
}
