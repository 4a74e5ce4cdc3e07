//! Account stores and `ferry user`/`ferry group`: SQLite by default, PostgreSQL
//! shared by two servers.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::{FerryServer, PgServer, RawControl, ferry_in, ferry_ok, hash, serve_in};

fn code(reply: &str) -> &str {
    &reply[..3]
}

/// Logs in and returns the reply code of PASS.
fn login_code(server: &FerryServer, user: &str, pass: &str) -> String {
    let mut c = RawControl::connect(server);
    c.cmd(&format!("USER {user}"));
    code(&c.cmd(&format!("PASS {pass}"))).to_owned()
}

/// Uploads `data` as `path` and returns the final reply code (or the refusal).
fn upload(c: &mut RawControl, path: &str, data: &[u8]) -> String {
    let mut d = c.pasv_data();
    let r = c.cmd(&format!("STOR {path}"));
    if !r.starts_with("150") {
        return code(&r).to_owned();
    }
    let _ = d.write_all(data);
    drop(d);
    code(&c.reply()).to_owned()
}

#[test]
fn a_burst_of_first_logins_leaves_no_password_memory_behind() {
    // Each argon2id verification takes 19 MiB. The C allocator used to keep
    // it after the first one: a burst of first logins left tens of MiB in
    // the arenas of the threads that verified (180 MB after 100).
    let server = FerryServer::start();
    let before = server.memory_kib("VmRSS");
    let logins: Vec<_> = (0..16)
        .map(|_| {
            let addr = server.addr;
            std::thread::spawn(move || {
                let mut c = RawControl::connect_to(addr);
                c.cmd("USER alice");
                let r = c.cmd(&format!("PASS {}", crate::support::ALICE_PASSWORD));
                assert!(r.starts_with("230"), "{r}");
                c
            })
        })
        .collect();
    let sessions: Vec<_> = logins
        .into_iter()
        .map(|t| t.join().expect("login thread"))
        .collect();
    let after = server.memory_kib("VmRSS");
    let grown = after.saturating_sub(before);
    assert!(
        grown < 12 * 1024,
        "16 logged-in sessions grew the server by {grown} KiB ({before} -> {after})"
    );
    drop(sessions);
}

fn write_config(dir: &Path, store: &str) {
    let alice = hash("cfg-pw");
    std::fs::write(
        dir.join("ferry.toml"),
        format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\n[storage]\nroot = \"files\"\n[accounts]\nstore = \"{store}\"\n\n[[users]]\nname = \"fromfile\"\npassword_hash = \"{alice}\"\n"
        ),
    )
    .expect("config");
}

#[test]
fn user_and_group_commands_with_sqlite() {
    user_and_group_commands("sqlite:./ferry-data/accounts.db", "sqlite:");
}

/// The same suite against PostgreSQL.
#[test]
fn user_and_group_commands_with_postgres() {
    let pg = PgServer::start();
    user_and_group_commands(&pg.url, "postgres://ferry@127.0.0.1");
}

