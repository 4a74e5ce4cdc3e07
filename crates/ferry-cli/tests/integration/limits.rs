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
