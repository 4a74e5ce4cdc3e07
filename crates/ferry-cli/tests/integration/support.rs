//! Starting a real `ferry serve` on loopback, and the clients that talk to it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const ALICE_PASSWORD: &str = "alice-pw";
pub const BOB_PASSWORD: &str = "bob-pw";

pub fn ferry_bin() -> &'static str {
    env!("CARGO_BIN_EXE_ferry")
}

/// An argon2id hash of `password`, made by `ferry hash-password`.
pub fn hash(password: &str) -> String {
    let mut child = Command::new(ferry_bin())
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run ferry hash-password");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{password}\n").as_bytes())
        .expect("write password");
    let out = child.wait_with_output().expect("hash-password");
    assert!(out.status.success(), "hash-password failed");
    String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_owned()
}

fn hashes() -> &'static (String, String) {
    static H: OnceLock<(String, String)> = OnceLock::new();
    H.get_or_init(|| (hash(ALICE_PASSWORD), hash(BOB_PASSWORD)))
}

/// The standard test configuration: alice with full access to /alice, bob with
/// read-only access except an upload directory, anonymous read-only on /pub.
pub fn standard_config(extra_server: &str) -> String {
    let (alice, bob) = hashes();
    format!(
        r#"
[server]
listen = ["127.0.0.1:0"]
{extra_server}

[anonymous]
enabled = true
home = "/pub"

[[groups]]
name = "readers"
permissions = {{ "/" = ["list", "download"] }}

[[users]]
name = "alice"
password_hash = "{alice}"

[[users]]
name = "bob"
password_hash = "{bob}"
groups = ["readers"]
permissions = {{ "/inbox" = ["list", "upload", "mkdir"] }}
"#
    )
}

/// Users with limits, all with the password `pw`.
pub fn limits_config() -> String {
    let pw = hash("pw");
    let now = time_now_utc_minutes();
    let hhmm = |m: i64| {
        let m = m.rem_euclid(24 * 60);
        format!("{:02}:{:02}", m / 60, m % 60)
    };
    // Hours around now, and hours that ended a minute ago.
    let (day_start, day_end) = (hhmm(now - 60), hhmm(now + 60));
    let (night_start, night_end) = (hhmm(now - 180), hhmm(now - 1));
    let user = |name: &str, extra: &str| {
        format!("[[users]]\nname = \"{name}\"\npassword_hash = \"{pw}\"\n{extra}\n")
    };
    [
        "[server]\nlisten = [\"127.0.0.1:0\"]\nmax_connections_per_ip = 100\n".to_owned(),
        "[[groups]]\nname = \"pairs\"\nmax_sessions = 2\n".to_owned(),
        user("quota", "quota_bytes = \"100000\"\nquota_files = 3"),
        user("sized", "max_file_size = \"50000\""),
        user(
            "patterns",
            "denied_files = [\"*.exe\"]\nallowed_files = [\"*.txt\", \"*.exe\"]",
        ),
        user("net", "allow_from = [\"127.0.0.0/31\"]"),
        user(
            "denied",
            "allow_from = [\"127.0.0.0/8\"]\ndeny_from = [\"127.0.0.1\"]",
        ),
        user(
            "daytime",
            &format!("login_hours = [\"* {day_start}-{day_end}\"]"),
        ),
        user(
            "nighttime",
            &format!("login_hours = [\"* {night_start}-{night_end}\"]"),
        ),
        user("solo", "max_sessions = 1"),
        user("paired", "groups = [\"pairs\"]"),
        user("own_limit", "groups = [\"pairs\"]\nmax_sessions = 3"),
        user(
            "slow",
            "download_rate = \"1 MiB/s\"\nupload_rate = \"1 MiB/s\"",
        ),
    ]
    .concat()
}

/// Minutes since midnight, UTC.
fn time_now_utc_minutes() -> i64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    ((secs % 86_400) / 60) as i64
}

/// A `ferry serve` process; stopped when dropped.
pub struct FerryServer {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    stderr_lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl FerryServer {
    /// Starts with the standard configuration.
    pub fn start() -> Self {
        Self::start_with(&standard_config(""))
    }

    /// Starts with this configuration text (it must listen on 127.0.0.1:0).
    pub fn start_with(config: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("ferry.toml"), config).expect("write config");
        Self::start_in(dir)
    }

