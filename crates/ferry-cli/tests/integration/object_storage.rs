//! `[storage] backend = "s3"`: ferry's server keeping its files in a real
//! S3-compatible server (moto's, installed by .ci/run), driven by curl and raw
//! control connections; the bucket itself is read and written over S3's HTTP
//! API, so that what ferry stores is checked where it lives.

use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

use crate::support::{FerryServer, RawControl, curl, free_port, hash, random_bytes, run, run_ok};
use crate::web::Daemon;

/// moto's S3 server on a loopback port of its own, with one bucket.
struct MotoS3 {
    _daemon: Daemon,
    endpoint: String,
    bucket: &'static str,
}

impl MotoS3 {
    fn start() -> Self {
        let port = free_port();
        let daemon = Daemon::start(
            Command::new("python3").args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ]),
            port,
            "moto's S3 server (python3 -m moto.server)",
            Duration::from_secs(60),
        );
        let s3 = MotoS3 {
            _daemon: daemon,
            endpoint: format!("http://127.0.0.1:{port}"),
            bucket: "ferry-files",
        };
        run_ok(
            &mut signed(&["-X", "PUT"], format!("{}/{}", s3.endpoint, s3.bucket)),
            Duration::from_secs(60),
        );
        s3
    }

    /// The bucket's keys under `prefix`.
    fn keys(&self, prefix: &str) -> Vec<String> {
        let xml = run_ok(
            &mut signed(
                &[],
                format!(
                    "{}/{}?list-type=2&prefix={prefix}",
                    self.endpoint, self.bucket
                ),
            ),
            Duration::from_secs(60),
        );
        xml.split("<Key>")
            .skip(1)
            .filter_map(|s| s.split("</Key>").next())
            .map(str::to_owned)
            .collect()
    }

    /// An object's bytes, straight from the bucket.
    fn object(&self, key: &str) -> Vec<u8> {
        let out = run(
            &mut signed(&[], format!("{}/{}/{key}", self.endpoint, self.bucket)),
            Duration::from_secs(60),
        );
        assert!(
            out.status.success(),
            "GET {key}: {}; keys: {:?}",
            String::from_utf8_lossy(&out.stderr),
            self.keys("")
        );
        out.stdout
    }

    /// Stores an object as another program would.
    fn put_object(&self, key: &str, bytes: &[u8]) {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("body");
        std::fs::write(&file, bytes).expect("body");
        run_ok(
            &mut signed(
                &["-T", file.to_str().expect("utf-8")],
                format!("{}/{}/{key}", self.endpoint, self.bucket),
            ),
            Duration::from_secs(60),
        );
    }

    fn config(&self) -> String {
        format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\n\
             [storage]\nbackend = \"s3\"\nbucket = \"{}\"\nendpoint = \"{}\"\nprefix = \"site/ftp\"\n\
             access_key_id = \"testing\"\nsecret_access_key = \"testing\"\n\
             [accounts]\nstore = \"config\"\n\n\
             [[users]]\nname = \"alice\"\npassword_hash = \"{}\"\n\n\
             [[users]]\nname = \"quoted\"\npassword_hash = \"{}\"\nquota_bytes = \"1 MiB\"\n",
            self.bucket,
            self.endpoint,
            hash("pw"),
            hash("pw")
        )
    }
}

/// curl with the bucket's credentials (AWS Signature Version 4).
fn signed(extra: &[&str], url: String) -> Command {
    let mut args = vec![
        "--aws-sigv4",
        "aws:amz:us-east-1:s3",
        "--user",
        "testing:testing",
    ];
    args.extend_from_slice(extra);
    curl(&args, url)
}

fn code(reply: &str) -> &str {
    reply.get(..3).unwrap_or(reply)
}

fn upload(c: &mut RawControl, command: &str, data: &[u8]) -> String {
    let mut d = c.pasv_data();
    let r = c.cmd(command);
    if !r.starts_with("150") {
        return code(&r).to_owned();
    }
    d.write_all(data).expect("upload");
    drop(d);
    code(&c.reply()).to_owned()
}

fn download(c: &mut RawControl, command: &str) -> Result<Vec<u8>, String> {
    let mut d = c.pasv_data();
    let r = c.cmd(command);
    if !r.starts_with("150") {
        return Err(r);
    }
    let mut out = Vec::new();
    d.read_to_end(&mut out).expect("download");
    let end = c.reply();
    if !end.starts_with("226") {
        return Err(end);
    }
    Ok(out)
}

