//! Account limits over real FTP sessions: quotas, file size, file names,
//! addresses, hours, sessions and rates, each at its boundary.

use crate::support::{FerryServer, limits_config, python_script};

#[test]
fn every_limit_at_its_boundary() {
    let server = FerryServer::start_with(&limits_config());
    let out = python_script("limits.py", &server, &[]);
    assert!(out.contains("limits OK"), "{out}");
    let log = server.log();
    // Refusals are logged with the setting that decided them.
    for setting in ["deny_from", "allow_from", "login_hours", "max_sessions"] {
        assert!(log.contains(setting), "no log line names {setting}");
    }
}

/// A write the file system refuses for want of room (here a file-size limit,
/// `ulimit -f`, which fails it with EFBIG as a full disk fails it with
/// ENOSPC): the upload gets 552, the client still sending reads it, a
/// replaced file stays whole, and the server goes on serving. Spliced
/// uploads (STOR) and copied ones (APPE) alike.
#[test]
fn a_full_file_system_is_552_and_loses_nothing() {
    use std::io::Write;
    use std::time::Duration;

    use crate::support::{ALICE_PASSWORD, RawControl, random_bytes, standard_config};

    const LIMIT: u64 = 4 << 20;
    let server = FerryServer::start_with_file_size_limit(&standard_config(""), LIMIT);
    let old = random_bytes(100_000, 51);
    std::fs::write(server.files().join("alice/kept.bin"), &old).expect("seed");
    let mut c = RawControl::login(&server, "alice", ALICE_PASSWORD);
    assert!(c.cmd("TYPE I").starts_with("200"));
    // 6 MiB, then 1 MiB more: past the limit, within what the server reads
    // and drops after it stops storing, so every write of this client succeeds.
    let body = random_bytes(6 << 20, 52);
    for (verb, name) in [
        ("STOR", "kept.bin"),
        ("STOR", "new.bin"),
        ("APPE", "kept.bin"),
    ] {
        let mut data = c.pasv_data();
        let r = c.cmd(&format!("{verb} {name}"));
        assert!(r.starts_with("150"), "{verb} {name}: {r}");
        data.set_write_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        data.write_all(&body)
            .unwrap_or_else(|e| panic!("{verb} {name}: the server stopped reading: {e}"));
        // By now the server has met the limit and stopped storing; a client
        // still sending must not find the connection reset.
        std::thread::sleep(Duration::from_millis(500));
        data.write_all(&body[..1 << 20])
            .unwrap_or_else(|e| panic!("{verb} {name}: reset after the limit: {e}"));
        drop(data);
        let r = c.reply();
        assert!(r.starts_with("552"), "{verb} {name}: {r}");
        let kept = std::fs::read(server.files().join("alice/kept.bin")).expect("kept");
        match verb {
            // A replacing upload is written beside the old file: that stays whole.
            "STOR" => assert!(kept == old, "{verb} {name}: the old file changed"),
            // An append keeps what fitted, and the old bytes in front of it.
            _ => {
                assert_eq!(kept.len() as u64, LIMIT, "{verb} {name}");
                assert!(
                    kept[..old.len()] == old[..]
                        && kept[old.len()..] == body[..kept.len() - old.len()]
                );
            }
        }
    }
    // The server is still there, and a file within the limit goes in whole.
    assert!(c.cmd("NOOP").starts_with("200"));
    let small = random_bytes(1 << 20, 53);
    let mut data = c.pasv_data();
    assert!(c.cmd("STOR small.bin").starts_with("150"));
    data.write_all(&small).expect("small upload");
    drop(data);
    let r = c.reply();
    assert!(r.starts_with("226"), "{r}");
    assert!(std::fs::read(server.files().join("alice/small.bin")).expect("small") == small);
}

/// Uploads of one user running at the same moment cannot together pass the
/// byte quota (100,000 here): each reserves its share of the quota before it
/// stores a byte. While one upload of 60,000 bytes is still open, a second of
/// 60,000 stops with 552 at the 40,000 left; once the first ends, what it
/// reserved and did not use is free again; a dropped upload gives its share
/// back. Plain binary uploads (the blocking loop) and ASCII ones (the copying
/// loop) alike.
#[test]
fn uploads_at_the_same_moment_cannot_pass_a_quota_together() {
    use std::io::Write;
    use std::time::Duration;

    use crate::support::RawControl;

    let server = FerryServer::start_with(&limits_config());
    let files = server.files().join("quota");
    let body = vec![b'q'; 60_000];
    let send = |c: &mut RawControl, name: &str, bytes: &[u8]| {
        let mut data = c.pasv_data();
        let r = c.cmd(&format!("STOR {name}"));
        assert!(r.starts_with("150"), "STOR {name}: {r}");
        data.write_all(bytes).expect("upload");
        data
    };
    for ty in ["I", "A"] {
        let mut first = RawControl::login(&server, "quota", "pw");
        let mut second = RawControl::login(&server, "quota", "pw");
        for c in [&mut first, &mut second] {
            assert!(c.cmd(&format!("TYPE {ty}")).starts_with("200"));
        }
        let open = send(&mut first, "first", &body);
        // The server has read the first upload's bytes (and reserved for them).
        first.wait_for_transfer_bytes(body.len() as u64);
        drop(send(&mut second, "second", &body));
        let r = second.reply();
        assert!(r.starts_with("552"), "TYPE {ty}: the second upload: {r}");
        assert!(r.contains("quota_bytes"), "{r}");
        drop(open);
        let r = first.reply();
        assert!(r.starts_with("226"), "TYPE {ty}: the first upload: {r}");
        assert_eq!(std::fs::read(files.join("first")).expect("first"), body);
        assert!(!files.join("second").exists(), "TYPE {ty}");
        // The first upload's unused share is back: 40,000 bytes fit, one more
        // does not.
        drop(send(&mut second, "third", &body[..40_000]));
        assert!(second.reply().starts_with("226"), "TYPE {ty}");
        drop(send(&mut second, "fourth", b"q"));
        let r = second.reply();
        assert!(r.starts_with("552"), "TYPE {ty}: over the quota: {r}");
        for name in ["first", "third"] {
            assert!(second.cmd(&format!("DELE {name}")).starts_with("250"));
        }
    }
    // An upload aborted in the middle: a new file keeps what arrived (so that
    // it can be resumed), and that counts; what was reserved beyond it is
    // free again. Before the count was made on every end, ABOR left those
    // bytes uncounted: a way past any quota.
    let mut c = RawControl::login(&server, "quota", "pw");
    assert!(c.cmd("TYPE I").starts_with("200"));
    let open = send(&mut c, "aborted", &body);
    c.wait_for_transfer_bytes(body.len() as u64);
    let r = c.cmd("ABOR");
    let r = if r.starts_with("426") { c.reply() } else { r };
    assert!(r.starts_with("226") || r.starts_with("225"), "ABOR: {r}");
    drop(open);
    std::thread::sleep(Duration::from_millis(300));
    let kept = std::fs::metadata(files.join("aborted")).map_or(0, |m| m.len()) as usize;
    assert!(
        kept > 0,
        "the aborted upload kept nothing: this test needs it to"
    );
    drop(send(&mut c, "rest", &vec![b'r'; 100_000 - kept]));
    let r = c.reply();
    assert!(
        r.starts_with("226"),
        "the rest of the quota after ABOR ({kept} kept): {r}"
    );
    drop(send(&mut c, "more", b"m"));
    let r = c.reply();
    assert!(
        r.starts_with("552"),
        "the aborted upload's {kept} bytes must count: {r}"
    );
}
