//! Web peers for ferry-url's tests: an HTTP(S) server with test routes
//! (tests/scripts/http_routes.py) and tinyproxy, each on a loopback port and
//! stopped when dropped.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::free_port;

/// The Python route server.
pub struct HttpServer {
    child: Child,
    pub port: u16,
    /// `http://127.0.0.1:PORT` (or https).
    pub base: String,
}

impl HttpServer {
    pub fn start() -> Self {
        Self::spawn(&[], "http")
    }

    /// HTTPS with this certificate and key.
    pub fn start_tls(cert: &Path, key: &Path) -> Self {
        Self::spawn(
            &[
                "--tls",
                &cert.display().to_string(),
                &key.display().to_string(),
            ],
            "https",
        )
    }

    fn spawn(args: &[&str], scheme: &str) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scripts/http_routes.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("port line");
        let port: u16 = line
            .trim()
            .trim_start_matches("port ")
            .parse()
            .expect("port");
        HttpServer {
            child,
            port,
            base: format!("{scheme}://127.0.0.1:{port}"),
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A proxy started by a test: killed when dropped.
pub struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Daemon {
    /// Starts `command` (output discarded) and waits until it listens on
    /// `port` of 127.0.0.1.
    pub fn start(command: &mut Command, port: u16, what: &str, limit: Duration) -> Self {
        let daemon = Daemon(
            command
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("{what} (installed by .ci/run): {e}")),
        );
        let deadline = Instant::now() + limit;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "{what} did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        daemon
    }
}

/// A directory the proxy's own user (it drops root) can write its logs to.
fn world_writable_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let status = Command::new("chmod")
        .arg("777")
        .arg(dir.path())
        .status()
        .expect("chmod");
    assert!(status.success());
    dir
}

/// tinyproxy, optionally with Basic authentication.
pub struct Tinyproxy {
    _daemon: Daemon,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Tinyproxy {
    pub fn start(auth: Option<(&str, &str)>) -> Self {
        let dir = world_writable_dir();
        let port = free_port();
        let mut conf = format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 60\nLogFile \"{}/tinyproxy.log\"\nLogLevel Info\n\
             MaxClients 50\nAllow 127.0.0.1\nUser nobody\nGroup nogroup\n",
            dir.path().display()
        );
        if let Some((u, p)) = auth {
            conf.push_str(&format!("BasicAuth {u} {p}\n"));
        }
        std::fs::write(dir.path().join("tinyproxy.conf"), conf).expect("conf");
        let daemon = Daemon::start(
            Command::new("tinyproxy")
                .args(["-d", "-c"])
                .arg(dir.path().join("tinyproxy.conf")),
            port,
            "tinyproxy",
            Duration::from_secs(15),
        );
        Tinyproxy {
            _daemon: daemon,
            port,
            dir,
        }
    }

    /// What tinyproxy logged so far (it names every request it carried).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("tinyproxy.log")).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// Squid on loopback, as an HTTP proxy that also speaks FTP to servers
/// (`ftp_proxy`): stopped when dropped.
pub struct Squid {
    _daemon: Daemon,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Squid {
    pub fn start() -> Self {
        // Squid drops to its own user (proxy) and writes its logs here.
        let dir = world_writable_dir();
        let port = free_port();
        let d = dir.path().display();
        let conf = format!(
            "http_port 127.0.0.1:{port}\nacl local src 127.0.0.0/8\nhttp_access allow local\n\
             http_access deny all\ncache deny all\ncache_mem 8 MB\npinger_enable off\n\
             access_log stdio:{d}/access.log\ncache_log {d}/cache.log\npid_filename {d}/squid.pid\n\
             coredump_dir {d}\nshutdown_lifetime 0 seconds\n"
        );
        std::fs::write(dir.path().join("squid.conf"), conf).expect("conf");
        let daemon = Daemon::start(
            Command::new("squid")
                .args(["-N", "-n"])
                .arg(format!("ferrytest{port}"))
                .arg("-f")
                .arg(dir.path().join("squid.conf")),
            port,
            "squid",
            Duration::from_secs(30),
        );
        Squid {
            _daemon: daemon,
            port,
            dir,
        }
    }

    /// What Squid logged of the requests it carried.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}
