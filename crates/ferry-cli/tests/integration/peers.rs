//! The FTP servers people run, started on loopback for the client's tests:
//! vsftpd (with TLS, `require_ssl_reuse=YES`), ProFTPD and Pure-FTPd. Installed
//! by scripts/install-peers (vsftpd from apt, the other two unpacked into
//! $FERRY_PEERS, default /opt/ferry-peers) and run in the foreground with a
//! configuration of the test's own; each is stopped when dropped.

use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::free_port;

/// The system user vsftpd logs in (created by scripts/install-peers).
pub const VSFTPD_USER: &str = "ferrypeer";
pub const VSFTPD_PASSWORD: &str = "ferrypeer-pw";

fn peers_dir() -> PathBuf {
    std::env::var_os("FERRY_PEERS").map_or_else(|| PathBuf::from("/opt/ferry-peers"), PathBuf::from)
}

fn sh(cmd: &str) {
    let status = Command::new("sh").args(["-c", cmd]).status().expect("sh");
    assert!(status.success(), "{cmd} failed");
}

/// A peer server process; killed (with its session processes) when dropped.
pub struct PeerServer {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
    user: &'static str,
    password: &'static str,
    /// The CA certificate that signed the server's certificate, when it has TLS.
    pub ca: Option<PathBuf>,
    name: &'static str,
}

impl PeerServer {
    /// `scheme://user:password@127.0.0.1:port`
    pub fn base(&self, scheme: &str) -> String {
        format!(
            "{scheme}://{}:{}@127.0.0.1:{}",
            self.user, self.password, self.port
        )
    }

    /// Where the logged-in user's files are on the host.
    pub fn files(&self) -> PathBuf {
        self.dir.path().join("files")
    }