fn user_and_group_commands(store: &str, shown_as: &str) {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    write_config(d, store);
    ferry_ok(
        d,
        &[
            "group",
            "add",
            "staff",
            "max_sessions=2",
            "permissions./=list,download",
        ],
        "",
    );
    ferry_ok(
        d,
        &[
            "user",
            "add",
            "carol",
            "--group",
            "staff",
            "--password-stdin",
        ],
        "pw1\n",
    );
    ferry_ok(
        d,
        &[
            "user",
            "set",
            "carol",
            "quota_bytes=1 MiB",
            "permissions./up=*",
        ],
        "",
    );

    // Errors name what is wrong and change nothing.
    let out = ferry_in(d, &["user", "add", "carol", "--password-stdin"], "x\n");
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("already exists")
    );
    let out = ferry_in(d, &["user", "add", "fromfile", "--password-stdin"], "x\n");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("configuration file"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = ferry_in(d, &["user", "set", "carol", "colour=blue"], "");
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown setting `colour`"));
    let out = ferry_in(d, &["user", "set", "carol", "quota_bytes=lots"], "");
    assert!(String::from_utf8_lossy(&out.stderr).contains("quota_bytes"));
    let out = ferry_in(
        d,
        &["user", "add", "dave", "--group", "nope", "--password-stdin"],
        "x\n",
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("group `nope` does not exist"));
    let out = ferry_in(d, &["group", "set", "staff", "home=/x"], "");
    assert!(String::from_utf8_lossy(&out.stderr).contains("only users"));

    // list --json and show, without the password hash.
    let list = ferry_ok(d, &["user", "list", "--json"], "");
    let v: serde_json::Value = serde_json::from_str(&list).expect("json");
    let names: Vec<&str> = v
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|u| u["name"].as_str())
        .collect();
    assert_eq!(names, ["fromfile", "carol"]);
    assert!(
        v[1]["source"]
            .as_str()
            .expect("source")
            .starts_with(shown_as),
        "{list}"
    );
    assert!(!list.contains("argon2"), "a password hash was shown");
    let show = ferry_ok(d, &["user", "show", "carol"], "");
    assert!(
        show.contains("quota_bytes = \"1 MiB\"") && show.contains("password_hash = (set)"),
        "{show}"
    );
    assert!(ferry_ok(d, &["group", "list"], "").contains("staff"));

    // The server sees the store's users, and changes take effect at the next login.
    let server = serve_in(dir);
    let d = server.dir.path().to_owned();
    assert_eq!(login_code(&server, "fromfile", "cfg-pw"), "230");
    let mut c = RawControl::login(&server, "carol", "pw1");
    assert_eq!(code(&c.cmd("MKD /up")), "257");
    assert_eq!(upload(&mut c, "/up/a.txt", b"hello"), "226");
    assert_eq!(
        upload(&mut c, "/a.txt", b"hello"),
        "550",
        "the group rule at / is read-only"
    );
    assert_eq!(
        upload(&mut c, "/up/big.bin", &vec![0u8; 2 << 20]),
        "552",
        "the quota set on the command line"
    );
    drop(c);
    ferry_ok(
        &d,
        &["user", "passwd", "carol", "--password-stdin"],
        "pw2\n",
    );
    assert_eq!(login_code(&server, "carol", "pw1"), "530");
    assert_eq!(login_code(&server, "carol", "pw2"), "230");
    // rescan-quota measures what is stored.
    std::fs::write(server.files().join("carol/up/extra.bin"), vec![1u8; 1000]).expect("extra");
    let out = ferry_ok(&d, &["user", "rescan-quota", "carol"], "");
    assert_eq!(out.trim(), "carol: 1005 bytes in 2 files");
    ferry_ok(&d, &["user", "del", "carol"], "");
    assert_eq!(login_code(&server, "carol", "pw2"), "530");
    assert!(
        server.files().join("carol/up/a.txt").exists(),
        "deleting a user keeps its files"
    );
}

#[test]
fn a_name_in_both_the_file_and_the_store_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    write_config(d, "sqlite:./accounts.db");
    ferry_ok(d, &["user", "add", "fromfile2", "--password-stdin"], "x\n");
    // Now define the same name in the file too.
    let mut text = std::fs::read_to_string(d.join("ferry.toml")).expect("read");
    text.push_str(&format!(
        "\n[[users]]\nname = \"fromfile2\"\npassword_hash = \"{}\"\n",
        hash("y")
    ));
    std::fs::write(d.join("ferry.toml"), text).expect("write");
    let out = ferry_in(d, &["check-config"], "");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`fromfile2` is defined both"), "{err}");
}

