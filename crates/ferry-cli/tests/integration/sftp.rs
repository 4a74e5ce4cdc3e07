//! SFTP over SSH (`[sftp] listen`): ferry's server driven by the SFTP clients
//! people use, OpenSSH's `sftp` and curl (libssh2), with the same accounts,
//! files, permission rules, quotas and logs as FTP.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use crate::client::{client, client_ok};
use crate::sftp_client::{certify, host_fingerprint, ssh_keygen};
use crate::support::{
    FerryServer, RawControl, curl, ferry_ok, hash, make_fifo, random_bytes, run, serve_in,
};

const LIMIT: Duration = Duration::from_secs(60);

pub(crate) fn config() -> String {
    let pw = hash("secret");
    format!(
        r#"
[server]
listen = ["127.0.0.1:0"]

[sftp]
listen = ["127.0.0.1:0"]

[log]
audit = "audit.jsonl"
xferlog = "xferlog"

[[users]]
name = "alice"
password_hash = "{pw}"
home = "/alice"

[[users]]
name = "bob"
password_hash = "{pw}"
home = "/bob"
permissions = {{ "/" = ["list", "download"], "/sealed" = ["download"] }}

[[users]]
name = "carol"
password_hash = "{pw}"
home = "/carol"
quota_bytes = "100 KiB"
denied_files = ["*.exe"]
"#
    )
}

pub(crate) fn sftp_addr(server: &FerryServer) -> SocketAddr {
    let line = server.wait_for_log("ferry: serving SFTP on ");
    line.rsplit(' ')
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no SFTP address in {line:?}"))
}