    /// Cuts every session's connection at once (the listener lives on): kills
    /// the server's child processes, which hold the sessions.
    pub fn kill_sessions(&self) {
        // Every descendant: a vsftpd session is two processes, the child of
        // the listener and its own child.
        let mut pids = vec![self.child.id().to_string()];
        let mut descendants = Vec::new();
        while let Some(pid) = pids.pop() {
            let out = Command::new("pgrep")
                .args(["-P", &pid])
                .output()
                .expect("pgrep");
            for child in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                pids.push(child.to_owned());
                descendants.push(child.to_owned());
            }
        }
        if !descendants.is_empty() {
            let _ = Command::new("kill")
                .arg("-KILL")
                .args(&descendants)
                .status();
        }
    }

    /// Gives the server's user the files directory (after the test wrote there).
    pub fn hand_over(&self) {
        let owner = if self.name == "vsftpd" {
            VSFTPD_USER
        } else {
            "nobody"
        };
        sh(&format!("chown -R {owner} {}", self.files().display()));
    }

    fn new_dir(owner: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("files")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("empty")).expect("mkdir");
        // The servers drop privileges: they must reach and write the files.
        sh(&format!(
            "chmod 755 {} && chown {owner} {}/files",
            dir.path().display(),
            dir.path().display()
        ));
        dir
    }

    fn wait_ready(mut self) -> Self {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let mut buf = [0u8; 3];
                if s.read_exact(&mut buf).is_ok() && &buf == b"220" {
                    return self;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited at start with {status}; installed by scripts/install-peers?",
                    self.name
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not start on port {}",
                self.name,
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// vsftpd with plain FTP and explicit TLS (certificate from a test CA,
    /// `require_ssl_reuse=YES`), or implicit TLS only.
    pub fn vsftpd(implicit: bool) -> Self {
        let dir = Self::new_dir(VSFTPD_USER);
        let d = dir.path().display().to_string();
        let ca = test_ca(dir.path());
        let port = free_port();
        let conf = format!(
            "listen=YES\nlisten_address=127.0.0.1\nlisten_port={port}\nbackground=NO\n\
             seccomp_sandbox=NO\nsecure_chroot_dir={d}/empty\nanonymous_enable=NO\n\
             local_enable=YES\nwrite_enable=YES\nlocal_umask=022\nlocal_root={d}/files\n\
             chroot_local_user=YES\nallow_writeable_chroot=YES\npam_service_name=vsftpd\n\
             userlist_enable=NO\nxferlog_enable=NO\nssl_enable=YES\n\
             rsa_cert_file={d}/cert.pem\nrsa_private_key_file={d}/key.pem\n\
             require_ssl_reuse=YES\nforce_local_logins_ssl=NO\nforce_local_data_ssl=NO\n\
             ssl_ciphers=HIGH\nimplicit_ssl={}\nmax_per_ip=50\n",
            if implicit { "YES" } else { "NO" }
        );
        std::fs::write(dir.path().join("vsftpd.conf"), conf).expect("conf");
        let child = Command::new("vsftpd")
            .arg(dir.path().join("vsftpd.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("vsftpd (installed by scripts/install-peers)");
        let server = PeerServer {
            child,
            port,
            dir,
            user: VSFTPD_USER,
            password: VSFTPD_PASSWORD,
            ca: Some(ca),
            name: "vsftpd",
        };
        if implicit {
            // An implicit-TLS server sends its 220 only inside TLS: wait for
            // the port alone.
            let deadline = Instant::now() + Duration::from_secs(15);
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(Instant::now() < deadline, "vsftpd did not start");
                std::thread::sleep(Duration::from_millis(50));
            }
            return server;
        }
        server.wait_ready()
    }

    /// ProFTPD with a virtual user from an AuthUserFile (sha512-crypt), and
    /// mod_digest for HASH and the X* checksum commands.
    pub fn proftpd() -> Self {
        let dir = Self::new_dir("nobody");
        let d = dir.path().display().to_string();
        let hash = openssl_passwd("peer-pw");
        std::fs::write(
            dir.path().join("passwd"),
            format!("peer:{hash}:65534:65534::{d}/files:/bin/sh\n"),
        )
        .expect("passwd");
        sh(&format!("chmod 600 {d}/passwd"));
        let port = free_port();
        let conf = format!(
            "ServerName \"ferry test ProFTPD\"\nServerType standalone\nDefaultServer on\n\
             Port {port}\nDefaultAddress 127.0.0.1\nUseIPv6 off\nUser nobody\nGroup nogroup\n\
             PidFile {d}/proftpd.pid\nScoreboardFile {d}/proftpd.scoreboard\nDelayTable none\n\
             WtmpLog off\nTransferLog none\nSystemLog {d}/system.log\n\
             AuthOrder mod_auth_file.c\nAuthUserFile {d}/passwd\nRequireValidShell off\n\
             DefaultRoot ~\nAllowStoreRestart on\nAllowOverwrite on\nUseReverseDNS off\n\
             Umask 022\nMaxInstances 50\nModulePath {}/usr/lib/proftpd\n\
             LoadModule mod_digest.c\nDigestEngine on\n",
            peers_dir().display()
        );
        std::fs::write(dir.path().join("proftpd.conf"), conf).expect("conf");
        let peers = peers_dir();
        let child = Command::new(peers.join("usr/sbin/proftpd"))
            .args(["-n", "-c"])
            .arg(dir.path().join("proftpd.conf"))
            .env("LD_LIBRARY_PATH", peers.join("usr/lib/x86_64-linux-gnu"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("proftpd (installed by scripts/install-peers)");
        PeerServer {
            child,
            port,
            dir,
            user: "peer",
            password: "peer-pw",
            ca: None,
            name: "proftpd",
        }
        .wait_ready()
    }

    /// Pure-FTPd with a virtual user in a PureDB (sha512-crypt, so a login
    /// takes milliseconds, not pure-pw's seconds of argon2).
    pub fn pure_ftpd() -> Self {
        let dir = Self::new_dir("nobody");
        let d = dir.path().display().to_string();
        let hash = openssl_passwd("pure-pw");
        std::fs::write(
            dir.path().join("pureftpd.passwd"),
            format!("peer:{hash}:65534:65534::{d}/files/./::::::::::::\n"),
        )
        .expect("passwd");
        let peers = peers_dir();
        let status = Command::new(peers.join("usr/bin/pure-pw"))
            .args([
                "mkdb",
                &format!("{d}/pureftpd.pdb"),
                "-f",
                &format!("{d}/pureftpd.passwd"),
            ])
            .status()
            .expect("pure-pw (installed by scripts/install-peers)");
        assert!(status.success(), "pure-pw mkdb failed");
        let port = free_port();
        let child = Command::new(peers.join("usr/sbin/pure-ftpd"))
            .args([
                "-S",
                &format!("127.0.0.1,{port}"),
                "-l",
                &format!("puredb:{d}/pureftpd.pdb"),
                "-E",
                "-A",
                "-H",
                "-c",
                "50",
                "-C",
                "50",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pure-ftpd (installed by scripts/install-peers)");
        PeerServer {
            child,
            port,
            dir,
            user: "peer",
            password: "pure-pw",
            ca: None,
            name: "pure-ftpd",
        }
        .wait_ready()
    }
}

impl Drop for PeerServer {
    fn drop(&mut self) {
        self.kill_sessions();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn openssl_passwd(password: &str) -> String {
    let out = Command::new("openssl")
        .args(["passwd", "-6", password])
        .output()
        .expect("openssl");
    assert!(out.status.success(), "openssl passwd failed");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A test CA and a certificate for 127.0.0.1 signed by it, in `dir`
/// (ca.pem, cert.pem, key.pem). Returns the CA's path.
pub fn test_ca(dir: &Path) -> PathBuf {
    let d = dir.display();
    sh(&format!(
        "cd {d} && openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 \
         -subj /CN=ferry-test-ca 2>/dev/null && openssl req -newkey rsa:2048 -nodes -keyout key.pem \
         -out leaf.csr -subj /CN=127.0.0.1 2>/dev/null && printf 'subjectAltName=IP:127.0.0.1\\n\
         basicConstraints=CA:FALSE\\n' > leaf.ext && openssl x509 -req -in leaf.csr -CA ca.pem \
         -CAkey ca.key -CAcreateserial -out cert.pem -days 2 -extfile leaf.ext 2>/dev/null"
    ));
    dir.join("ca.pem")
}