#[test]
fn postgres_store_shared_by_two_servers() {
    let pg = PgServer::start();
    let make = || {
        let dir = tempfile::tempdir().expect("tmp");
        write_config(dir.path(), &pg.url);
        dir
    };
    let (a_dir, b_dir) = (make(), make());
    // Both servers keep files in one place, as nodes behind a load balancer would
    // with shared storage.
    let shared_files = tempfile::tempdir().expect("files");
    for d in [&a_dir, &b_dir] {
        std::os::unix::fs::symlink(shared_files.path(), d.path().join("files")).expect("link");
    }
    ferry_ok(
        a_dir.path(),
        &["group", "add", "team", "quota_bytes=100000"],
        "",
    );
    let a = serve_in(a_dir);
    let b = serve_in(b_dir);
    // A user added through node A's configuration logs in on node B at once.
    ferry_ok(
        a.dir.path(),
        &["user", "add", "erin", "--group", "team", "--password-stdin"],
        "pw\n",
    );
    assert_eq!(login_code(&b, "erin", "pw"), "230");
    assert_eq!(login_code(&a, "erin", "pw"), "230");
    // Quota usage is shared: what erin stores through A counts on B.
    let mut on_a = RawControl::login(&a, "erin", "pw");
    assert_eq!(upload(&mut on_a, "f1", &vec![7u8; 60_000]), "226");
    let mut on_b = RawControl::login(&b, "erin", "pw");
    assert_eq!(
        upload(&mut on_b, "f2", &vec![7u8; 50_000]),
        "552",
        "B must see A's 60,000 bytes"
    );
    assert_eq!(upload(&mut on_b, "f2", &vec![7u8; 40_000]), "226");
    assert_eq!(
        upload(&mut on_a, "f3", b"x"),
        "552",
        "A must see B's 40,000 bytes"
    );
    // Uploads at the same moment on the two nodes share the quota too: while
    // A's upload of 50,000 bytes is still open (and holds its share), B's of
    // 50,000 stops at the 10,000 left.
    assert!(on_a.cmd("DELE f1").starts_with("250"));
    assert!(on_a.cmd("TYPE I").starts_with("200"));
    let mut open = on_a.pasv_data();
    assert!(on_a.cmd("STOR f4").starts_with("150"));
    open.write_all(&[4u8; 50_000]).expect("upload on A");
    on_a.wait_for_transfer_bytes(50_000);
    assert_eq!(
        upload(&mut on_b, "f5", &[5u8; 50_000]),
        "552",
        "B must see the share A holds"
    );
    drop(open);
    assert!(on_a.reply().starts_with("226"));
    assert_eq!(upload(&mut on_b, "f6", &[6u8; 10_000]), "226");
    assert_eq!(upload(&mut on_b, "f7", b"x"), "552");
    // A recount through PostgreSQL agrees with what the uploads recorded.
    assert_eq!(
        ferry_ok(a.dir.path(), &["user", "rescan-quota", "erin"], "").trim(),
        "erin: 100000 bytes in 3 files"
    );
    let list = ferry_ok(b.dir.path(), &["user", "list", "--json"], "");
    assert!(
        list.contains("\"erin\"") && list.contains("postgres://ferry@127.0.0.1"),
        "{list}"
    );
}

/// PostgreSQL going away and coming back. While it is away, a login of one of
/// its users is refused with 421 (a temporary refusal that clients retry, not
/// a 530 that reads as a wrong password) within `accounts.timeout`, a user of
/// the configuration file still logs in, and an upload that needs quota stops
/// with 451 while the file it was replacing keeps its content. Once it is
/// back, its users log in again without a restart of ferry.
#[test]
fn postgres_outage_refuses_logins_for_a_while_and_loses_nothing() {
    let mut pg = PgServer::start();
    let dir = tempfile::tempdir().expect("tmp");
    let from_file = hash("cfg-pw");
    std::fs::write(
        dir.path().join("ferry.toml"),
        format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\n[storage]\nroot = \"files\"\n\
             [accounts]\nstore = \"{}\"\ntimeout = \"2s\"\n\n\
             [[users]]\nname = \"fromfile\"\npassword_hash = \"{from_file}\"\n",
            pg.url
        ),
    )
    .expect("config");
    ferry_ok(
        dir.path(),
        &["user", "add", "erin", "--home", "/erin", "--password-stdin"],
        "pw\n",
    );
    ferry_ok(
        dir.path(),
        &["user", "set", "erin", "quota_bytes=100 MiB"],
        "",
    );
    let server = serve_in(dir);
    let mut erin = RawControl::login(&server, "erin", "pw");
    assert!(erin.cmd("TYPE I").starts_with("200"));
    assert_eq!(upload(&mut erin, "keep.txt", b"version 1"), "226");
    let kept = server.files().join("erin/keep.txt");
    assert_eq!(std::fs::read(&kept).expect("stored"), b"version 1");

    pg.stop();
    let start = Instant::now();
    let mut c = RawControl::connect(&server);
    c.cmd("USER erin");
    let refused = c.cmd("PASS pw");
    let took = start.elapsed();
    assert!(
        refused.starts_with("421") && refused.contains("account database"),
        "{refused}"
    );
    assert!(c.is_closed(), "421 closes the connection");
    assert!(
        took < Duration::from_secs(10),
        "refused after {took:?}, with accounts.timeout = 2s"
    );
    assert_eq!(login_code(&server, "fromfile", "cfg-pw"), "230");
    // Replacing keep.txt needs quota, which the database keeps.
    assert_eq!(upload(&mut erin, "keep.txt", &vec![1u8; 3 << 20]), "451");
    assert_eq!(std::fs::read(&kept).expect("kept"), b"version 1");
    // The log says what to look at (read from stderr by another thread: it
    // may arrive just after the reply).
    server.wait_for_log("accounts.timeout");

    pg.restart();
    assert_eq!(login_code(&server, "erin", "pw"), "230");
    let mut back = RawControl::login(&server, "erin", "pw");
    assert!(back.cmd("TYPE I").starts_with("200"));
    assert_eq!(upload(&mut back, "after.txt", b"back"), "226");
    assert_eq!(std::fs::read(&kept).expect("kept"), b"version 1");
}

