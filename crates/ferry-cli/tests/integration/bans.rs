//! Brute-force defence: bans after repeated failed logins, their expiry, and
//! `ferry ban`.

use std::time::{Duration, Instant};

use crate::support::{ALICE_PASSWORD, FerryServer, RawControl, ferry_ok, standard_config};

fn code(reply: &str) -> &str {
    &reply[..3]
}

#[test]
fn repeated_failures_ban_the_address_until_the_ban_ends() {
    let server = FerryServer::start_with(&standard_config(
        "max_connections_per_ip = 100\n[security]\nmax_login_failures = 3\nban_window = \"1m\"\nban_time = \"3s\"",
    ));
    let (mut c, banner) = RawControl::connect_from(&server, [127, 0, 0, 1]);
    assert_eq!(code(&banner), "220");
    let mut took = Vec::new();
    for attempt in 1..=3 {
        c.cmd("USER alice");
        let started = Instant::now();
        let r = c.cmd("PASS guess");
        took.push(started.elapsed());
        if attempt < 3 {
            assert_eq!(code(&r), "530", "{r}");
        } else {
            assert_eq!(code(&r), "421", "the third failure bans: {r}");
            assert!(c.is_closed());
        }
    }
    assert!(
        took[1] > took[0] && took[2] >= Duration::from_millis(900),
        "delays must grow: {took:?}"
    );
    // Banned: refused at once, even with the right password.
    let (_, first) = RawControl::connect_from(&server, [127, 0, 0, 1]);
    assert_eq!(code(&first), "421", "{first}");
    // Other addresses are not affected.
    let (mut other, banner) = RawControl::connect_from(&server, [127, 0, 0, 2]);
    assert_eq!(code(&banner), "220");
    other.cmd("USER alice");
    assert_eq!(code(&other.cmd(&format!("PASS {ALICE_PASSWORD}"))), "230");
    // The ban is visible to `ferry ban list` (the accounts are in SQLite).
    let list = ferry_ok(server.dir.path(), &["ban", "list"], "");
    assert!(
        list.contains("127.0.0.1") && list.contains("failed logins"),
        "{list}"
    );
    // And it ends.
    std::thread::sleep(Duration::from_millis(3200));
    let (mut back, banner) = RawControl::connect_from(&server, [127, 0, 0, 1]);
    assert_eq!(code(&banner), "220", "the ban must expire");
    back.cmd("USER alice");
    assert_eq!(code(&back.cmd(&format!("PASS {ALICE_PASSWORD}"))), "230");
    // Refused connections are in the audit log.
    let audit =
        std::fs::read_to_string(server.dir.path().join("ferry-data/audit.jsonl")).expect("audit");
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"command\":\"CONNECT\"") && l.contains("\"code\":421")),
        "{audit}"
    );
}

#[test]
fn administrators_ban_and_lift() {
    let server = FerryServer::start_with(&standard_config("max_connections_per_ip = 100"));
    let d = server.dir.path().to_owned();
    ferry_ok(
        &d,
        &[
            "ban",
            "add",
            "127.0.0.3",
            "--for",
            "1h",
            "--reason",
            "abuse report 42",
        ],
        "",
    );
    let (_, first) = RawControl::connect_from(&server, [127, 0, 0, 3]);
    assert_eq!(code(&first), "421", "{first}");
    assert!(first.contains("abuse report 42"), "{first}");
    let json = ferry_ok(&d, &["ban", "list", "--json"], "");
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(v[0]["address"], "127.0.0.3");
    ferry_ok(&d, &["ban", "del", "127.0.0.3"], "");
    let (_, first) = RawControl::connect_from(&server, [127, 0, 0, 3]);
    assert_eq!(code(&first), "220", "the ban was lifted");
    let out = crate::support::ferry_in(&d, &["ban", "del", "127.0.0.3"], "");
    assert!(
        !out.status.success(),
        "lifting a ban that is not there is an error"
    );
}
