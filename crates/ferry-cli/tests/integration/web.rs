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

/// tinyproxy, optionally with Basic authentication.
pub struct Tinyproxy {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Tinyproxy {
    pub fn start(auth: Option<(&str, &str)>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let status = Command::new("chmod")
            .arg("777")
            .arg(dir.path())
            .status()
            .expect("chmod");
        assert!(status.success());
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
        let child = Command::new("tinyproxy")
            .args(["-d", "-c"])
            .arg(dir.path().join("tinyproxy.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tinyproxy (installed by .ci/run)");
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tinyproxy did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Tinyproxy { child, port, dir }
    }

    /// What tinyproxy logged so far (it names every request it carried).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("tinyproxy.log")).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Squid on loopback, as an HTTP proxy that also speaks FTP to servers
/// (`ftp_proxy`): stopped when dropped.
pub struct Squid {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Squid {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        // Squid drops to its own user (proxy) and writes its logs here.
        let status = Command::new("chmod")
            .arg("777")
            .arg(dir.path())
            .status()
            .expect("chmod");
        assert!(status.success());
        let port = free_port();
        let d = dir.path().display();
        let conf = format!(
            "http_port 127.0.0.1:{port}\nacl local src 127.0.0.0/8\nhttp_access allow local\n\
             http_access deny all\ncache deny all\ncache_mem 8 MB\npinger_enable off\n\
             access_log stdio:{d}/access.log\ncache_log {d}/cache.log\npid_filename {d}/squid.pid\n\
             coredump_dir {d}\nshutdown_lifetime 0 seconds\n"
        );
        std::fs::write(dir.path().join("squid.conf"), conf).expect("conf");
        let child = Command::new("squid")
            .args(["-N", "-n"])
            .arg(format!("ferrytest{port}"))
            .arg("-f")
            .arg(dir.path().join("squid.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("squid (installed by .ci/run)");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "squid did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Squid { child, port, dir }
    }

    /// What Squid logged of the requests it carried.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Squid {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