/// How OpenSSH's `sftp` signs in.
#[derive(Clone, Copy)]
pub(crate) enum SshAuth<'a> {
    /// This password (given through SSH_ASKPASS) by the `password` method,
    /// no keys.
    Password(&'a str),
    /// This password as the answer to keyboard-interactive's questions (also
    /// through SSH_ASKPASS), no keys.
    KeyboardInteractive(&'a str),
    /// This private key file only: no agent, no password.
    Key(&'a Path),
    /// The same, signing only with this algorithm (`ssh-rsa`: SHA-1).
    KeySignedAs(&'a Path, &'a str),
}

/// Runs OpenSSH's `sftp` in batch mode as `user` with `password`, from `dir`.
fn openssh_sftp(addr: SocketAddr, user: &str, password: &str, dir: &Path, batch: &str) -> Output {
    openssh_sftp_as(addr, user, SshAuth::Password(password), dir, batch)
}

/// Runs OpenSSH's `sftp` in batch mode as `user`, signing in by `auth`, from
/// `dir`.
pub(crate) fn openssh_sftp_as(
    addr: SocketAddr,
    user: &str,
    auth: SshAuth<'_>,
    dir: &Path,
    batch: &str,
) -> Output {
    std::fs::write(dir.join("batch"), batch).expect("batch");
    run(
        &mut openssh_sftp_command(addr, user, auth, dir, "batch"),
        LIMIT,
    )
}

/// OpenSSH's `sftp` as `user`, signing in by `auth`, in `dir`, reading its
/// commands from the file `batch` there (`-`: standard input).
fn openssh_sftp_command(
    addr: SocketAddr,
    user: &str,
    auth: SshAuth<'_>,
    dir: &Path,
    batch: &str,
) -> Command {
    let mut sftp = Command::new("sftp");
    sftp.current_dir(dir).args([
        "-oStrictHostKeyChecking=no",
        "-oUserKnownHostsFile=/dev/null",
    ]);
    match auth {
        SshAuth::Password(password) | SshAuth::KeyboardInteractive(password) => {
            answering_password(&mut sftp, dir, password).args([
                // -b turns BatchMode on, which forbids passwords; the
                // first value given wins.
                "-oBatchMode=no",
                "-oPubkeyAuthentication=no",
                "-oNumberOfPasswordPrompts=1",
            ]);
            sftp.arg(match auth {
                SshAuth::KeyboardInteractive(_) => {
                    "-oPreferredAuthentications=keyboard-interactive"
                }
                _ => "-oPreferredAuthentications=password",
            });
        }
        SshAuth::Key(key) | SshAuth::KeySignedAs(key, _) => {
            sftp.args([
                "-oIdentitiesOnly=yes",
                "-oIdentityAgent=none",
                "-oPreferredAuthentications=publickey",
                "-i",
            ])
            .arg(key);
            if let SshAuth::KeySignedAs(_, algorithm) = auth {
                sftp.arg(format!("-oPubkeyAcceptedAlgorithms={algorithm}"));
            }
        }
    }
    sftp.args([
        "-P",
        &addr.port().to_string(),
        "-b",
        batch,
        &format!("{user}@{}", addr.ip()),
    ]);
    sftp
}

/// Makes OpenSSH (and what runs it: sftp, sshfs) answer every password
/// prompt with `password`, through an SSH_ASKPASS script written in `dir`.
fn answering_password<'a>(cmd: &'a mut Command, dir: &Path, password: &str) -> &'a mut Command {
    let askpass = dir.join("askpass.sh");
    std::fs::write(&askpass, format!("#!/bin/sh\necho '{password}'\n")).expect("askpass");
    std::fs::set_permissions(
        &askpass,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .expect("chmod askpass");
    cmd.env("SSH_ASKPASS", &askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("DISPLAY", "none")
}

/// A program's standard output and error, together.
pub(crate) fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A file system mounted with sshfs; unmounted when dropped.
struct SshfsMount(std::path::PathBuf);

impl Drop for SshfsMount {
    fn drop(&mut self) {
        let _ = Command::new("fusermount").arg("-u").arg(&self.0).status();
    }
}

/// Mounts alice's home (password "secret") with sshfs at `work/mnt`, with
/// `options` added to its `-o` list (starting with a comma).
fn sshfs_as_alice(
    addr: SocketAddr,
    work: &Path,
    options: &str,
) -> (std::path::PathBuf, SshfsMount) {
    let mnt = work.join("mnt");
    std::fs::create_dir_all(&mnt).expect("mnt");
    let mounted = run(
        answering_password(&mut Command::new("sshfs"), work, "secret")
            .args(["-p", &addr.port().to_string()])
            .arg(format!("alice@{}:/", addr.ip()))
            .arg(&mnt)
            .args([
                "-o",
                &format!(
                    "StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null,PubkeyAuthentication=no{options}"
                ),
            ]),
        LIMIT,
    );
    assert!(
        mounted.status.success(),
        "sshfs (.ci/run installs it; it needs /dev/fuse):\n{}",
        text(&mounted)
    );
    let mount = SshfsMount(mnt.clone());
    (mnt, mount)
}

/// A file being written is found under its name by the channel writing it
/// (sshfs looks it up right after OPEN, before CLOSE puts it there), a
/// size cuts or grows a file (sshfs's `truncate`), by name or through the
/// handle writing it, writes land where their offsets say, in any order
/// (sshfs writes pages back as the kernel hands them over), and a write
/// inside a file keeps what follows it: paramiko on the wire, then sshfs as
/// people use it.
#[test]
fn files_are_found_while_written_sized_and_written_in_place() {
    let server = FerryServer::start_with(&config());
    let addr = sftp_addr(&server);
    let home = server.files().join("alice");
    std::fs::create_dir_all(&home).expect("home");
    for name in ["cut.txt", "part.txt", "keep.txt", "app.txt"] {
        std::fs::write(home.join(name), "abcdef").expect("file");
    }
    std::fs::create_dir_all(server.files().join("bob")).expect("bob");
    std::fs::write(server.files().join("bob/r.txt"), "read only").expect("r");
    let script = r#"
import sys, paramiko
def session(user):
    t = paramiko.Transport(("127.0.0.1", int(sys.argv[1])))
    t.connect(username=user, password="secret")
    return paramiko.SFTPClient.from_transport(t)
s = session("alice")
f = s.open("new.txt", "w")
print("opened:", s.stat("new.txt").st_size, s.lstat("new.txt").st_size)
f.write(b"hello")
f.flush()
print("written:", s.stat("new.txt").st_size, f.stat().st_size)
s.truncate("new.txt", 5)
f.close()
f = s.open("app.txt", "a")
f.write(b"gh")
f.flush()
s.truncate("app.txt", 2)
print("cut by name while appending:", s.stat("app.txt").st_size)
f.write(b"ij")
f.close()
s.truncate("cut.txt", 3)
print("cut:", s.open("cut.txt").read().decode())
s.truncate("cut.txt", 5)
try:
    session("bob").truncate("r.txt", 1)
    print("bob resized")
except IOError as e:
    print("refused:", e)
f = s.open("part.txt", "r+")
f.truncate(2)
print("to the writer:", f.stat().st_size)
f.seek(2)
f.write(b"XY")
f.close()
f = s.open("keep.txt", "r+")
f.seek(1)
f.write(b"!")
f.close()
f = s.open("ooo.bin", "w")
f.seek(5)
f.write(b"world")
f.seek(0)
f.write(b"hello")
f.close()
print("done")
"#;
    let said = paramiko(addr, script);
    assert!(said.contains("opened: 0 0"), "{said}");
    assert!(said.contains("written: 5 5"), "{said}");
    assert!(said.contains("cut by name while appending: 2"), "{said}");
    assert!(said.contains("cut: abc"), "{said}");
    assert_eq!(said.matches("refused:").count(), 1, "{said}");
    assert!(said.contains("to the writer: 2"), "{said}");
    let stored = |name: &str| std::fs::read_to_string(home.join(name)).expect("stored");
    assert_eq!(stored("new.txt"), "hello");
    assert_eq!(stored("cut.txt"), "abc\0\0");
    assert_eq!(stored("part.txt"), "abXY");
    assert_eq!(
        stored("keep.txt"),
        "a!cdef",
        "written in place, the tail kept"
    );
    assert_eq!(stored("app.txt"), "abij");
    assert_eq!(stored("ooo.bin"), "helloworld");
    assert_eq!(
        std::fs::read_to_string(server.files().join("bob/r.txt")).expect("r"),
        "read only"
    );

    // sshfs (FUSE, through OpenSSH's ssh) mounts alice's home.
    let work = tempfile::tempdir().expect("work");
    let w = work.path();
    let (mnt, _mount) = sshfs_as_alice(addr, w, "");
    let shell = |script: &str| {
        run(
            Command::new("sh").args(["-c", script]).current_dir(&mnt),
            LIMIT,
        )
    };
    let big = random_bytes(300_000, 9);
    std::fs::write(w.join("big.bin"), &big).expect("big");
    let out = shell(&format!(
        "echo hello > made.txt && cat made.txt && cp {} copy.bin && \
         printf abcdef > edit.txt && truncate -s 3 edit.txt && printf XY >> edit.txt && \
         cat edit.txt && echo",
        w.join("big.bin").display()
    ));
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("hello\nabcXY"), "{}", text(&out));
    // Grown, written inside, and written out of order past the end.
    let out = shell(
        "truncate -s 8 edit.txt && printf Z | dd of=edit.txt bs=1 seek=1 conv=notrunc && \
         python3 -c \"import os; fd = os.open('sparse.bin', os.O_WRONLY | os.O_CREAT); \
         os.pwrite(fd, b'B' * 100000, 200000); os.pwrite(fd, b'A' * 100000, 0); os.close(fd)\"",
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(stored("made.txt"), "hello\n");
    assert_eq!(stored("edit.txt"), "aZcXY\0\0\0", "written in place");
    let sparse = std::fs::read(home.join("sparse.bin")).expect("sparse");
    let want: Vec<u8> = [(b'A', 100_000), (0, 100_000), (b'B', 100_000)]
        .iter()
        .flat_map(|&(byte, n)| std::iter::repeat_n(byte, n))
        .collect();
    assert!(sparse == want, "sparse.bin: {} bytes", sparse.len());
    let copied = std::fs::read(home.join("copy.bin")).expect("copy");
    assert!(copied == big, "copy.bin differs ({} bytes)", copied.len());
}

/// READs on two files, WRITEs, a listing and lookups run side by side on
/// one channel (the server answers each as it ends; draft-02 lets replies
/// come in any order): paramiko prefetching two files at once while it
/// uploads a third with pipelined WRITEs, writes into a fourth it also has
/// open to read (and reads what it wrote through that handle), and looks
/// up, opens and reads a fifth; and sshfs reading two files, listing a
/// directory, and looking up and reading its files together: every byte,
/// name and size right. alice's download and upload rates keep each READ
/// and WRITE waiting a while, as a slow storage would, so that the
/// requests of the files are in flight together (that they overlap at all
/// is shown in memory:
/// `sftp::requests::a_slow_read_holds_neither_other_handles_nor_lookups`,
/// `…::a_slow_write_holds_neither_reads_of_other_files_nor_lookups`).
#[test]
fn two_files_a_listing_and_lookups_are_answered_side_by_side_on_one_channel() {
    let server = FerryServer::start_with(&config().replace(
        "home = \"/alice\"",
        "home = \"/alice\"\ndownload_rate = \"8 MiB/s\"\nupload_rate = \"8 MiB/s\"",
    ));
    let addr = sftp_addr(&server);
    let home = server.files().join("alice");
    std::fs::create_dir_all(home.join("sub")).expect("home");
    let (one, two) = (random_bytes(1 << 20, 21), random_bytes(1 << 20, 22));
    std::fs::write(home.join("one.bin"), &one).expect("one");
    std::fs::write(home.join("two.bin"), &two).expect("two");
    std::fs::write(home.join("edit.bin"), vec![b'o'; 65_536]).expect("edit");
    for i in 0..50 {
        std::fs::write(home.join(format!("sub/f{i:02}")), "x").expect("entry");
    }
    let script = format!(
        r#"
import sys, paramiko
t = paramiko.Transport(("127.0.0.1", int(sys.argv[1])))
t.connect(username="alice", password="secret")
s = paramiko.SFTPClient.from_transport(t)
a, b = s.open("one.bin"), s.open("two.bin")
a.prefetch()
b.prefetch()
up = bytes(range(256)) * 4096
w = s.open("up.bin", "w")
w.set_pipelined(True)
for i in range(0, len(up), 32768):
    w.write(up[i:i + 32768])
reading, editing = s.open("edit.bin", "r"), s.open("edit.bin", "r+")
editing.set_pipelined(True)
editing.write(b"n" * 32768)
edited = reading.read(32768)
names = s.listdir("sub")
size = s.stat("sub/f07").st_size
with s.open("sub/f03") as c:
    third = c.read()
where = s.normalize("sub/../one.bin")
got_b, got_a = b.read(), a.read()
w.close()
editing.close()
reading.close()
with s.open("up.bin") as f:
    uploaded = f.read()
print("up:", s.stat("up.bin").st_size, uploaded == up)
print("edited:", edited == b"n" * 32768)
print("names:", len(names))
print("looked up:", size, third, where)
print("one:", got_a == open("{one}", "rb").read(), "two:", got_b == open("{two}", "rb").read())
print("done")
"#,
        one = home.join("one.bin").display(),
        two = home.join("two.bin").display(),
    );
    let said = paramiko(addr, &script);
    assert!(said.contains("names: 50"), "{said}");
    assert!(said.contains("looked up: 1 b'x' /one.bin"), "{said}");
    assert!(said.contains("one: True two: True"), "{said}");
    assert!(said.contains("up: 1048576 True"), "{said}");
    assert!(
        said.contains("edited: True"),
        "a READ through another handle sees the WRITE before it: {said}"
    );
    let mut edit = vec![b'n'; 32_768];
    edit.extend(std::iter::repeat_n(b'o', 32_768));
    assert!(
        std::fs::read(home.join("edit.bin")).expect("edit") == edit,
        "edit.bin written in place"
    );

    let work = tempfile::tempdir().expect("work");
    let w = work.path();
    let (mnt, _mount) = sshfs_as_alice(addr, w, ",cache=no");
    let out = run(
        Command::new("sh")
            .args([
                "-c",
                "cat one.bin > \"$1/one\" & cat two.bin > \"$1/two\" & ls sub > \"$1/ls\" & \
                 stat -c '%n %s' sub/f0* > \"$1/stat\" & cat sub/f1* > \"$1/cat\"; wait",
                "sh",
            ])
            .arg(w)
            .current_dir(&mnt),
        LIMIT,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        std::fs::read(w.join("one")).expect("one") == one,
        "one.bin through sshfs"
    );
    assert!(
        std::fs::read(w.join("two")).expect("two") == two,
        "two.bin through sshfs"
    );
    let listed = std::fs::read_to_string(w.join("ls")).expect("ls");
    assert_eq!(listed.lines().count(), 50, "{listed}");
    let sizes = std::fs::read_to_string(w.join("stat")).expect("stat");
    let expected: Vec<String> = (0..10).map(|i| format!("sub/f0{i} 1")).collect();
    assert_eq!(sizes.lines().collect::<Vec<_>>(), expected, "{sizes}");
    let read = std::fs::read_to_string(w.join("cat")).expect("cat");
    assert_eq!(read, "x".repeat(10), "sub/f1* through sshfs");
}

#[test]
fn posix_rename_replaces_files_not_directories_and_asks_for_overwrite() {
    let server = FerryServer::start_with(&config());
    let addr = sftp_addr(&server);
    let home = server.files().join("alice");
    std::fs::create_dir_all(home.join("dir")).expect("mkdir");
    std::fs::write(home.join("a.txt"), "new").expect("a");
    std::fs::write(home.join("b.txt"), "old").expect("b");
    std::fs::write(home.join("c.txt"), "kept").expect("c");
    std::fs::write(home.join("x.txt"), "from openssh").expect("x");
    std::fs::write(home.join("y.txt"), "replaced by openssh").expect("y");
    std::fs::create_dir_all(server.files().join("bob")).expect("bob");
    std::fs::write(server.files().join("bob/r.txt"), "read only").expect("r");
    // paramiko, Python's SSH library: posix_rename sends the extension.
    let script = r#"
import sys, paramiko
def session(user):
    t = paramiko.Transport(("127.0.0.1", int(sys.argv[1])))
    t.connect(username=user, password="secret")
    return paramiko.SFTPClient.from_transport(t)
s = session("alice")
s.posix_rename("a.txt", "b.txt")
print("replaced:", s.open("b.txt").read().decode())
for attempt in [lambda: s.posix_rename("b.txt", "dir"), lambda: s.rename("b.txt", "c.txt")]:
    try:
        attempt()
        print("renamed over an existing name")
    except IOError as e:
        print("refused:", e)
bob = session("bob")
try:
    bob.posix_rename("r.txt", "s.txt")
    print("bob renamed")
except IOError as e:
    print("bob refused:", e)
print("done")
"#;
    let said = paramiko(addr, script);
    assert!(said.contains("replaced: new"), "{said}");
    assert_eq!(
        said.lines().filter(|l| l.starts_with("refused:")).count(),
        2,
        "a directory and plain RENAME's existing name are kept:\n{said}"
    );
    assert!(said.contains("bob refused:"), "{said}");
    assert!(!home.join("a.txt").exists(), "the source is gone");
    assert_eq!(
        std::fs::read_to_string(home.join("c.txt")).expect("c"),
        "kept"
    );
    assert!(home.join("dir").is_dir(), "the directory stays");
    assert!(
        server.files().join("bob/r.txt").exists(),
        "bob's file stays"
    );

    // OpenSSH's sftp renames through the extension when it is offered.
    let work = tempfile::tempdir().expect("tempdir");
    let out = openssh_sftp(addr, "alice", "secret", work.path(), "rename x.txt y.txt\n");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(home.join("y.txt")).expect("y"),
        "from openssh"
    );
    // Both renames are in the audit log.
    let audit = std::fs::read_to_string(server.dir.path().join("audit.jsonl")).expect("audit");
    assert_eq!(
        audit
            .lines()
            .filter(|l| l.contains("\"RENAME\"") && l.contains("\"code\":0"))
            .count(),
        2,
        "{audit}"
    );
}

#[test]
fn renaming_a_file_onto_itself_keeps_its_quota_usage() {
    // carol's quota is 100 KiB. A rename that "replaces" the file with
    // itself must not take the file out of her usage, or she could store
    // without bound.
    use std::io::Write;
    let server = FerryServer::start_with(&config());
    let addr = sftp_addr(&server);
    let mut c = RawControl::login(&server, "carol", "secret");
    let stor = |c: &mut RawControl, name: &str, len: usize| {
        let mut d = c.pasv_data();
        let r = c.cmd(&format!("STOR {name}"));
        assert!(r.starts_with("150"), "{r}");
        let _ = d.write_all(&random_bytes(len, len as u64));
        drop(d);
        c.reply()
    };
    let r = stor(&mut c, "a.bin", 80 * 1024);
    assert!(r.starts_with("226"), "{r}");
    assert!(c.cmd("RNFR a.bin").starts_with("350"));
    let r = c.cmd("RNTO a.bin");
    assert!(r.starts_with("250"), "{r}");
    let r = stor(&mut c, "b.bin", 40 * 1024);
    assert!(r.starts_with("552"), "80 + 40 KiB is over 100 KiB: {r}");
    drop(c);

    // The same over SFTP's posix-rename.
    let script = r#"
import io, sys, paramiko
t = paramiko.Transport(("127.0.0.1", int(sys.argv[1])))
t.connect(username="carol", password="secret")
s = paramiko.SFTPClient.from_transport(t)
s.posix_rename("a.bin", "a.bin")
try:
    s.putfo(io.BytesIO(b"x" * 40 * 1024), "c.bin")
    print("stored over the quota")
except IOError as e:
    print("refused:", e)
print("done")
"#;
    let said = paramiko(addr, script);
    assert!(said.contains("refused:"), "{said}");
    assert_eq!(
        std::fs::metadata(server.files().join("carol/a.bin"))
            .expect("a.bin")
            .len(),
        80 * 1024
    );
    assert!(!server.files().join("carol/b.bin").exists());
    assert!(!server.files().join("carol/c.bin").exists());
}

/// Runs a Python script (paramiko) with the SFTP port as its argument;
/// answers what it printed once it ran to its end (its last line prints
/// `done`).
pub(crate) fn paramiko(addr: SocketAddr, script: &str) -> String {
    let out = run(
        Command::new("python3").args(["-c", script, &addr.port().to_string()]),
        LIMIT,
    );
    let said = text(&out);
    assert!(out.status.success() && said.contains("done"), "{said}");
    said
}

/// The audit log once `done` holds for it, or after ten seconds: the log's
/// thread may write a record after the client that caused it has exited.
pub(crate) fn audit_once(server: &FerryServer, done: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let audit = std::fs::read_to_string(server.dir.path().join("audit.jsonl")).expect("audit");
        if done(&audit) || std::time::Instant::now() > deadline {
            return audit;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The figures of OpenSSH `sftp`'s `df` (KiB): size, used, available.
fn df_figures(said: &str) -> (u64, u64, u64) {
    let mut lines = said.lines().skip_while(|l| !l.contains("Avail"));
    let figures: Vec<u64> = lines
        .nth(1)
        .unwrap_or_else(|| panic!("no df figures in:\n{said}"))
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    match figures[..] {
        [size, used, avail, ..] => (size, used, avail),
        _ => panic!("df figures missing in:\n{said}"),
    }
}

#[test]
fn df_shows_the_file_system_within_a_users_quota() {
    let server = FerryServer::start_with(&config());
    let addr = sftp_addr(&server);
    std::fs::create_dir_all(server.files().join("alice")).expect("alice");
    std::fs::create_dir_all(server.files().join("carol")).expect("carol");
    // Measured into carol's usage at her first login.
    std::fs::write(
        server.files().join("carol/old.bin"),
        random_bytes(30 * 1024, 24),
    )
    .expect("old");
    let stat = run(
        Command::new("stat")
            .args(["-f", "-c", "%S %b"])
            .arg(server.files()),
        LIMIT,
    );
    let fs: Vec<u64> = text(&stat)
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    let [unit, blocks] = fs[..] else {
        panic!("stat -f: {}", text(&stat));
    };
    let work = tempfile::tempdir().expect("tempdir");

    let out = openssh_sftp(addr, "alice", "secret", work.path(), "df\n");
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    let (size, used, avail) = df_figures(&said);
    assert_eq!(
        size,
        unit * blocks / 1024,
        "the file system's size:\n{said}"
    );
    assert!(used + avail <= size && avail > 0, "{said}");

    // carol's quota is 100 KiB and she stores 30: the quota is the size.
    let out = openssh_sftp(addr, "carol", "secret", work.path(), "df\n");
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    let (size, used, avail) = df_figures(&said);
    assert_eq!(size, 100 * 1024 / unit * unit / 1024, "{said}");
    assert_eq!(avail, 70 * 1024 / unit * unit / 1024, "{said}");
    assert_eq!(used, size - avail, "{said}");

    // A path that is not there is an error (which OpenSSH's `df` does not
    // print), not figures; so is one the user may not list (bob may only
    // download in /sealed), as STAT would be.
    let out = openssh_sftp(addr, "alice", "secret", work.path(), "df /missing\n");
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(!said.contains("Avail"), "{said}");
    std::fs::create_dir_all(server.files().join("bob/sealed")).expect("sealed");
    let out = openssh_sftp(addr, "bob", "secret", work.path(), "df /\n");
    assert!(out.status.success(), "bob lists /: {}", text(&out));
    let out = openssh_sftp(addr, "bob", "secret", work.path(), "df /sealed\n");
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(!said.contains("Avail"), "{said}");
}

#[test]
fn openssh_moves_large_files_with_its_whole_pipeline() {
    // OpenSSH's sftp keeps 64 requests of up to 255 KiB in flight (the
    // sizes limits@openssh.com allows). russh hands a channel's incoming
    // data to the SFTP task through a queue of 100 messages, which its
    // notices of the client's window adjustments fill too; a task that read
    // requests only between replies let that queue fill while a reply waited
    // for the client's window, and the connection stopped for good (every
    // download of 256 MiB stopped at about 30 MB).
    let server = FerryServer::start_with(&config());
    let addr = sftp_addr(&server);
    let home = server.files().join("alice");
    std::fs::create_dir_all(&home).expect("alice");
    let big = random_bytes(64 << 20, 41);
    std::fs::write(home.join("big.bin"), &big).expect("big");
    let work = tempfile::tempdir().expect("tempdir");
    std::fs::write(work.path().join("up.bin"), &big).expect("up");
    let out = openssh_sftp(
        addr,
        "alice",
        "secret",
        work.path(),
        "get big.bin got.bin\nput up.bin up.bin\n",
    );
    assert!(out.status.success(), "{}", text(&out));
    let got = std::fs::read(work.path().join("got.bin")).expect("got");
    assert!(
        got == big,
        "downloaded {} of {} bytes",
        got.len(),
        big.len()
    );
    let up = std::fs::read(home.join("up.bin")).expect("uploaded");
    assert!(up == big, "uploaded {} of {} bytes", up.len(), big.len());
}

#[test]
fn fsync_makes_uploads_durable_and_fstatvfs_answers_for_handles() {
    let server = FerryServer::start_with(&config());
    let addr = sftp_addr(&server);
    let home = server.files().join("alice");
    std::fs::create_dir_all(&home).expect("alice");
    std::fs::create_dir_all(server.files().join("carol")).expect("carol");
    std::fs::write(home.join("read.txt"), "read me").expect("read.txt");
    let work = tempfile::tempdir().expect("tempdir");
    let data = random_bytes(300_000, 31);
    std::fs::write(work.path().join("data.bin"), &data).expect("data");

    // OpenSSH's `put -f` sends fsync@openssh.com before its CLOSE when the
    // server offers it (and says nothing when it does not): the audit log
    // shows whether it came.
    let out = openssh_sftp(
        addr,
        "alice",
        "secret",
        work.path(),
        "put -f data.bin synced.bin\nput data.bin plain.bin\n",
    );
    assert!(out.status.success(), "{}", text(&out));
    for name in ["synced.bin", "plain.bin"] {
        let stored = std::fs::read(home.join(name)).expect("stored");
        assert!(stored == data, "{name}: {} bytes", stored.len());
    }

    // paramiko: fsync on a handle mid-upload, on a read handle, on a
    // directory's and on none; fstatvfs on a file's and a directory's
    // handle against statvfs of the path; carol's quota in fstatvfs.
    let script = r#"
import struct, sys, paramiko
from paramiko.sftp import CMD_EXTENDED, CMD_OPENDIR, CMD_CLOSE
def session(user):
    t = paramiko.Transport(("127.0.0.1", int(sys.argv[1])))
    t.connect(username=user, password="secret")
    return paramiko.SFTPClient.from_transport(t)
def ext(s, name, arg):
    t, msg = s._request(CMD_EXTENDED, name, arg)
    return msg
def vfs(msg):
    return struct.unpack(">11Q", msg.get_remainder()[:88])
def attempt(label, f):
    try:
        f()
        print(label, "ok")
    except IOError as e:
        print(label, "refused:", e)
s = session("alice")
f = s.open("mid.bin", "w")
f.write(b"first ")
attempt("fsync mid-upload", lambda: ext(s, "fsync@openssh.com", f.handle))
f.write(b"second")
f.close()
print("mid.bin:", s.open("mid.bin").read().decode())
r = s.open("read.txt")
attempt("fsync read handle", lambda: ext(s, "fsync@openssh.com", r.handle))
t, msg = s._request(CMD_OPENDIR, ".")
d = msg.get_binary()
attempt("fsync dir handle", lambda: ext(s, "fsync@openssh.com", d))
attempt("fsync no handle", lambda: ext(s, "fsync@openssh.com", b"nonesuch"))
attempt("fstatvfs no handle", lambda: ext(s, "fstatvfs@openssh.com", b"nonesuch"))
by_path = vfs(ext(s, "statvfs@openssh.com", "."))
for label, h in [("file", r.handle), ("dir", d)]:
    got = vfs(ext(s, "fstatvfs@openssh.com", h))
    # Block size, fragment size, blocks, files, file system id, flags,
    # name length: the same file system as the path's.
    same = [got[i] == by_path[i] for i in (0, 1, 2, 5, 8, 9, 10)]
    print("fstatvfs", label, "same" if all(same) else "differs: %r %r" % (got, by_path))
s._request(CMD_CLOSE, d)
r.close()
c = session("carol")
w = c.open("q.bin", "w")
got = vfs(ext(c, "fstatvfs@openssh.com", w.handle))
print("carol size", got[1] * got[2])
w.close()
print("done")
"#;
    let said = paramiko(addr, script);
    for expected in [
        "fsync mid-upload ok",
        "mid.bin: first second",
        "fsync read handle ok",
        "fsync dir handle refused:",
        "fsync no handle refused:",
        "fstatvfs no handle refused:",
        "fstatvfs file same",
        "fstatvfs dir same",
    ] {
        assert!(said.contains(expected), "{expected:?} in:\n{said}");
    }
    let carol: u64 = said
        .lines()
        .find_map(|l| l.strip_prefix("carol size "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no carol size in:\n{said}"));
    assert!(
        carol <= 100 * 1024 && carol > 90 * 1024,
        "carol's quota of 100 KiB is her file system's size: {carol}"
    );

    // The audit log: one FSYNC for `put -f`, none for plain `put`, and
    // paramiko's four (two answered OK, two refused).
    let fsync = r#""command":"FSYNC""#;
    let audit = audit_once(&server, |audit| audit.matches(fsync).count() >= 5);
    let fsyncs: Vec<&str> = audit.lines().filter(|l| l.contains(fsync)).collect();
    assert_eq!(fsyncs.len(), 5, "{audit}");
    assert!(
        fsyncs
            .iter()
            .any(|l| l.contains("synced.bin") && l.contains("\"code\":0")),
        "{audit}"
    );
    assert!(!fsyncs.iter().any(|l| l.contains("plain.bin")), "{audit}");
    assert!(
        fsyncs
            .iter()
            .any(|l| l.contains("mid.bin") && l.contains("\"code\":0")),
        "{audit}"
    );
    assert_eq!(
        fsyncs.iter().filter(|l| l.contains("\"code\":4")).count(),
        2,
        "the directory's handle and none: {audit}"
    );
}

#[test]
fn openssh_sftp_and_curl_share_accounts_files_and_rules_with_ftp() {
    let server = FerryServer::start_with(&config());
    let addr = sftp_addr(&server);
    let work = tempfile::tempdir().expect("tempdir");
    let big = random_bytes(3_000_000, 7);
    std::fs::write(work.path().join("big.bin"), &big).expect("write");
    // A partial copy on the server, for reput (resume by appending).
    std::fs::write(server.files().join("alice/part.bin"), &big[..1_000_000]).expect("part");

    // A partial local copy, for reget (reads from an offset).
    std::fs::write(work.path().join("reget.bin"), &big[..1_234_567]).expect("partial");
    // A FIFO in the home: not a regular file by its attributes, so OpenSSH
    // does not open it (ferry would refuse the OPEN: sftp::requests tests;
    // the `-` lets the batch go on).
    make_fifo(&server.files().join("alice/pipe"));

    // OpenSSH sftp: upload, listing, directories, rename, download, resume.
    let out = openssh_sftp(
        addr,
        "alice",
        "secret",
        work.path(),
        "put big.bin\nls -l\nmkdir d\nrename big.bin d/moved.bin\nls -l d\n\
         get d/moved.bin back.bin\nreget d/moved.bin reget.bin\n-get pipe pipe.bin\n\
         reput big.bin part.bin\nput big.bin gone.bin\nrm gone.bin\n\
         mkdir empty\nrmdir empty\n",
    );
    let said = text(&out);
    assert!(out.status.success(), "sftp failed:\n{said}");
    assert!(said.contains("3000000"), "ls -l shows sizes:\n{said}");
    assert!(said.contains("moved.bin"), "{said}");
    let stored = std::fs::read(server.files().join("alice/d/moved.bin")).expect("stored");
    assert!(stored == big, "uploaded {} bytes", stored.len());
    let back = std::fs::read(work.path().join("back.bin")).expect("downloaded");
    assert!(back == big, "downloaded {} bytes", back.len());
    let resumed = std::fs::read(work.path().join("reget.bin")).expect("reget");
    assert!(resumed == big, "reget to {} bytes", resumed.len());
    assert!(
        said.contains("/pipe: not a regular file"),
        "the FIFO is not downloaded:\n{said}"
    );
    assert!(
        !work.path().join("pipe.bin").exists(),
        "nothing was downloaded from the FIFO"
    );
    let resumed = std::fs::read(server.files().join("alice/part.bin")).expect("resumed");
    assert!(resumed == big, "resumed to {} bytes", resumed.len());
    assert!(!server.files().join("alice/gone.bin").exists());
    assert!(!server.files().join("alice/empty").exists());
    assert!(
        !server.files().join("alice/big.bin").exists(),
        "renamed away"
    );

    // The same file over FTP.
    let ftp = run(
        &mut curl(
            &["--user", "alice:secret"],
            format!("ftp://{}/d/moved.bin", server.addr),
        ),
        LIMIT,
    );
    assert!(ftp.status.success(), "{}", text(&ftp));
    assert!(ftp.stdout == big, "FTP read {} bytes", ftp.stdout.len());

    // curl (libssh2): download, upload, a quoted rename.
    let sftp_url = |path: &str| format!("sftp://{}:{}/{path}", addr.ip(), addr.port());
    let got = run(
        &mut curl(
            &["--insecure", "--user", "alice:secret"],
            sftp_url("d/moved.bin"),
        ),
        LIMIT,
    );
    assert!(got.status.success(), "{}", text(&got));
    assert!(got.stdout == big, "curl read {} bytes", got.stdout.len());
    let small = random_bytes(70_000, 9);
    std::fs::write(work.path().join("small.bin"), &small).expect("write");
    let put = run(
        &mut curl(
            &[
                "--insecure",
                "--user",
                "alice:secret",
                "--upload-file",
                &work.path().join("small.bin").display().to_string(),
                "--quote",
                "-rename /up.bin /renamed.bin",
            ],
            sftp_url("up.bin"),
        ),
        LIMIT,
    );
    assert!(put.status.success(), "{}", text(&put));
    let stored = std::fs::read(server.files().join("alice/renamed.bin")).expect("curl upload");
    assert!(stored == small, "curl stored {} bytes", stored.len());
    // A missing file is curl's "remote file not found" (78), not a hang.
    let missing = run(
        &mut curl(
            &["--insecure", "--user", "alice:secret"],
            sftp_url("nope.bin"),
        ),
        LIMIT,
    );
    assert_eq!(missing.status.code(), Some(78), "{}", text(&missing));

    // lftp (through OpenSSH's ssh): upload, download, remove.
    let lftp = run(
        Command::new("lftp").current_dir(work.path()).args([
            "-c",
            &format!(
                "set sftp:connect-program 'ssh -a -x -oStrictHostKeyChecking=no \
                 -oUserKnownHostsFile=/dev/null -oPubkeyAuthentication=no'; \
                 open -u alice,secret sftp://{}:{}; put small.bin -o lftp.bin; \
                 get lftp.bin -o lftp-back.bin; put small.bin -o lftp2.bin; rm lftp2.bin",
                addr.ip(),
                addr.port()
            ),
        ]),
        LIMIT,
    );
    assert!(lftp.status.success(), "lftp failed:\n{}", text(&lftp));
    let back = std::fs::read(work.path().join("lftp-back.bin")).expect("lftp download");
    assert!(back == small, "lftp read {} bytes", back.len());
    let stored = std::fs::read(server.files().join("alice/lftp.bin")).expect("lftp upload");
    assert!(stored == small, "lftp stored {} bytes", stored.len());
    assert!(!server.files().join("alice/lftp2.bin").exists(), "lftp rm");

    // `..` does not leave the home: the root of the view is the home.
    let escape = run(
        &mut curl(
            &["--insecure", "--user", "alice:secret"],
            sftp_url("../../ferry.toml"),
        ),
        LIMIT,
    );
    assert!(!escape.status.success(), "read outside the home");
    assert!(!String::from_utf8_lossy(&escape.stdout).contains("password_hash"));

    // Read-only bob: downloads work, uploads and deletes are refused.
    std::fs::create_dir_all(server.files().join("bob")).expect("bob's home");
    std::fs::write(server.files().join("bob/keep.txt"), b"bob's file").expect("write");
    let out = openssh_sftp(addr, "bob", "secret", work.path(), "get keep.txt bob.txt\n");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read(work.path().join("bob.txt")).expect("got"),
        b"bob's file"
    );
    let out = openssh_sftp(addr, "bob", "secret", work.path(), "put small.bin\n");
    assert!(!out.status.success(), "bob uploaded:\n{}", text(&out));
    assert!(text(&out).contains("ermission denied"), "{}", text(&out));
    assert!(!server.files().join("bob/small.bin").exists());
    let out = openssh_sftp(addr, "bob", "secret", work.path(), "rm keep.txt\n");
    assert!(!out.status.success(), "bob deleted:\n{}", text(&out));
    assert!(server.files().join("bob/keep.txt").exists());

    // Carol's quota (100 KiB) and file-name rules.
    let out = openssh_sftp(addr, "carol", "secret", work.path(), "put small.bin\n");
    assert!(out.status.success(), "{}", text(&out));
    let out = openssh_sftp(
        addr,
        "carol",
        "secret",
        work.path(),
        "put small.bin second.bin\n",
    );
    assert!(!out.status.success(), "over the quota:\n{}", text(&out));
    assert!(
        !server.files().join("carol/second.bin").exists(),
        "an upload over the quota is not kept"
    );
    assert_eq!(
        std::fs::read(server.files().join("carol/small.bin"))
            .expect("first")
            .len(),
        small.len(),
        "what was stored before stays"
    );
    std::fs::write(work.path().join("tool.exe"), b"MZ").expect("write");
    let out = openssh_sftp(addr, "carol", "secret", work.path(), "put tool.exe\n");
    assert!(!out.status.success(), "denied name stored:\n{}", text(&out));
    assert!(!server.files().join("carol/tool.exe").exists());

    // A wrong password is refused, and recorded.
    let out = openssh_sftp(addr, "alice", "wrong", work.path(), "ls\n");
    assert!(!out.status.success());
    assert!(text(&out).contains("Permission denied"), "{}", text(&out));

    // The audit log and the xferlog name SFTP's actions. The log's thread
    // writes them in order, the failed login last: once it is there, so is
    // everything before it (it can land after the client has exited).
    let failed_login = |l: &str| {
        l.contains(r#""protocol":"sftp""#)
            && l.contains(r#""command":"LOGIN""#)
            && l.contains(r#""user":"alice""#)
            && l.contains(r#""code":3"#)
    };
    let audit = audit_once(&server, |audit| audit.lines().any(failed_login));
    let sftp_lines: Vec<&str> = audit
        .lines()
        .filter(|l| l.contains(r#""protocol":"sftp""#))
        .collect();
    for (command, path) in [
        ("RENAME", "/alice/big.bin"),
        ("MKDIR", "/alice/d"),
        ("REMOVE", "/alice/gone.bin"),
        ("CLOSE", "/alice/d/moved.bin"),
    ] {
        assert!(
            sftp_lines
                .iter()
                .any(|l| l.contains(&format!(r#""command":"{command}""#))
                    && l.contains(&format!(r#""path":"{path}""#))
                    && l.contains(r#""code":0"#)),
            "no {command} of {path} in the audit log:\n{audit}"
        );
    }
    assert!(
        sftp_lines.iter().any(|l| failed_login(l)),
        "the failed login is recorded:\n{audit}"
    );
    let xferlog = std::fs::read_to_string(server.dir.path().join("xferlog")).expect("xferlog");
    assert!(
        xferlog
            .lines()
            .any(|l| l.contains("3000000 /alice/big.bin b _ i r alice")),
        "{xferlog}"
    );
    assert!(
        xferlog
            .lines()
            .any(|l| l.contains("3000000 /alice/d/moved.bin b _ o r alice")),
        "{xferlog}"
    );
}

#[test]
fn ssh_connections_that_do_not_speak_or_sign_in_are_closed() {
    let server = FerryServer::start_with(&format!(
        "{}\n",
        config().replace("[log]", "[security]\nmax_login_failures = 2\n\n[log]")
    ));
    let addr = sftp_addr(&server);
    // Garbage instead of an SSH identification: the connection ends.
    use std::io::{Read, Write};
    let mut raw = std::net::TcpStream::connect(addr).expect("connect");
    raw.set_read_timeout(Some(LIMIT)).expect("timeout");
    let mut banner = [0u8; 64];
    let n = raw.read(&mut banner).expect("banner");
    assert!(
        banner[..n].starts_with(b"SSH-2.0-ferry"),
        "{:?}",
        String::from_utf8_lossy(&banner[..n])
    );
    raw.write_all(&[0xff; 4096]).expect("garbage");
    let mut rest = Vec::new();
    let _ = raw.read_to_end(&mut rest);
    // Shell and exec are refused; SFTP works on the same login.
    let work = tempfile::tempdir().expect("tempdir");
    let exec = run(
        answering_password(&mut Command::new("ssh"), work.path(), "secret").args([
            "-oStrictHostKeyChecking=no",
            "-oUserKnownHostsFile=/dev/null",
            "-oPubkeyAuthentication=no",
            "-p",
            &addr.port().to_string(),
            &format!("alice@{}", addr.ip()),
            "cat /etc/passwd",
        ]),
        LIMIT,
    );
    assert!(!exec.status.success(), "exec ran:\n{}", text(&exec));
    assert!(!String::from_utf8_lossy(&exec.stdout).contains("root:"));
    // Two wrong passwords ban the address: FTP refuses it too.
    for _ in 0..2 {
        let out = openssh_sftp(addr, "alice", "wrong", work.path(), "ls\n");
        assert!(!out.status.success());
    }
    let out = openssh_sftp(addr, "alice", "secret", work.path(), "ls\n");
    assert!(
        !out.status.success(),
        "a banned address signed in:\n{}",
        text(&out)
    );
    let ftp = run(
        &mut curl(
            &["--user", "alice:secret"],
            format!("ftp://{}/", server.addr),
        ),
        LIMIT,
    );
    assert!(!ftp.status.success(), "FTP let the banned address in");
}

/// Public-key sign-in: `authorized_keys` in the configuration file and in the
/// account database (`ferry user add --authorized-keys FILE`, `ferry user set
/// NAME authorized_keys=@FILE`), used by OpenSSH's `sftp` and ferry's client.
/// `sftp.authentication`'s methods, the server's side and the client's:
/// OpenSSH answers keyboard-interactive's question with the password, and a
/// method not offered is declined without a check; ferry's client turns to
/// keyboard-interactive where the password method is not offered.
#[test]
fn users_sign_in_by_keyboard_interactive_and_only_by_the_methods_offered() {
    let work = tempfile::tempdir().expect("work");
    let w = work.path();
    let by_question = |addr, password| {
        openssh_sftp_as(
            addr,
            "alice",
            SshAuth::KeyboardInteractive(password),
            w,
            "ls\n",
        )
    };

    // Every method (the default): keyboard-interactive signs in, and the
    // audit log says how; a wrong answer is a failed login.
    let server = FerryServer::start_with(&config());
    let addr = sftp_addr(&server);
    let out = by_question(addr, "secret");
    assert!(out.status.success(), "{}", text(&out));
    let out = by_question(addr, "wrong");
    assert!(!out.status.success(), "signed in with a wrong answer");
    let login = |code: &'static str| {
        move |l: &str| {
            l.contains(r#""command":"LOGIN""#)
                && l.contains(r#""user":"alice""#)
                && l.contains(r#""arg":"keyboard-interactive"#)
                && l.contains(code)
        }
    };
    let audit = audit_once(&server, |a| a.lines().any(login(r#""code":3"#)));
    assert!(audit.lines().any(login(r#""code":0"#)), "{audit}");
    assert!(audit.lines().any(login(r#""code":3"#)), "{audit}");
    drop(server);

    // Keyboard-interactive and keys only: the right password by the
    // password method is declined, and OpenSSH is told what is offered.
    let only = config().replace(
        "[sftp]\n",
        "[sftp]\nauthentication = [\"keyboard-interactive\", \"publickey\"]\n",
    );
    let server = FerryServer::start_with(&only);
    let addr = sftp_addr(&server);
    let out = openssh_sftp(addr, "alice", "secret", w, "ls\n");
    assert!(!out.status.success(), "signed in by the password method");
    assert!(
        text(&out).contains("Permission denied (keyboard-interactive,publickey)"),
        "{}",
        text(&out)
    );
    let out = by_question(addr, "secret");
    assert!(out.status.success(), "{}", text(&out));

    // ferry's client: the password from the URL goes by keyboard-interactive.
    let fp = host_fingerprint(&server);
    std::fs::create_dir_all(server.files().join("alice")).expect("home");
    std::fs::write(server.files().join("alice/asked.txt"), "by question").expect("file");
    let url = |password: &str| format!("sftp://alice:{password}@{addr}/");
    let listed = client_ok(w, &["ls", "--pin", &fp, &url("secret")]);
    assert!(listed.contains("asked.txt"), "{listed}");
    let out = client(w, &["ls", "--pin", &fp, &url("wrong")]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "listed with a wrong password");
    assert!(
        said.contains("tried keyboard-interactive")
            && said.contains("the server accepts: keyboard-interactive, publickey"),
        "{said}"
    );
    drop(server);

    // Keys only: no password is tried at all.
    let keys_only = config().replace("[sftp]\n", "[sftp]\nauthentication = [\"publickey\"]\n");
    let server = FerryServer::start_with(&keys_only);
    let addr = sftp_addr(&server);
    for out in [
        openssh_sftp(addr, "alice", "secret", w, "ls\n"),
        by_question(addr, "secret"),
    ] {
        assert!(
            !out.status.success() && text(&out).contains("Permission denied (publickey)"),
            "{}",
            text(&out)
        );
    }
    let fp = host_fingerprint(&server);
    let out = client(
        w,
        &["ls", "--pin", &fp, &format!("sftp://alice:secret@{addr}/")],
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("the server accepts: publickey"),
        "{said}"
    );
    let audit = std::fs::read_to_string(server.dir.path().join("audit.jsonl")).unwrap_or_default();
    assert!(
        !audit.contains(r#""command":"LOGIN""#),
        "a password was checked:\n{audit}"
    );
}

/// OpenSSH user certificates: with `sftp.trusted_user_ca_keys` naming a
/// certificate authority (as sshd's `TrustedUserCAKeys`), a key that
/// authority certified for alice signs her in without being listed;
/// certificates for someone else, expired, from another authority, for
/// another network or forcing a command do not, and each refusal is in the
/// audit log with its reason.
#[test]
fn users_sign_in_with_openssh_certificates_from_a_trusted_authority() {
    let keys = tempfile::tempdir().expect("keys");
    let k = keys.path();
    ssh_keygen(&k.join("ca"), "ed25519", "");
    ssh_keygen(&k.join("rogue_ca"), "ed25519", "");
    // One key per certificate: OpenSSH sends `KEY-cert.pub` with `-i KEY`.
    let cases: [(&str, &str, &[&str], bool); 8] = [
        ("good", "ca", &["-n", "alice"], true),
        (
            "near",
            "ca",
            &["-n", "bob,alice", "-O", "source-address=127.0.0.0/8"],
            true,
        ),
        (
            "sftp_only",
            "ca",
            &["-n", "alice", "-O", "force-command=internal-sftp"],
            true,
        ),
        ("for_bob", "ca", &["-n", "bob"], false),
        (
            "expired",
            "ca",
            &["-n", "alice", "-V", "20200101:20200102"],
            false,
        ),
        ("rogue", "rogue_ca", &["-n", "alice"], false),
        (
            "far",
            "ca",
            &["-n", "alice", "-O", "source-address=10.0.0.0/8"],
            false,
        ),
        (
            "forced",
            "ca",
            &["-n", "alice", "-O", "force-command=/bin/true"],
            false,
        ),
    ];
    for (name, ca, options, _) in cases {
        ssh_keygen(&k.join(name), "ed25519", "");
        certify(&k.join(ca), &k.join(format!("{name}.pub")), options);
    }
    // A key with no certificate, listed nowhere.
    ssh_keygen(&k.join("plain"), "ed25519", "");
    let revoked = k.join("revoked");
    std::fs::write(&revoked, "# none yet\n").expect("revoked");
    let server = FerryServer::start_with(&format!(
        "{}\n[security]\nmax_login_failures = 50\n",
        config()
            .replace("quota_bytes", "ssh_principals = [\"bob\"]\nquota_bytes")
            .replace(
                "[sftp]\n",
                &format!(
                    "[sftp]\ntrusted_user_ca_keys = [\"{}\"]\nrevoked_keys = \"{}\"\n",
                    k.join("ca.pub").display(),
                    revoked.display()
                )
            )
    ));
    let addr = sftp_addr(&server);
    let work = tempfile::tempdir().expect("work");
    let w = work.path();
    std::fs::write(w.join("note.txt"), "certified").expect("note");
    for (name, _, _, signs_in) in cases.iter().copied().chain([("plain", "", &[][..], false)]) {
        let out = openssh_sftp_as(
            addr,
            "alice",
            SshAuth::Key(&k.join(name)),
            w,
            &format!("put note.txt {name}.txt\n"),
        );
        assert_eq!(out.status.success(), signs_in, "{name}:\n{}", text(&out));
        let stored = server.files().join(format!("alice/{name}.txt"));
        assert_eq!(stored.exists(), signs_in, "{name}");
        if !signs_in {
            assert!(
                text(&out).contains("Permission denied"),
                "{name}:\n{}",
                text(&out)
            );
        }
    }
    // ferry's own client offers the certificate beside the key it is given.
    let fp = host_fingerprint(&server);
    let key = k.join("good").display().to_string();
    let url = format!("sftp://alice@{addr}/");
    let listed = client_ok(w, &["ls", "-i", &key, "--pin", &fp, &url]);
    assert!(listed.contains("good.txt"), "{listed}");
    // The audit log names the certificate that signed in, and why the
    // others did not (but the expired one, which russh refuses before
    // ferry sees it).
    let audit = std::fs::read_to_string(server.dir.path().join("audit.jsonl")).expect("audit");
    let login = |needle: &str, code: u32| {
        audit.lines().any(|l| {
            l.contains("\"LOGIN\"") && l.contains(needle) && l.contains(&format!("\"code\":{code}"))
        })
    };
    for (needle, code) in [
        ("certificate ssh-ed25519 SHA256:", 0),
        ("id \\\"good-id\\\" serial 42", 0),
        ("it is for bob, not alice", 3),
        ("not trusted", 3),
        ("not 127.0.0.1", 3),
        ("/bin/true", 3),
    ] {
        assert!(
            login(needle, code),
            "no LOGIN with {needle:?} and code {code}:\n{audit}"
        );
    }
    // The key with no certificate was only offered: not a failed login.
    let failed = audit
        .lines()
        .filter(|l| l.contains("\"LOGIN\"") && l.contains("\"code\":3"))
        .count();
    assert_eq!(failed, 4, "{audit}");

    // carol's ssh_principals (sshd's AuthorizedPrincipalsFile) name bob:
    // certificates for bob sign her in, one for alice only does not.
    for (name, signs_in) in [("for_bob", true), ("near", true), ("sftp_only", false)] {
        let out = openssh_sftp_as(addr, "carol", SshAuth::Key(&k.join(name)), w, "ls\n");
        assert_eq!(
            out.status.success(),
            signs_in,
            "carol with {name}:\n{}",
            text(&out)
        );
    }
    let audit = std::fs::read_to_string(server.dir.path().join("audit.jsonl")).expect("audit");
    assert!(
        audit.lines().any(|l| l.contains("\"user\":\"carol\"")
            && l.contains("it is for alice, not carol (whose authority names bob)")),
        "{audit}"
    );

    // Revoking good's key (sshd's RevokedKeys, read again on SIGHUP): its
    // certificate signs in no more; near's still does.
    let good_key = std::fs::read_to_string(k.join("good.pub")).expect("good.pub");
    std::fs::write(&revoked, good_key).expect("revoke");
    server.signal("HUP");
    server.wait_for_log("SSH trust reloaded: 1 certificate authorities, 1 revoked keys");
    for (name, signs_in) in [("good", false), ("near", true)] {
        let out = openssh_sftp_as(addr, "alice", SshAuth::Key(&k.join(name)), w, "ls\n");
        assert_eq!(out.status.success(), signs_in, "{name}:\n{}", text(&out));
    }
    // OpenSSH offers the key before it signs: declined then, and logged.
    let line = server.wait_for_log("a revoked key was offered");
    assert!(line.contains("alice"), "{line}");

    // A key revocation list made by `ssh-keygen -k` in place of the text:
    // certificates revoked by serial number (good and sftp_only carry 42,
    // near now 7), then, updated with `-u`, by key id.
    certify(
        &k.join("ca"),
        &k.join("near.pub"),
        &["-n", "alice", "-z", "7"],
    );
    let krl = |spec: &str, update: bool| {
        std::fs::write(k.join("spec"), spec).expect("spec");
        let mut keygen = Command::new("ssh-keygen");
        keygen
            .args(["-k", "-f"])
            .arg(&revoked)
            .arg("-s")
            .arg(k.join("ca.pub"));
        if update {
            keygen.arg("-u");
        }
        let made = run(keygen.arg(k.join("spec")), Duration::from_secs(30));
        assert!(made.status.success(), "ssh-keygen -k: {}", text(&made));
        server.signal("HUP");
    };
    krl("serial: 40-50\n", false);
    server.wait_for_log("1 revoked certificate serial ranges, 0 revoked certificate key ids");
    for (name, signs_in) in [("good", false), ("sftp_only", false), ("near", true)] {
        let out = openssh_sftp_as(addr, "alice", SshAuth::Key(&k.join(name)), w, "ls\n");
        assert_eq!(out.status.success(), signs_in, "{name}:\n{}", text(&out));
    }
    krl("id: near-id\n", true);
    server.wait_for_log("1 revoked certificate serial ranges, 1 revoked certificate key ids");
    let out = openssh_sftp_as(addr, "alice", SshAuth::Key(&k.join("near")), w, "ls\n");
    assert!(!out.status.success(), "near:\n{}", text(&out));
    let audit = std::fs::read_to_string(server.dir.path().join("audit.jsonl")).expect("audit");
    for needle in [
        "its serial number 42 is revoked",
        "its key id \\\"near-id\\\" is revoked",
    ] {
        assert!(
            audit
                .lines()
                .any(|l| l.contains(needle) && l.contains("\"code\":3")),
            "no failed LOGIN with {needle:?}:\n{audit}"
        );
    }
    // A KRL that cannot be read whole is not applied: the one before stays.
    std::fs::write(&revoked, b"SSHKRL\n\0\0\0\0\x02").expect("broken");
    server.signal("HUP");
    server.wait_for_log("SSH trust not reloaded, keeping the old one");
    let out = openssh_sftp_as(addr, "alice", SshAuth::Key(&k.join("good")), w, "ls\n");
    assert!(!out.status.success(), "good:\n{}", text(&out));
}

/// The line of `dir/name.pub` (`ssh-keygen`'s public key), trimmed.
fn public_key_line(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(format!("{name}.pub")))
        .expect("public key")
        .trim()
        .to_owned()
}

/// OpenSSH's options before a key in `authorized_keys`: the harmless ones
/// taken, `from` and `expiry-time` kept, and `cert-authority` lines naming
/// a user's own certificate authority (with `principals`), as sshd reads
/// them; OpenSSH's `sftp` with keys and certificates by `ssh-keygen`.
#[test]
fn authorized_keys_options_are_kept_and_users_name_their_own_authorities() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_owned();
    let keys = tempfile::tempdir().expect("keys");
    let k = keys.path();
    for name in ["ca", "kept", "far", "old", "mine", "ops"] {
        ssh_keygen(&k.join(name), "ed25519", "");
    }
    certify(&k.join("ca"), &k.join("mine.pub"), &["-n", "alice"]);
    certify(&k.join("ca"), &k.join("ops.pub"), &["-n", "ops"]);
    let public = |name: &str| public_key_line(k, name);
    std::fs::write(
        d.join("ferry.toml"),
        format!(
            r#"
[server]
listen = ["127.0.0.1:0"]

[sftp]
listen = ["127.0.0.1:0"]

[security]
max_login_failures = 50

[log]
audit = "audit.jsonl"

[[users]]
name = "alice"
password_hash = "{hash}"
authorized_keys = [
  'restrict,command="internal-sftp -l INFO",from="127.0.0.0/8,!10.*" {kept}',
  'from="10.0.0.0/8" {far}',
  'no-pty,expiry-time="20200101" {old}',
  'cert-authority {ca}',
]

[[users]]
name = "bob"
password_hash = "{hash}"
authorized_keys = ['cert-authority,principals="ops" {ca}']

[[users]]
name = "carol"
password_hash = "{hash}"
"#,
            hash = hash("secret"),
            kept = public("kept"),
            far = public("far"),
            old = public("old"),
            ca = public("ca"),
        ),
    )
    .expect("config");
    let server = serve_in(dir);
    let addr = sftp_addr(&server);
    let work = tempfile::tempdir().expect("work");
    let w = work.path();
    std::fs::write(w.join("note.txt"), "optioned").expect("note");
    for (user, key, signs_in) in [
        ("alice", "kept", true),
        ("alice", "far", false),
        ("alice", "old", false),
        // The authority's own key is no key to sign in with.
        ("alice", "ca", false),
        // Certificates: alice's line takes certificates for alice; bob's
        // line those for "ops"; carol names no authority.
        ("alice", "mine", true),
        ("alice", "ops", false),
        ("bob", "ops", true),
        ("bob", "mine", false),
        ("carol", "mine", false),
    ] {
        let out = openssh_sftp_as(
            addr,
            user,
            SshAuth::Key(&k.join(key)),
            w,
            &format!("put note.txt {key}.txt\n"),
        );
        assert_eq!(
            out.status.success(),
            signs_in,
            "{user} with {key}:\n{}",
            text(&out)
        );
        let stored = server.files().join(format!("{user}/{key}.txt"));
        assert_eq!(stored.exists(), signs_in, "{user} with {key}");
    }
    // Why a listed key was not taken is logged; why a certificate was not,
    // audited as a failed login.
    for why in [
        "the key is not for clients from 127.0.0.1 (from=\"10.0.0.0/8\")",
        "the key expired",
    ] {
        server.wait_for_log(why);
    }
    let audit = std::fs::read_to_string(server.dir.path().join("audit.jsonl")).expect("audit");
    for (user, needle) in [
        ("alice", "it is for ops, not alice"),
        (
            "bob",
            "it is for alice, not bob (whose authority names ops)",
        ),
    ] {
        assert!(
            audit.lines().any(|l| l.contains("\"LOGIN\"")
                && l.contains(&format!("\"user\":\"{user}\""))
                && l.contains(needle)
                && l.contains("\"code\":3")),
            "no failed LOGIN of {user} with {needle:?}:\n{audit}"
        );
    }
    // Where no authority is named, a certificate is only declined, as a key
    // not listed is: no failed login.
    assert!(
        !audit.lines().any(|l| l.contains("\"user\":\"carol\"")),
        "{audit}"
    );
}

#[test]
fn users_sign_in_over_sftp_with_their_authorized_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_owned();
    let keys = tempfile::tempdir().expect("keys");
    let k = keys.path();
    for (name, kind) in [
        ("alice", "ecdsa"),
        ("kim", "ed25519"),
        ("kim2", "rsa"),
        ("stranger", "ed25519"),
        ("legacy", "rsa:1024"),
    ] {
        ssh_keygen(&k.join(name), kind, "");
    }
    let key = |name: &str| k.join(name);
    let public = |name: &str| public_key_line(k, name);
    std::fs::write(
        d.join("ferry.toml"),
        format!(
            r#"
[server]
listen = ["127.0.0.1:0"]

[sftp]
listen = ["127.0.0.1:0"]

[accounts]
store = "sqlite:./accounts.db"

[security]
max_login_failures = 3

[log]
audit = "audit.jsonl"

[[users]]
name = "alice"
password_hash = "{}"
home = "/alice"
authorized_keys = ["{}"]
"#,
            hash("secret"),
            public("alice")
        ),
    )
    .expect("config");
    // kim lives in the account database and has keys only.
    let kim_pub = k.join("kim.pub").display().to_string();
    ferry_ok(
        &d,
        &["user", "add", "kim", "--authorized-keys", &kim_pub],
        "",
    );
    let server = serve_in(dir);
    let addr = sftp_addr(&server);
    let work = tempfile::tempdir().expect("work");
    let w = work.path();
    std::fs::write(w.join("note.txt"), "signed with a key").expect("note");
    // OpenSSH's sftp as `user` with the key named `name` only.
    let with_key = |user: &str, name: &str, batch: &str| {
        openssh_sftp_as(addr, user, SshAuth::Key(&key(name)), w, batch)
    };

    // OpenSSH's sftp with kim's Ed25519 key, and with alice's ECDSA key
    // (no password given): the uploads land in their homes.
    let out = with_key("kim", "kim", "put note.txt\nls -l\n");
    assert!(out.status.success(), "kim:\n{}", text(&out));
    assert!(text(&out).contains("note.txt"), "{}", text(&out));
    let out = with_key("alice", "alice", "put note.txt\n");
    assert!(out.status.success(), "alice:\n{}", text(&out));
    for home in ["kim", "alice"] {
        assert_eq!(
            std::fs::read_to_string(server.files().join(home).join("note.txt")).expect("stored"),
            "signed with a key"
        );
    }

    // A key that is not the user's is declined, nothing is stored, and an
    // offered key is not a failed login: five refusals against
    // max_login_failures = 3 ban nobody.
    for (user, other) in [
        ("kim", "stranger"),
        ("kim", "alice"),
        ("alice", "kim"),
        ("alice", "stranger"),
        ("anonymous", "kim"),
    ] {
        let out = with_key(user, other, "put note.txt refused.txt\n");
        assert!(!out.status.success(), "{user} signed in with {other}'s key");
        assert!(
            text(&out).contains("Permission denied (publickey,password,keyboard-interactive)"),
            "{user} with {other}'s key:\n{}",
            text(&out)
        );
    }
    for home in ["kim", "alice", "anonymous"] {
        assert!(!server.files().join(home).join("refused.txt").exists());
    }
    let out = with_key("kim", "kim", "ls\n");
    assert!(out.status.success(), "kim was banned:\n{}", text(&out));

    // Keys only: no password opens kim's account over FTP.
    let mut ftp = RawControl::connect(&server);
    ftp.cmd("USER kim");
    assert!(
        ftp.cmd("PASS secret").starts_with("530"),
        "kim logged in over FTP"
    );
    drop(ftp);
    let out = openssh_sftp(addr, "kim", "secret", w, "ls\n");
    assert!(
        !out.status.success(),
        "kim signed in over SSH with a password"
    );
    // alice keeps her password.
    let out = openssh_sftp(addr, "alice", "secret", w, "ls\n");
    assert!(out.status.success(), "{}", text(&out));

    // ferry's own client, with -i.
    let fp = host_fingerprint(&server);
    let ferry_ls_with_key = |user: &str, name: &str| {
        let key = key(name).display().to_string();
        client_ok(
            w,
            &[
                "ls",
                "-i",
                &key,
                "--pin",
                &fp,
                &format!("sftp://{user}@{addr}/"),
            ],
        )
    };
    let listed = ferry_ls_with_key("kim", "kim");
    assert!(listed.contains("note.txt"), "{listed}");

    // The audit log names the key that signed in, as ssh-keygen -l does.
    let shown = run(
        Command::new("ssh-keygen").arg("-lf").arg(k.join("kim.pub")),
        LIMIT,
    );
    let kim_fp = String::from_utf8_lossy(&shown.stdout)
        .split(' ')
        .nth(1)
        .expect("fingerprint")
        .to_owned();
    let audit = std::fs::read_to_string(server.dir.path().join("audit.jsonl")).expect("audit");
    assert!(
        audit.lines().any(|l| l.contains("\"LOGIN\"")
            && l.contains("\"user\":\"kim\"")
            && l.contains(&format!("publickey ssh-ed25519 {kim_fp}"))),
        "{audit}"
    );

    // Replacing kim's keys from a file: the old key stops working at the
    // next login, the new one (RSA, signed with SHA-512 by OpenSSH, with
    // SHA-2 by ferry's client) works, and `user show` lists it; the same key
    // signed with SHA-1 (`ssh-rsa`) is declined.
    let kim2_pub = k.join("kim2.pub").display().to_string();
    ferry_ok(
        server.dir.path(),
        &[
            "user",
            "set",
            "kim",
            &format!("authorized_keys=@{kim2_pub}"),
        ],
        "",
    );
    let out = with_key("kim", "kim", "ls\n");
    assert!(!out.status.success(), "the replaced key still works");
    let out = with_key("kim", "kim2", "ls\n");
    assert!(out.status.success(), "{}", text(&out));
    let out = openssh_sftp_as(
        addr,
        "kim",
        SshAuth::KeySignedAs(&key("kim2"), "ssh-rsa"),
        w,
        "ls\n",
    );
    assert!(
        !out.status.success() && text(&out).contains("Permission denied"),
        "kim signed in with an ssh-rsa (SHA-1) signature:\n{}",
        text(&out)
    );
    let listed = ferry_ls_with_key("kim", "kim2");
    assert!(listed.contains("note.txt"), "{listed}");
    let show = ferry_ok(server.dir.path(), &["user", "show", "kim"], "");
    assert!(show.contains(&public("kim2")), "{show}");
    assert!(
        !show.contains(&public("kim")) && !show.contains("password_hash"),
        "{show}"
    );
    // A file that holds no usable key changes nothing: a 1,024-bit RSA key
    // is refused with its size.
    std::fs::write(
        w.join("bad.pub"),
        format!("# nothing\n{}\n", public("legacy")),
    )
    .expect("bad");
    let out = client(
        server.dir.path(),
        &[
            "user",
            "set",
            "kim",
            &format!("authorized_keys=@{}", w.join("bad.pub").display()),
        ],
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && said.contains("bad.pub:2")
            && said.contains("this RSA key has 1024 bits"),
        "{said}"
    );
    let out = with_key("kim", "kim2", "ls\n");
    assert!(out.status.success(), "{}", text(&out));
}

/// SIGTERM with SFTP connections open: the listener stops taking
/// connections, a download in flight finishes whole, a signed-in connection
/// with nothing open is closed, and the server stops without waiting out
/// `shutdown_grace` (120 s here: a connection held open would make
/// `terminate_wait`, which waits 60 s, fail).
#[test]
fn a_stopping_server_lets_sftp_downloads_finish_and_closes_idle_connections() {
    let config = config().replace("[server]\n", "[server]\nshutdown_grace = \"120s\"\n")
        + &format!(
            "\n[[users]]\nname = \"dora\"\npassword_hash = \"{}\"\nhome = \"/dora\"\ndownload_rate = \"4 MiB/s\"\n",
            hash("secret")
        );
    let mut server = FerryServer::start_with(&config);
    let addr = sftp_addr(&server);
    let big = random_bytes(10_000_000, 23);
    std::fs::create_dir_all(server.files().join("dora")).expect("home");
    std::fs::write(server.files().join("dora/big.bin"), &big).expect("big");
    let work = tempfile::tempdir().expect("work");
    let w = work.path();
    let idle_dir = w.join("idle");
    std::fs::create_dir(&idle_dir).expect("idle dir");

    // alice signs in and waits for commands on standard input.
    let mut idle = openssh_sftp_command(addr, "alice", SshAuth::Password("secret"), &idle_dir, "-")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("idle sftp");
    let signed_in = |user: &str| {
        let deadline = std::time::Instant::now() + LIMIT;
        while !server
            .log()
            .lines()
            .any(|l| l.contains("logged in") && l.contains(&format!("user={user}")))
        {
            assert!(
                std::time::Instant::now() < deadline,
                "{user} did not sign in"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    signed_in("alice");

    // dora's download runs at 4 MiB/s: about 2.5 s.
    std::fs::write(w.join("batch"), "get big.bin\n").expect("batch");
    let download = openssh_sftp_command(addr, "dora", SshAuth::Password("secret"), w, "batch")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("download");
    let deadline = std::time::Instant::now() + LIMIT;
    while std::fs::metadata(w.join("big.bin")).map_or(0, |m| m.len()) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the download did not start"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    server.signal("TERM");

    // No new connections.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "still taking SSH connections after SIGTERM"
    );
    // The download finishes, whole.
    let out = download.wait_with_output().expect("download ended");
    assert!(
        out.status.success(),
        "download failed:\n{}\n{}",
        text(&out),
        server.log()
    );
    let got = std::fs::read(w.join("big.bin")).expect("downloaded");
    assert!(got == big, "the download was cut at {} bytes", got.len());
    // The server stops without waiting for alice, whose connection is gone.
    let status = server.terminate_wait();
    assert!(status.success(), "exit status {status}");
    use std::io::Write;
    let mut stdin = idle.stdin.take().expect("stdin");
    let _ = stdin.write_all(b"ls\n");
    drop(stdin);
    let status = idle.wait().expect("idle sftp ended");
    assert!(!status.success(), "alice's connection outlived the server");
}