/// A user's recorded quota usage, as `ferry user show --json` prints it.
fn recorded_usage(dir: &Path, user: &str) -> Option<(u64, u64)> {
    let shown = ferry_ok(dir, &["user", "show", user, "--json"], "");
    let v: serde_json::Value = serde_json::from_str(&shown).expect("json");
    let u = &v["usage"];
    Some((u["bytes"].as_u64()?, u["files"].as_u64()?))
}

/// A server killed in the middle of an upload leaves what the upload had
/// reserved counted in the user's usage. Once the killed server has been
/// silent for `accounts.recount_after`, the restarted one measures the user's
/// usage again from storage by itself: nobody has to run rescan-quota.
#[test]
fn a_crash_mid_upload_leaves_no_reservation_behind() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(
        dir.path().join("ferry.toml"),
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[storage]\nroot = \"files\"\n\
         [accounts]\nrecount_after = \"2s\"\n",
    )
    .expect("config");
    ferry_ok(
        dir.path(),
        &["user", "add", "dora", "--home", "/dora", "--password-stdin"],
        "pw\n",
    );
    ferry_ok(
        dir.path(),
        &["user", "set", "dora", "quota_bytes=64 MiB"],
        "",
    );
    let mut server = serve_in(dir);
    let d = server.dir.path().to_owned();
    let mut c = RawControl::login(&server, "dora", "pw");
    assert!(c.cmd("TYPE I").starts_with("200"));
    assert_eq!(upload(&mut c, "small", &[1u8; 1000]), "226");
    assert_eq!(recorded_usage(&d, "dora"), Some((1000, 1)));
    let mut data = c.pasv_data();
    assert!(c.cmd("STOR big").starts_with("150"));
    data.write_all(&vec![2u8; 3 << 20]).expect("upload");
    c.wait_for_transfer_bytes(3 << 20);
    // Not while the upload runs: its bytes are partly stored, partly reserved.
    let busy = crate::support::ferry_in(&d, &["user", "rescan-quota", "dora"], "");
    assert!(!busy.status.success());
    let why = String::from_utf8_lossy(&busy.stderr);
    assert!(why.contains("in flight"), "{why}");
    let (held, _) = recorded_usage(&d, "dora").expect("usage");
    assert!(
        held > 1000 + (3 << 20),
        "the upload reserves ahead of what it stores: {held}"
    );

    server.crash_and_restart();
    drop(data);
    // What the user stores: the killed upload's bytes are in a hidden
    // temporary file, which never became the user's file and is not counted.
    let mut stored = 0;
    let mut files = 0;
    for entry in std::fs::read_dir(server.files().join("dora")).expect("home") {
        let entry = entry.expect("entry");
        if !entry
            .file_name()
            .to_string_lossy()
            .starts_with(".ferry-upload-")
        {
            stored += entry.metadata().expect("metadata").len();
            files += 1;
        }
    }
    assert_eq!((stored, files), (1000, 1));
    let deadline = Instant::now() + Duration::from_secs(30);
    while recorded_usage(&d, "dora") != Some((stored, files)) {
        assert!(
            Instant::now() < deadline,
            "usage {:?}, {stored} bytes stored\n{}",
            recorded_usage(&d, "dora"),
            server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(server.log().contains("quota usage recounted"));
    // The recounted room is usable: 64 MiB less what is stored.
    let mut again = RawControl::login(&server, "dora", "pw");
    assert!(again.cmd("TYPE I").starts_with("200"));
    let room = usize::try_from((64 << 20) - stored).expect("room");
    assert_eq!(upload(&mut again, "fill", &vec![3u8; room]), "226");
    assert_eq!(upload(&mut again, "over", b"x"), "552");
}

/// A service of the test's own in /etc/pam.d, removed when dropped.
struct PamService {
    path: std::path::PathBuf,
    pub name: String,
}

impl PamService {
    fn write(name: &str, text: &str) -> Self {
        let path = Path::new("/etc/pam.d").join(name);
        std::fs::write(&path, text).expect("write /etc/pam.d (as root)");
        PamService {
            path,
            name: name.to_owned(),
        }
    }
}

impl Drop for PamService {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether the tests run as root, which `what` needs; says it is skipped
/// otherwise (CI runs as root).
fn running_as_root(what: &str) -> bool {
    let root = rustix::process::geteuid().is_root();
    if !root {
        eprintln!("skipped: {what} needs root (CI runs as root)");
    }
    root
}

/// Host accounts checked by PAM (`system_auth = "pam"`): the test's own PAM
/// service runs pam_exec with a script that accepts one password, so libpam,
/// ferry's conversation with it and a real module decide; then the account
/// step (pam_deny) refuses the same password.
#[test]
fn system_users_log_in_through_pam() {
    if !running_as_root("writing /etc/pam.d") {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path().to_owned();
    let home = d.join("home/pamuser");
    std::fs::create_dir_all(&home).expect("home");
    let script = d.join("check.sh");
    // pam_exec hands the password on stdin, ended by a NUL byte, and the
    // client's address (PAM_RHOST, which ferry sets) in the environment.
    std::fs::write(
        &script,
        "#!/bin/sh\npw=$(tr -d '\\000')\n[ \"$PAM_USER\" = pamuser ] && [ \"$pw\" = 'pam pw' ] \\\n  && [ \"$PAM_RHOST\" = 127.0.0.1 ]\n",
    )
    .expect("script");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let name = format!("ferry-test-{}", std::process::id());
    // As Debian's common-auth stacks pam_unix: a failed check falls through
    // to pam_deny, whose answer is PAM_AUTH_ERR (pam_exec's own would be a
    // system error).
    let auth = format!(
        "auth [success=1 default=ignore] pam_exec.so expose_authtok quiet {}\n\
         auth requisite pam_deny.so\nauth required pam_permit.so\n",
        script.display()
    );
    let service = PamService::write(&name, &format!("{auth}account required pam_permit.so\n"));
    std::fs::write(
        d.join("passwd"),
        format!("pamuser:x:0:0::{}:/bin/sh\n", home.display()).replace(":0:0:", ":4343:4343:"),
    )
    .expect("passwd");
    std::fs::write(
        d.join("ferry.toml"),
        format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\n[accounts]\nstore = \"config\"\nsystem_users = true\n\
             system_passwd_file = \"passwd\"\nsystem_auth = \"pam\"\npam_service = \"{}\"\n",
            service.name
        ),
    )
    .expect("config");
    let server = serve_in(dir);
    assert_eq!(login_code(&server, "pamuser", "pam pw"), "230");
    assert_eq!(login_code(&server, "pamuser", "wrong"), "530");
    assert_eq!(
        login_code(&server, "ghost", "pam pw"),
        "530",
        "not in passwd"
    );
    let mut c = RawControl::login(&server, "pamuser", "pam pw");
    assert_eq!(upload(&mut c, "via-pam.txt", b"pam"), "226");
    assert_eq!(
        std::fs::read(server.dir.path().join("home/pamuser/via-pam.txt")).expect("stored"),
        b"pam"
    );
    // The account step refuses: the right password is not enough.
    std::fs::write(
        Path::new("/etc/pam.d").join(&service.name),
        format!("{auth}account required pam_deny.so\n"),
    )
    .expect("rewrite");
    assert_eq!(login_code(&server, "pamuser", "pam pw"), "530");
}

#[test]
fn policy_explain_names_the_deciding_rule() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let config = crate::support::standard_config("")
        + "\n[[users]]\nname = \"night\"\npassword_hash = \"$argon2id$v=19$m=19456,t=2,p=1$ZGVjb3lzYWx0ZGVjb3k$8xFNwqFUrBBRlMDa+kHKoXh1qEDyRpDS5nAQKPPgIKc\"\nlogin_hours = [\"Mon-Fri 08:00-18:00\"]\ndeny_from = [\"192.0.2.0/24\"]\n";
    std::fs::write(d.join("ferry.toml"), config).expect("config");
    let explain = |args: &[&str]| {
        let mut all = vec!["policy", "explain"];
        all.extend_from_slice(args);
        let out = ferry_in(d, &all, "");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // bob: the group "readers" grants list,download at /; his own rule at /inbox.
    let (status, out, _) = explain(&["bob", "download", "/doc.txt"]);
    assert_eq!(status, Some(0), "{out}");
    assert!(out.starts_with("allow: bob download /doc.txt"), "{out}");
    assert!(
        out.contains("allowed by the rule of group readers at /"),
        "{out}"
    );
    let (status, out, _) = explain(&["bob", "download", "/inbox/up.txt"]);
    assert_eq!(status, Some(3), "{out}");
    assert!(
        out.contains(
            "DENIED by the user's own rule at /inbox, which grants only list,upload,mkdir"
        ),
        "{out}"
    );
    let (status, out, _) = explain(&["bob", "delete", "/doc.txt"]);
    assert_eq!(status, Some(3));
    assert!(out.contains("group readers"), "{out}");
    // Login rules, at their boundaries.
    let (status, out, _) = explain(&["night", "login", "--at", "2026-11-23 17:59"]);
    assert_eq!(status, Some(0), "{out}");
    let (status, out, _) = explain(&["night", "login", "--at", "2026-11-23 18:00"]);
    assert_eq!(status, Some(3), "{out}");
    assert!(
        out.contains("login_hours") && out.contains("Mon-Fri 08:00-18:00"),
        "{out}"
    );
    let (status, out, _) = explain(&[
        "night",
        "list",
        "/",
        "--from",
        "192.0.2.255",
        "--at",
        "2026-11-23 12:00",
    ]);
    assert_eq!(status, Some(3));
    assert!(
        out.contains("deny_from") && out.contains("192.0.2.0/24"),
        "{out}"
    );
    // Mistakes are errors, not answers.
    let (status, _, err) = explain(&["nobody", "list", "/"]);
    assert_eq!(status, Some(1));
    assert!(err.starts_with("error: user `nobody`"), "{err}");
    let (status, _, err) = explain(&["bob", "fly", "/"]);
    assert_eq!(status, Some(1));
    assert!(err.contains("unknown action `fly`"), "{err}");
}

#[test]
fn system_users_log_in_with_the_host_password() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let home = d.join("home/sysbob");
    std::fs::create_dir_all(&home).expect("home");
    std::fs::write(d.join("home/secret"), b"not bob's").expect("secret");
    // As root, a uid of its own shows that files are handed to the user; otherwise
    // our own uid stands in.
    let root = rustix::process::geteuid().is_root();
    let (uid, gid) = if root {
        (4242, 4242)
    } else {
        (
            rustix::process::getuid().as_raw(),
            rustix::process::getgid().as_raw(),
        )
    };
    if root {
        std::os::unix::fs::chown(&home, Some(uid), Some(gid)).expect("chown home");
    }
    let sha512 = sha512_crypt("host-pw");
    // yescrypt, Debian's default for /etc/shadow, made by the host's own
    // libxcrypt as passwd(1) would.
    let yescrypt = crate::support::run_ok(
        std::process::Command::new("python3").args([
            "-c",
            "import ctypes, ctypes.util\n\
             c = ctypes.CDLL(ctypes.util.find_library('crypt'))\n\
             c.crypt_gensalt.restype = c.crypt.restype = ctypes.c_char_p\n\
             c.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int]\n\
             c.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]\n\
             print(c.crypt(b'yes-pw', c.crypt_gensalt(b'$y$', 0, None, 0)).decode())",
        ]),
        std::time::Duration::from_secs(20),
    )
    .trim()
    .to_owned();
    assert!(yescrypt.starts_with("$y$"), "{yescrypt}");
    let h = home.display();
    std::fs::write(
        d.join("passwd"),
        format!(
            "root:x:0:0:root:{h}:/bin/bash\nsysbob:x:{uid}:{gid}::{h}:/bin/bash\nsyssvc:x:999:999::{h}:/usr/sbin/nologin\nsyslock:x:1001:1001::{h}:/bin/bash\nsysyes:x:{uid}:{gid}::{h}:/bin/bash\n"
        ),
    )
    .expect("passwd");
    std::fs::write(
        d.join("shadow"),
        format!("root:{sha512}:1::::::\nsysbob:{sha512}:1::::::\nsyssvc:{sha512}:1::::::\nsyslock:!{sha512}:1::::::\nsysyes:{yescrypt}:1::::::\n"),
    )
    .expect("shadow");
    std::fs::write(
        d.join("ferry.toml"),
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[accounts]\nstore = \"config\"\nsystem_users = true\nsystem_passwd_file = \"passwd\"\nsystem_shadow_file = \"shadow\"\n",
    )
    .expect("config");
    let server = serve_in(dir);
    assert_eq!(login_code(&server, "sysbob", "wrong"), "530");
    assert_eq!(login_code(&server, "sysyes", "yes-pw"), "230");
    // With store = "config" no usage is on record outside the server.
    let shown = ferry_ok(server.dir.path(), &["user", "show", "sysbob", "--json"], "");
    assert!(
        shown.contains("\"sysbob\"") && !shown.contains("usage"),
        "{shown}"
    );
    assert_eq!(login_code(&server, "sysyes", "host-pw"), "530");
    for refused in ["root", "syssvc", "syslock"] {
        assert_eq!(
            login_code(&server, refused, "host-pw"),
            "530",
            "{refused} must not log in"
        );
    }
    let mut c = RawControl::login(&server, "sysbob", "host-pw");
    assert!(c.cmd("PWD").starts_with("257 \"/\""));
    assert_eq!(upload(&mut c, "report.txt", b"from ftp"), "226");
    assert_eq!(code(&c.cmd("MKD sub")), "257");
    let home = server.dir.path().join("home/sysbob");
    assert_eq!(
        std::fs::read(home.join("report.txt")).expect("uploaded into the host home"),
        b"from ftp"
    );
    for made in ["report.txt", "sub"] {
        let meta = std::fs::metadata(home.join(made)).expect("meta");
        assert_eq!(
            (meta.uid(), meta.gid()),
            (uid, gid),
            "{made} must belong to the user"
        );
    }
    // The host home is a jail like any other.
    let _data = c.pasv_data();
    let r = c.cmd("RETR ../secret");
    assert_eq!(code(&r), "550", "{r}");
}

/// Host accounts over SFTP with the keys of their own
/// `~/.ssh/authorized_keys` (root only: the home must belong to the account,
/// and uid 0 never logs in): OpenSSH's `sftp` signs in with the key and
/// uploads into the host home as the account; a `~/.ssh` others may write to
/// gets the key refused, with the reason in the server's log; with
/// `system_auth = "pam"`, PAM's account step decides after the key, as
/// OpenSSH runs it.
#[test]
fn system_users_sign_in_over_sftp_with_their_own_authorized_keys() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if !running_as_root("handing a home to another uid") {
        return;
    }
    let keys = tempfile::tempdir().expect("keys");
    crate::sftp_client::ssh_keygen(&keys.path().join("kim"), "ed25519", "");
    crate::sftp_client::ssh_keygen(&keys.path().join("other"), "ed25519", "");
    let work = tempfile::tempdir().expect("work");
    let w = work.path();
    std::fs::write(w.join("note.txt"), "from a host account's key").expect("note");
    // A server of host accounts: hostkim (uid 4343) with her key in her home.
    let serve = |auth: &str| {
        let dir = tempfile::tempdir().expect("tmp");
        let d = dir.path();
        let home = d.join("home/hostkim");
        std::fs::create_dir_all(home.join(".ssh")).expect("home");
        std::fs::copy(
            keys.path().join("kim.pub"),
            home.join(".ssh/authorized_keys"),
        )
        .expect("authorized_keys");
        for p in [
            &home,
            &home.join(".ssh"),
            &home.join(".ssh/authorized_keys"),
        ] {
            std::os::unix::fs::chown(p, Some(4343), Some(4343)).expect("chown");
        }
        std::fs::write(
            d.join("passwd"),
            format!("hostkim:x:4343:4343::{}:/bin/sh\n", home.display()),
        )
        .expect("passwd");
        std::fs::write(
            d.join("shadow"),
            format!("hostkim:{}:1::::::\n", sha512_crypt("host-pw")),
        )
        .expect("shadow");
        std::fs::write(
            d.join("ferry.toml"),
            format!(
                "[server]\nlisten = [\"127.0.0.1:0\"]\n[sftp]\nlisten = [\"127.0.0.1:0\"]\n\
                 [accounts]\nstore = \"config\"\nsystem_users = true\n\
                 system_passwd_file = \"passwd\"\nsystem_shadow_file = \"shadow\"\n{auth}"
            ),
        )
        .expect("config");
        serve_in(dir)
    };
    let sftp = |server: &FerryServer, key: &str, batch: &str| {
        crate::sftp::openssh_sftp_as(
            crate::sftp::sftp_addr(server),
            "hostkim",
            crate::sftp::SshAuth::Key(&keys.path().join(key)),
            w,
            batch,
        )
    };

    let server = serve("");
    let out = sftp(&server, "kim", "put note.txt\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stored = server.dir.path().join("home/hostkim/note.txt");
    assert_eq!(
        std::fs::read_to_string(&stored).expect("stored in the host home"),
        "from a host account's key"
    );
    assert_eq!(std::fs::metadata(&stored).expect("meta").uid(), 4343);
    // Someone else's key is declined.
    assert!(!sftp(&server, "other", "ls\n").status.success());
    // ~/.ssh writable by the group: the file is not trusted, and the log
    // says why.
    let ssh_dir = server.dir.path().join("home/hostkim/.ssh");
    std::fs::set_permissions(&ssh_dir, std::fs::Permissions::from_mode(0o770)).expect("chmod");
    assert!(!sftp(&server, "kim", "ls\n").status.success());
    server.wait_for_log("bad modes");
    std::fs::set_permissions(&ssh_dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    assert!(sftp(&server, "kim", "ls\n").status.success());
    drop(server);

    // Switched off: the key is not read.
    let server = serve("system_authorized_keys = false\n");
    assert!(!sftp(&server, "kim", "ls\n").status.success());
    drop(server);

    // PAM: no password passes its authentication (pam_deny), and the key
    // login still goes through its account step.
    let name = format!("ferry-keys-{}", std::process::id());
    let auth = "auth requisite pam_deny.so\n";
    let service = PamService::write(&name, &format!("{auth}account required pam_permit.so\n"));
    let server = serve(&format!(
        "system_auth = \"pam\"\npam_service = \"{}\"\n",
        service.name
    ));
    assert!(
        sftp(&server, "kim", "ls\n").status.success(),
        "account step permits"
    );
    std::fs::write(
        Path::new("/etc/pam.d").join(&service.name),
        format!("{auth}account required pam_deny.so\n"),
    )
    .expect("rewrite");
    assert!(
        !sftp(&server, "kim", "ls\n").status.success(),
        "signed in although PAM's account step refuses"
    );
}

/// A sha512-crypt hash of `password` (`$6$`, as /etc/shadow holds), made by
/// openssl.
fn sha512_crypt(password: &str) -> String {
    crate::support::run_ok(
        std::process::Command::new("openssl").args([
            "passwd",
            "-6",
            "-salt",
            "ferrysalt",
            password,
        ]),
        Duration::from_secs(20),
    )
    .trim()
    .to_owned()
}