    /// Starts in `dir`, which holds a ferry.toml.
    pub fn start_in(dir: tempfile::TempDir) -> Self {
        Self::start_in_with_limit(dir, None)
    }

    /// Starts with this configuration text under a file-size limit
    /// (RLIMIT_FSIZE, `ulimit -f`) of `bytes`: a write past it fails as on a
    /// full disk.
    pub fn start_with_file_size_limit(config: &str, bytes: u64) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("ferry.toml"), config).expect("write config");
        Self::start_in_with_limit(dir, Some(bytes))
    }

    fn start_in_with_limit(dir: tempfile::TempDir, file_size: Option<u64>) -> Self {
        for sub in ["files/alice", "files/bob/inbox", "files/pub", "files/slow"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
        }
        let (child, addr, stderr_lines) = Self::spawn(dir.path(), file_size);
        FerryServer {
            child: Some(child),
            addr,
            dir,
            stderr_lines,
        }
    }

    fn spawn(
        dir: &Path,
        file_size: Option<u64>,
    ) -> (
        Child,
        SocketAddr,
        std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    ) {
        // prlimit (util-linux) sets the limit on the command it runs.
        let mut command = match file_size {
            Some(bytes) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--fsize={bytes}")).arg("--").arg(ferry_bin());
                c
            }
            None => Command::new(ferry_bin()),
        };
        let mut child = command
            .args(["serve", "--root", "files"])
            .current_dir(dir)
            .env("FERRY_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ferry serve");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("ferry: serving FTP on ") {
                    let addr = rest.split(',').next().unwrap_or("").to_owned();
                    let _ = tx.send(addr);
                }
                sink.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("ferry serve did not report its address")
            .parse()
            .expect("address");
        (child, addr, lines)
    }

    /// Kills the server at once (SIGKILL: connections drop mid-transfer), then
    /// starts it again in the same directory. With a fixed port in the
    /// configuration (see [`free_port`]) clients find it where it was.
    pub fn crash_and_restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let (child, addr, lines) = Self::spawn(self.dir.path(), None);
        self.child = Some(child);
        self.addr = addr;
        self.stderr_lines = lines;
    }

    /// The SHA-256 fingerprint of the server's TLS certificate, as it logged it.
    pub fn fingerprint(&self) -> String {
        let line = self.wait_for_log("TLS certificate SHA-256 fingerprint ");
        line.rsplit(' ').next().unwrap_or_default().to_owned()
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The host directory behind an FTP user's files.
    pub fn files(&self) -> PathBuf {
        self.dir.path().join("files")
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        self.stderr_lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .join("\n")
    }

    /// Waits for the process to exit (after a signal sent elsewhere).
    pub fn terminate_wait(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "ferry did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// A memory figure of the server process from `/proc/PID/status`, in
    /// KiB: `VmRSS` (resident now), `VmHWM` (the peak), ...
    pub fn memory_kib(&self, field: &str) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/PID/status"))
    }
}

impl Drop for FerryServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs a command to completion with a time limit, and returns its output.
pub fn run(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {cmd:?}: {e} (is it installed? .ci/run installs it)")
        });
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out_thread = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stdout.read_to_end(&mut v);
        v
    });
    let err_thread = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stderr.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out_thread.join().unwrap_or_default(),
        stderr: err_thread.join().unwrap_or_default(),
    }
}