#[test]
fn files_live_in_an_s3_bucket() {
    let s3 = MotoS3::start();
    let server = FerryServer::start_with(&s3.config());
    // The test servers are started with `--root`: with a bucket it is
    // ignored, and said so.
    assert!(
        server.log().contains("--root is ignored"),
        "{}",
        server.log()
    );
    let url = |path: &str| format!("ftp://alice:pw@127.0.0.1:{}/{path}", server.port());

    // A file of three parts (8 MiB each) through curl, back byte for byte;
    // in the bucket as one object under the prefix and the home.
    let big = random_bytes(20 << 20, 7);
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("big"), &big).expect("file");
    let big_path = dir.path().join("big");
    run_ok(
        &mut curl(&["-T", big_path.to_str().expect("utf-8")], url("big.bin")),
        Duration::from_secs(120),
    );
    let back = run(&mut curl(&[], url("big.bin")), Duration::from_secs(120));
    assert!(back.stdout == big, "the download differs from the upload");
    assert!(
        s3.keys("site/ftp/alice/")
            .contains(&"site/ftp/alice/big.bin".to_owned())
    );
    assert!(s3.object("site/ftp/alice/big.bin") == big);
    // REST + RETR reads from the offset.
    let tail = run(
        &mut curl(&["-r", &format!("{}-", (20 << 20) - 10)], url("big.bin")),
        Duration::from_secs(60),
    );
    assert_eq!(tail.stdout, &big[big.len() - 10..]);

    let mut c = RawControl::login(&server, "alice", "pw");
    assert!(c.cmd("TYPE I").starts_with("200"));
    assert_eq!(c.cmd("SIZE big.bin").trim_end(), "213 20971520");
    assert!(c.cmd("MDTM big.bin").starts_with("213 "));

    // Directories: made empty, kept when their last file goes, removed only
    // when empty.
    assert!(c.cmd("MKD docs").starts_with("257"));
    assert!(c.cmd("MKD docs").starts_with("550"));
    assert!(
        s3.keys("site/ftp/alice/docs/")
            .contains(&"site/ftp/alice/docs/.ferry-dir".to_owned())
    );
    assert_eq!(upload(&mut c, "STOR docs/a.txt", b"first\n"), "226");
    assert!(
        c.cmd("RMD docs").starts_with("550"),
        "a directory with a file"
    );
    assert!(c.cmd("DELE docs/a.txt").starts_with("250"));
    assert!(c.cmd("CWD docs").starts_with("250"), "the directory stays");
    assert!(c.cmd("CWD /").starts_with("250"));
    assert!(c.cmd("RMD docs").starts_with("250"));
    assert!(c.cmd("CWD docs").starts_with("550"));
    assert!(s3.keys("site/ftp/alice/docs/").is_empty());
    assert_eq!(upload(&mut c, "STOR nodir/x", b"x"), "550");

    // APPE and REST + STOR: the object is rewritten with its old start.
    assert_eq!(upload(&mut c, "STOR log.txt", b"one\n"), "226");
    assert_eq!(upload(&mut c, "APPE log.txt", b"two\n"), "226");
    assert!(c.cmd("REST 4").starts_with("350"));
    assert_eq!(upload(&mut c, "STOR log.txt", b"TWO\nthree\n"), "226");
    assert_eq!(s3.object("site/ftp/alice/log.txt"), b"one\nTWO\nthree\n");

    // A replacement that fails leaves the old file: ABOR mid-way (the
    // data connection's end would be the file's end).
    {
        let mut c2 = RawControl::login(&server, "alice", "pw");
        assert!(c2.cmd("TYPE I").starts_with("200"));
        let mut d = c2.pasv_data();
        assert!(c2.cmd("STOR log.txt").starts_with("150"));
        d.write_all(&[9u8; 100_000]).expect("partial");
        c2.wait_for_transfer_bytes(100_000);
        let abor = c2.cmd("ABOR");
        assert!(abor.starts_with("426") || abor.starts_with("226"), "{abor}");
        drop(d);
    }
    let log = download(&mut c, "RETR log.txt").expect("log");
    assert!(log == b"one\nTWO\nthree\n", "{} bytes", log.len());

    // Renames: a file, and a directory with everything under it.
    assert!(c.cmd("MKD tree").starts_with("257"));
    assert!(c.cmd("MKD tree/sub").starts_with("257"));
    assert_eq!(upload(&mut c, "STOR tree/sub/leaf", b"leaf"), "226");
    assert!(c.cmd("RNFR tree").starts_with("350"));
    assert!(c.cmd("RNTO grove").starts_with("250"));
    assert_eq!(
        download(&mut c, "RETR grove/sub/leaf").expect("leaf"),
        b"leaf"
    );
    assert!(s3.keys("site/ftp/alice/tree/").is_empty());
    assert!(c.cmd("RNFR log.txt").starts_with("350"));
    assert!(c.cmd("RNTO grove/log.txt").starts_with("250"));
    assert_eq!(
        s3.object("site/ftp/alice/grove/log.txt"),
        b"one\nTWO\nthree\n"
    );

    // What another program puts in the bucket is there for FTP, and names
    // S3 advises against come back as they were.
    s3.put_object("site/ftp/alice/from-s3.txt", b"put over S3\n");
    let names = String::from_utf8(
        run(
            &mut curl(&["--list-only"], url("")),
            Duration::from_secs(60),
        )
        .stdout,
    )
    .expect("names");
    assert!(names.lines().any(|l| l == "from-s3.txt"), "{names}");
    assert!(!names.contains(".ferry-dir"), "{names}");
    assert_eq!(upload(&mut c, "STOR 50% {off}.txt", b"odd"), "226");
    let mlsd = String::from_utf8(download(&mut c, "MLSD").expect("mlsd")).expect("utf-8");
    assert!(mlsd.contains("; 50% {off}.txt\r\n"), "{mlsd}");
    assert!(
        mlsd.contains("type=dir;") && mlsd.contains("; grove\r\n"),
        "{mlsd}"
    );
    assert_eq!(download(&mut c, "RETR 50% {off}.txt").expect("odd"), b"odd");
    let reserved = upload(&mut c, "STOR .ferry-dir", b"x");
    assert!(reserved.starts_with('5'), "{reserved}");

    // A second server on the same bucket serves the same files.
    let other = FerryServer::start_with(&s3.config());
    let shared = run(
        &mut curl(
            &[],
            format!("ftp://alice:pw@127.0.0.1:{}/grove/sub/leaf", other.port()),
        ),
        Duration::from_secs(60),
    );
    assert_eq!(shared.stdout, b"leaf");

    // Over a quota: 552 and nothing stored.
    let mut q = RawControl::login(&server, "quoted", "pw");
    assert!(q.cmd("TYPE I").starts_with("200"));
    assert_eq!(upload(&mut q, "STOR fits", &[1u8; 1000]), "226");
    assert_eq!(upload(&mut q, "STOR too-big", &vec![2u8; 2 << 20]), "552");
    let keys = s3.keys("site/ftp/quoted/");
    assert!(
        keys.contains(&"site/ftp/quoted/fits".to_owned()),
        "{keys:?}"
    );
    assert!(!keys.iter().any(|k| k.ends_with("too-big")), "{keys:?}");

    // MFMT cannot set an object's time: refused, the file unchanged.
    assert!(c.cmd("MFMT 20200101000000 grove/sub/leaf").starts_with("5"));
    assert!(c.cmd("QUIT").starts_with("221"));

    // A bucket that cannot be reached: a login is told so (421, not a 530
    // that reads as a wrong password), within the retries' bound.
    let away = s3
        .config()
        .replace(&s3.endpoint, &format!("http://127.0.0.1:{}", free_port()));
    let lost = FerryServer::start_with(&away);
    let started = std::time::Instant::now();
    let mut c = RawControl::connect(&lost);
    assert!(c.cmd("USER alice").starts_with("331"));
    let refused = c.cmd("PASS pw");
    assert!(
        refused.starts_with("421") && refused.contains("file storage cannot be reached"),
        "{refused}"
    );
    assert!(c.is_closed());
    assert!(started.elapsed() < Duration::from_secs(20));
    // The log line is read from the server's stderr by another thread:
    // it may arrive just after the reply.
    lost.wait_for_log("the S3 request failed");
    // ... and the start said so, but served.
    assert!(
        lost.log().contains("cannot be reached yet"),
        "{}",
        lost.log()
    );

    // A bucket that does not exist is a mistake in the configuration:
    // `ferry serve` stops at start and names it.
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(
        dir.path().join("ferry.toml"),
        s3.config().replace(
            &format!("bucket = \"{}\"", s3.bucket),
            "bucket = \"no-such-bucket\"",
        ),
    )
    .expect("config");
    let out = run(
        Command::new(crate::support::ferry_bin())
            .args(["serve", "--listen", "127.0.0.1:0"])
            .current_dir(dir.path()),
        Duration::from_secs(60),
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && said.contains("S3 bucket no-such-bucket")
            && said.contains("does not exist"),
        "{said}"
    );
}

