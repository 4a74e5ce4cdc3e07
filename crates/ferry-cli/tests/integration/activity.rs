//! The audit log and the xferlog, written by a real server.

use std::io::Write;

use crate::support::{ALICE_PASSWORD, FerryServer, RawControl};

fn code(reply: &str) -> &str {
    &reply[..3]
}

#[test]
fn audit_and_xferlog_record_every_command_and_transfer() {
    let mut server = FerryServer::start();
    let mut c = RawControl::connect(&server);
    c.cmd("USER alice");
    assert_eq!(code(&c.cmd("PASS wrong-guess")), "530");
    c.cmd("USER alice");
    assert_eq!(code(&c.cmd(&format!("PASS {ALICE_PASSWORD}"))), "230");
    let mut d = c.pasv_data();
    assert_eq!(code(&c.cmd("STOR my file.bin")), "150");
    d.write_all(&[9u8; 12345]).expect("upload");
    drop(d);
    assert_eq!(code(&c.reply()), "226");
    let mut d = c.pasv_data();
    assert_eq!(code(&c.cmd("RETR my file.bin")), "150");
    std::io::copy(&mut d, &mut std::io::sink()).expect("download");
    assert_eq!(code(&c.reply()), "226");
    assert_eq!(code(&c.cmd("DELE nope")), "550");
    c.cmd("QUIT");
    server.signal("TERM");
    assert!(server.terminate_wait().success());

    let audit = std::fs::read_to_string(server.dir.path().join("ferry-data/audit.jsonl"))
        .expect("audit log");
    assert!(
        !audit.contains("wrong-guess") && !audit.contains(ALICE_PASSWORD),
        "a password reached the audit log"
    );
    let records: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    let find = |cmd: &str, code: u64| {
        records
            .iter()
            .find(|r| r["command"] == cmd && r["code"] == code)
            .unwrap_or_else(|| panic!("no {cmd} {code} record in:\n{audit}"))
    };
    let failed = find("PASS", 530);
    assert_eq!(failed["arg"], "****");
    assert_eq!(failed["user"], "alice");
    let stor = find("STOR", 226);
    assert_eq!(stor["path"], "/alice/my file.bin");
    assert_eq!(stor["bytes"], 12345);
    assert!(
        stor["duration_ms"].is_u64()
            && stor["client"]
                .as_str()
                .expect("client")
                .starts_with("127.0.0.1:")
    );
    assert!(stor["session"].is_u64() && stor["time"].as_str().expect("time").ends_with('Z'));
    assert_eq!(find("RETR", 226)["bytes"], 12345);
    assert_eq!(find("DELE", 550)["path"], "/alice/nope");

    let xferlog =
        std::fs::read_to_string(server.dir.path().join("ferry-data/xferlog")).expect("xferlog");
    let lines: Vec<&str> = xferlog.lines().collect();
    assert_eq!(lines.len(), 2, "{xferlog}");
    for (line, direction) in lines.iter().zip(["i", "o"]) {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f.len(), 18, "{line}");
        assert_eq!(
            &f[6..],
            [
                "127.0.0.1",
                "12345",
                "/alice/my_file.bin",
                "b",
                "_",
                direction,
                "r",
                "alice",
                "ftp",
                "0",
                "*",
                "c"
            ],
            "{line}"
        );
    }
}