/// Runs a command and insists that it succeeds; returns stdout.
pub fn run_ok(cmd: &mut Command, limit: Duration) -> String {
    let desc = format!("{cmd:?}");
    let out = run(cmd, limit);
    assert!(
        out.status.success(),
        "{desc} failed with {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs one of the Python scripts in tests/scripts against a server.
pub fn python_script(name: &str, server: &FerryServer, extra: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/scripts")
        .join(name);
    let mut cmd = Command::new("python3");
    cmd.arg(&script)
        .arg(server.addr.ip().to_string())
        .arg(server.port().to_string())
        .arg(server.files());
    cmd.args(extra);
    run_ok(&mut cmd, Duration::from_secs(300))
}

/// curl, quiet but for errors, failing on an FTP error reply, with a minute
/// at most; `extra` goes before the URL.
pub fn curl(extra: &[&str], url: String) -> Command {
    let mut c = Command::new("curl");
    c.args(["--silent", "--show-error", "--fail", "--max-time", "60"])
        .args(extra)
        .arg(url);
    c
}

/// A raw control connection, for commands no client library would send.
pub struct RawControl {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl RawControl {
    /// Wraps a connected stream and reads the server's first reply.
    fn greeted(stream: TcpStream) -> (Self, String) {
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let writer = stream.try_clone().expect("clone");
        let mut raw = RawControl {
            reader: BufReader::new(stream),
            writer,
        };
        let first = raw.reply();
        (raw, first)
    }

    pub fn connect(server: &FerryServer) -> Self {
        Self::connect_to(server.addr)
    }

    /// Connects to a server by its address (from another thread).
    pub fn connect_to(addr: SocketAddr) -> Self {
        let (raw, banner) = Self::greeted(TcpStream::connect(addr).expect("connect"));
        assert!(banner.starts_with("220"), "banner: {banner}");
        raw
    }

    /// Connects from a chosen loopback address, and returns the first reply too.
    pub fn connect_from(server: &FerryServer, source: [u8; 4]) -> (Self, String) {
        Self::greeted(tcp_from(source, server.addr).expect("connect"))
    }

    pub fn login(server: &FerryServer, user: &str, pass: &str) -> Self {
        let mut raw = Self::connect(server);
        assert!(raw.cmd(&format!("USER {user}")).starts_with("331"));
        let r = raw.cmd(&format!("PASS {pass}"));
        assert!(r.starts_with("230"), "login: {r}");
        raw
    }

    /// Sends bytes, ignoring a connection the server already closed.
    pub fn try_send_bytes(&mut self, bytes: &[u8]) {
        let _ = self.writer.write_all(bytes);
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("send");
    }

    /// Reads one whole reply (all lines of a multi-line one).
    pub fn reply(&mut self) -> String {
        let mut text = String::new();
        let mut first_code: Option<String> = None;
        loop {
            let mut line = String::new();
            let n = self.reader.read_line(&mut line).expect("read reply");
            assert!(
                n > 0,
                "connection closed while waiting for a reply; got so far: {text:?}"
            );
            text.push_str(&line);
            let code = line.get(..3).unwrap_or("").to_owned();
            let is_last =
                |c: &str| line.len() > 3 && line.as_bytes()[3] == b' ' && line.starts_with(c);
            match &first_code {
                None if line.as_bytes().get(3) == Some(&b'-') => first_code = Some(code),
                None => return text,
                Some(c) if is_last(c) => return text,
                Some(_) => {}
            }
        }
    }

    /// Sends a command line and reads its reply.
    pub fn cmd(&mut self, line: &str) -> String {
        self.send_bytes(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// Whether the server has closed the connection (reads EOF).
    pub fn is_closed(&mut self) -> bool {
        let mut buf = String::new();
        matches!(self.reader.read_line(&mut buf), Ok(0) | Err(_))
    }

    /// While a transfer runs: asks STAT until the server says it has moved at
    /// least `bytes` (or 20 s pass), so that a test knows the server has read
    /// what it sent rather than guessing with a sleep.
    pub fn wait_for_transfer_bytes(&mut self, bytes: u64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r = self.cmd("STAT");
            assert!(r.starts_with("213"), "STAT during a transfer: {r}");
            let moved = r
                .split(" bytes transferred")
                .next()
                .and_then(|s| s.rsplit(' ').next())
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no byte count in {r}"));
            if moved >= bytes {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the server moved {moved} of {bytes} bytes in 20 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// EPSV, then the port it announced.
    pub fn epsv_port(&mut self) -> u16 {
        let r = self.cmd("EPSV");
        assert!(r.starts_with("229"), "EPSV: {r}");
        r.split("|||")
            .nth(1)
            .and_then(|s| s.split('|').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {r}"))
    }

    /// EPSV, then connect the data socket.
    pub fn pasv_data(&mut self) -> TcpStream {
        let port = self.epsv_port();
        let addr = SocketAddr::new(self.writer.peer_addr().expect("peer").ip(), port);
        TcpStream::connect(addr).expect("data connect")
    }

    /// RETR over a passive data connection that must succeed (150, then
    /// 226): the file's bytes.
    pub fn retr(&mut self, name: &str) -> Vec<u8> {
        self.receive(&format!("RETR {name}"))
    }

    /// A command that sends data to the client (RETR, LIST, NLST, MLSD) over
    /// a passive data connection, which must succeed (150, then 226): the
    /// bytes it sent.
    pub fn receive(&mut self, command: &str) -> Vec<u8> {
        let mut data = self.pasv_data();
        let r = self.cmd(command);
        assert_eq!(r.get(..3), Some("150"), "{command}: {r}");
        let mut body = Vec::new();
        data.read_to_end(&mut body).expect("data");
        let r = self.reply();
        assert_eq!(r.get(..3), Some("226"), "{command} ended: {r}");
        body
    }
}

/// Makes a FIFO at `path` (a special file a server must not wait on).
pub fn make_fifo(path: &Path) {
    let made = Command::new("mkfifo").arg(path).status().expect("mkfifo");
    assert!(made.success(), "mkfifo {} failed", path.display());
}

/// A TCP connection to `to` from a chosen loopback source address.
pub fn tcp_from(source: [u8; 4], to: SocketAddr) -> std::io::Result<TcpStream> {
    use rustix::net::{AddressFamily, SocketType};
    let fd = rustix::net::socket(AddressFamily::INET, SocketType::STREAM, None)?;
    rustix::net::bind(&fd, &SocketAddr::from((source, 0)))?;
    rustix::net::connect(&fd, &to)?;
    Ok(TcpStream::from(fd))
}

/// The files under `root` (recursively), each by its path relative to
/// `root`, sorted.
pub fn files_under(root: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p
                    .strip_prefix(root)
                    .expect("under root")
                    .display()
                    .to_string();
                out.push((rel, p));
            }
        }
    }
    out.sort();
    out
}

/// Gives the file at `path` the modification time `secs` after the epoch.
pub fn set_mtime(path: &Path, secs: u64) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(std::time::UNIX_EPOCH + Duration::from_secs(secs)))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// Every file's modification time under `root` (whole seconds after the
/// epoch), by path relative to `root`.
pub fn mtimes_of(root: &Path) -> Vec<(String, u64)> {
    files_under(root)
        .into_iter()
        .map(|(rel, p)| {
            let t = std::fs::metadata(&p)
                .and_then(|m| m.modified())
                .expect("mtime")
                .duration_since(std::time::UNIX_EPOCH)
                .expect("after 1970")
                .as_secs();
            (rel, t)
        })
        .collect()
}

/// A fresh random file of `len` bytes.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A throwaway PostgreSQL server on loopback, stopped when dropped.
pub struct PgServer {
    child: Option<Child>,
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    pub url: String,
}

fn pg_bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("FERRY_TEST_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .filter(|p| p.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions
        .pop()
        .expect("PostgreSQL is not installed (apt-get install postgresql; .ci/run does it)")
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Runs a PostgreSQL program, as the `postgres` user when we are root (PostgreSQL
/// refuses to run as root).
fn pg_command(bin: &Path, program: &str) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(program));
        c
    } else {
        Command::new(bin.join(program))
    }
}

impl PgServer {
    pub fn start() -> PgServer {
        let bin = pg_bin_dir();
        let dir = tempfile::tempdir().expect("tmp");
        if is_root() {
            run_ok(
                Command::new("chown")
                    .args(["-R", "postgres"])
                    .arg(dir.path()),
                Duration::from_secs(20),
            );
        }
        let data = dir.path().join("data");
        run_ok(
            pg_command(&bin, "initdb").arg("-D").arg(&data).args([
                "-A",
                "trust",
                "-U",
                "ferry",
                "-E",
                "UTF8",
                "--no-sync",
            ]),
            Duration::from_secs(120),
        );
        let port = free_port();
        let mut pg = PgServer {
            child: None,
            bin,
            dir,
            port,
            url: format!("postgres://ferry@127.0.0.1:{port}/postgres"),
        };
        pg.launch();
        pg
    }

    /// Starts the server on its data directory and port, and waits until it
    /// takes connections.
    fn launch(&mut self) {
        let port = self.port.to_string();
        let child = pg_command(&self.bin, "postgres")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-h", "127.0.0.1", "-p", &port, "-F"])
            .args(["-c", "max_connections=50"])
            .arg("-k")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start postgres");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &port])
                .args(["-U", "ferry", "-d", "postgres"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "PostgreSQL did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Shuts the server down, as an outage would; its data and port stay for
    /// [`PgServer::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGINT is PostgreSQL's fast shutdown; the backends go with it.
            // It goes to the postmaster itself (its pid is the first line of
            // postmaster.pid): runuser, our child when we are root, does not
            // pass SIGINT on, and killing it would leave PostgreSQL running.
            let pid = std::fs::read_to_string(self.dir.path().join("data/postmaster.pid"))
                .ok()
                .and_then(|text| text.lines().next().map(str::to_owned))
                .unwrap_or_else(|| child.id().to_string());
            let _ = Command::new("kill").args(["-INT", &pid]).status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again after [`PgServer::stop`], on the same port.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "PostgreSQL is still running");
        self.launch();
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `ferry ARGS` in `dir`, with `stdin` as standard input.
pub fn ferry_in(dir: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(ferry_bin())
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ferry");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("stdin");
    child.wait_with_output().expect("ferry")
}

/// Like [`ferry_in`], insisting on success; returns stdout.
pub fn ferry_ok(dir: &Path, args: &[&str], stdin: &str) -> String {
    let out = ferry_in(dir, args, stdin);
    assert!(
        out.status.success(),
        "ferry {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Starts `ferry serve` in an existing directory holding a ferry.toml.
pub fn serve_in(dir: tempfile::TempDir) -> FerryServer {
    FerryServer::start_in(dir)
}

impl FerryServer {
    /// The implicit-FTPS address, once the server has announced it.
    pub fn implicit_addr(&self) -> SocketAddr {
        let line = self.wait_for_log("ferry: serving implicit FTPS on ");
        line.trim_start_matches("ferry: serving implicit FTPS on ")
            .parse()
            .expect("implicit address")
    }

    /// Waits (up to a minute) for a log line containing `text`, and returns it.
    pub fn wait_for_log(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(line) = self.log().lines().find(|l| l.contains(text)) {
                return line.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {text:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a signal (`TERM`, `HUP`, ...) to the server process.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{name} failed");
    }
}

/// A TCP relay on loopback that records every byte it carries, both ways.
pub struct RecordingProxy {
    pub addr: SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl RecordingProxy {
    /// Relays what `listener` accepts to `target`, connecting from `source_ip`.
    /// The caller binds the listener, so a port chosen in advance stays held
    /// until the relay owns it (no other test's connection can take it between).
    pub fn start(
        listener: std::net::TcpListener,
        target: SocketAddr,
        source_ip: [u8; 4],
        recorded: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    ) -> Self {
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (rec, halt) = (recorded.clone(), stop.clone());
        std::thread::spawn(move || {
            while !halt.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let _ = client.set_nonblocking(false);
                let upstream = tcp_from(source_ip, target).expect("connect upstream");
                for (mut from, mut to) in [
                    (
                        client.try_clone().expect("clone"),
                        upstream.try_clone().expect("clone"),
                    ),
                    (upstream, client),
                ] {
                    let rec = rec.clone();
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16384];
                        loop {
                            match from.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    rec.lock()
                                        .unwrap_or_else(|p| p.into_inner())
                                        .extend_from_slice(&buf[..n]);
                                    if to.write_all(&buf[..n]).is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                }
            }
        });
        let _ = recorded;
        RecordingProxy { addr, stop }
    }
}

impl Drop for RecordingProxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A loopback port that was free a moment ago, for servers that must come back
/// on the same address after a restart, and for peers that bind a port of
/// their own choosing.
///
/// The port lies below the kernel's ephemeral range, so no connection made by
/// a test running alongside can take it as its local port before the server
/// binds it (a port from `bind(…:0)` could be). Each call hands out a
/// different port; the walk starts at an offset taken from the process id so
/// that two test processes rarely meet.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    const LOW: u32 = 10_000;
    if ephemeral_low < LOW + 1_000 {
        return std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
    }
    let span = ephemeral_low - LOW;
    // In u64: a process id times the step passes u32 for ids above ~540,000.
    let start = u64::from(std::process::id()) * 7919 % u64::from(span);
    for _ in 0..span {
        let step = u64::from(NEXT.fetch_add(1, Ordering::Relaxed));
        let port = u64::from(LOW) + (start + step) % u64::from(span);
        let port = u16::try_from(port).expect("ports below the ephemeral range fit u16");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port between {LOW} and {ephemeral_low}");
}