/// SFTP over the bucket: OpenSSH's `sftp` uploads (a file of three parts),
/// lists, downloads, renames and makes and removes a directory; what it wrote
/// is in the bucket under the prefix and the home, byte for byte.
#[test]
fn sftp_files_live_in_an_s3_bucket() {
    let s3 = MotoS3::start();
    let server = FerryServer::start_with(&(s3.config() + "\n[sftp]\nlisten = [\"127.0.0.1:0\"]\n"));
    let addr = crate::sftp::sftp_addr(&server);
    let work = tempfile::tempdir().expect("work");
    let w = work.path();
    let big = random_bytes(20 << 20, 11);
    std::fs::write(w.join("big.bin"), &big).expect("file");
    let out = crate::sftp::openssh_sftp_as(
        addr,
        "alice",
        crate::sftp::SshAuth::Password("pw"),
        w,
        "put big.bin\nls -l\nget big.bin back.bin\nrename big.bin moved.bin\nmkdir made\nmkdir gone\nrmdir gone\n\
         put -f big.bin synced.bin\n-df\n",
    );
    let said = crate::sftp::text(&out);
    assert!(out.status.success(), "{said}");
    // A bucket has no file system size: statvfs is unsupported (OpenSSH's
    // `df` prints nothing then, so paramiko asks); fsync of an upload in
    // progress waits for its parts, and the commit is durable by itself.
    let script = r#"
import sys, paramiko
from paramiko.sftp import CMD_EXTENDED
t = paramiko.Transport(("127.0.0.1", int(sys.argv[1])))
t.connect(username="alice", password="pw")
s = paramiko.SFTPClient.from_transport(t)
try:
    s._request(CMD_EXTENDED, "statvfs@openssh.com", ".")
    print("statvfs answered")
except IOError as e:
    print("statvfs refused:", e)
f = s.open("mid.bin", "w")
f.set_pipelined(True)
f.write(b"x" * (9 << 20))
s._request(CMD_EXTENDED, "fsync@openssh.com", f.handle)
f.write(b"end")
f.close()
f = s.open("mid.bin", "r+")
try:
    f.write(b"!")
    f.flush()
    print("wrote inside an object")
except IOError as e:
    print("inside refused:", e)
f.close()
print("done")
"#;
    let asked = crate::sftp::paramiko(addr, script);
    assert!(
        asked.contains("statvfs refused:") && asked.contains("no file system size"),
        "{asked}"
    );
    // An object is written front to back: a write into one is refused, and
    // the object stays whole (checked below).
    assert!(
        asked.contains("inside refused:") && asked.contains("front to back"),
        "{asked}"
    );
    let mid = s3.object("site/ftp/alice/mid.bin");
    assert!(
        mid.len() == (9 << 20) + 3 && mid.ends_with(b"xend"),
        "mid.bin: {} bytes",
        mid.len()
    );
    assert!(s3.object("site/ftp/alice/synced.bin") == big);
    assert!(said.contains("big.bin"), "ls -l: {said}");
    let back = std::fs::read(w.join("back.bin")).expect("downloaded");
    assert!(back == big, "the download differs: {} bytes", back.len());
    let keys = s3.keys("site/ftp/alice/");
    assert!(
        keys.contains(&"site/ftp/alice/moved.bin".to_owned())
            && !keys.contains(&"site/ftp/alice/big.bin".to_owned()),
        "{keys:?}"
    );
    assert!(s3.object("site/ftp/alice/moved.bin") == big);
    assert!(
        keys.iter().any(|k| k.starts_with("site/ftp/alice/made/"))
            && !keys.iter().any(|k| k.starts_with("site/ftp/alice/gone/")),
        "{keys:?}"
    );
}
