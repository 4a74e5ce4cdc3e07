//! The client commands: `ferry ls|get|put|rm|mkdir|rmdir|mv|mirror|shell`.
//! Argument parsing, credentials and output; the protocol work is in
//! ferry-client.

pub mod commands;
pub mod mirror;
pub mod progress;
pub mod prompt;
pub mod shell;

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use ferry_client::RateLimit;
use ferry_client::files::{Remote, TransferSettings};
use ferry_client::netrc::Netrc;
use ferry_client::sftp::host_key::is_ssh_fingerprint;
use ferry_client::{
    CertificateCheck, ConnectOptions, DataMode, FtpUrl, HostKeyCheck, PasvAddressPolicy,
    TlsVersions,
};
use ferry_config::{ByteRate, HumanDuration};

/// How to reach and log in to the server; shared by every client command.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectArgs {
    /// USER[:PASSWORD]; without a password, ~/.netrc is read, then a terminal is
    /// asked.
    #[arg(long, short = 'u', value_name = "USER[:PASS]")]
    pub user: Option<String>,
    /// Do not read ~/.netrc.
    #[arg(long)]
    pub no_netrc: bool,
    /// Accept any TLS certificate (handshake signatures are still checked), or
    /// for SFTP any SSH host key.
    #[arg(long, short = 'k')]
    pub insecure: bool,
    /// Trust the CA certificates in this PEM file instead of the system's.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Accept only a certificate with this SHA-256 fingerprint (hex), or for
    /// SFTP a host key with this fingerprint (SHA256:..., as ssh-keygen -l
    /// prints it).
    #[arg(long, value_name = "SHA256")]
    pub pin: Option<String>,
    /// SFTP: offer this private key (OpenSSH format: Ed25519, ECDSA or RSA;
    /// a passphrase is asked for); may be repeated. Default: the agent's
    /// keys, then ~/.ssh/id_ed25519, id_ecdsa, id_rsa.
    #[arg(long, short = 'i', value_name = "FILE")]
    pub identity: Vec<PathBuf>,
    /// SFTP: the known_hosts file that host keys are checked against (default
    /// ~/.ssh/known_hosts).
    #[arg(long, value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,
    /// SFTP: trust the host key of a server the known_hosts file does not know
    /// yet, and record it there (a changed key is still refused).
    #[arg(long)]
    pub accept_new_host_key: bool,
    /// Allow TLS 1.3 (default TLS 1.2, whose sessions data connections can always
    /// resume; see docs/client.md).
    #[arg(long)]
    pub tls13: bool,
    /// Active mode: the server connects back (EPRT, then PORT).
    #[arg(long)]
    pub active: bool,
    /// Use PASV only, never EPSV.
    #[arg(long)]
    pub no_epsv: bool,
    /// Which address to use after a 227 reply: control, reply or auto.
    #[arg(long, default_value = "auto", value_name = "POLICY")]
    pub pasv_address: PasvAddressPolicy,
    /// Time allowed to connect and finish a TLS handshake.
    #[arg(long, default_value = "30s", value_name = "DURATION")]
    pub connect_timeout: HumanDuration,
    /// Time allowed for each reply and each stretch of a transfer without data.
    #[arg(long, default_value = "120s", value_name = "DURATION")]
    pub timeout: HumanDuration,
    /// During a transfer, send NOOP on the control connection after this long
    /// without a command, so firewalls keep it ("0s": never).
    #[arg(long, default_value = "60s", value_name = "DURATION")]
    pub keepalive: HumanDuration,
}

/// Options of the commands that move files.
#[derive(Debug, Clone, clap::Args)]
pub struct TransferArgs {
    /// Continue a partial file (checked against the source first).
    #[arg(short = 'c', long = "continue")]
    pub resume: bool,
    /// Limit the total rate, e.g. 500K, 1M, "2 MiB" (K, M, G: powers of 1000).
    #[arg(long, value_name = "RATE")]
    pub limit_rate: Option<ByteRate>,
    /// Transfer this many files at once, each on its own connection.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub parallel: usize,
    /// Compare size and, where the server offers one, checksum after each file.
    #[arg(long)]
    pub verify: bool,
    /// Reconnect and resume this many times after a dropped connection.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub retries: u32,
    /// Print a JSON summary on stdout instead of lines.
    #[arg(long)]
    pub json: bool,
    /// No progress bars, even on a terminal.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

impl TransferArgs {
    pub fn settings(&self) -> TransferSettings {
        TransferSettings {
            resume: self.resume,
            verify: self.verify,
            rate: self.limit_rate.map(|r| RateLimit::new(r.0)),
            ..TransferSettings::default()
        }
    }
}

impl ConnectArgs {
    pub fn options(&self) -> anyhow::Result<ConnectOptions> {
        // A pin spelled as an SSH fingerprint is for host keys, not certificates.
        let ssh_pin = self.pin.clone().filter(|p| is_ssh_fingerprint(p));
        let tls_pin = self.pin.as_ref().filter(|_| ssh_pin.is_none());
        let host_key_check = match (ssh_pin, self.insecure) {
            (Some(pin), _) => HostKeyCheck::Fingerprint(pin),
            (None, true) => HostKeyCheck::Insecure,
            (None, false) => HostKeyCheck::KnownHosts {
                file: self.known_hosts.clone(),
                accept_new: self.accept_new_host_key,
            },
        };
        let certificate_check = match (tls_pin, &self.ca_file, self.insecure) {
            (Some(pin), _, _) => CertificateCheck::pinned(pin)?,
            (None, Some(ca), _) => CertificateCheck::CaFile(ca.clone()),
            (None, None, true) => CertificateCheck::Insecure,
            (None, None, false) => CertificateCheck::SystemRoots,
        };
        Ok(ConnectOptions {
            certificate_check,
            tls_versions: if self.tls13 {
                TlsVersions::Tls13Allowed
            } else {
                TlsVersions::Tls12
            },
            data_mode: if self.active {
                DataMode::Active
            } else {
                DataMode::Passive
            },
            pasv_address: self.pasv_address,
            connect_timeout: self.connect_timeout.0,
            io_timeout: self.timeout.0,
            use_epsv: !self.no_epsv,
            keepalive: Some(self.keepalive.0).filter(|d| !d.is_zero()),
            host_key_check,
            identities: self.identity.clone(),
            ask_password: prompt::ssh_prompt(),
        })
    }

    /// Parses a URL and fills in its credentials: the URL's own, else `--user`,
    /// else ~/.netrc, else anonymous (FTP) or the local user (SFTP); an FTP user
    /// without a password asks on a terminal. SFTP asks only after the keys
    /// were refused.
    pub fn resolve(&self, text: &str) -> anyhow::Result<(Remote, FtpUrl)> {
        let mut url = FtpUrl::parse(text)?;
        if url.user.is_none()
            && let Some(spec) = &self.user
        {
            match spec.split_once(':') {
                Some((u, p)) => {
                    url.user = Some(u.to_owned());
                    url.password = Some(p.to_owned());
                }
                None => url.user = Some(spec.clone()),
            }
        }
        if url.password.is_none() && !self.no_netrc {
            let netrc = Netrc::load_default();
            if let Some(entry) = netrc.lookup(&url.host) {
                let same_user = match (&url.user, &entry.login) {
                    (None, _) => true,
                    (Some(u), Some(l)) => u == l,
                    (Some(_), None) => true,
                };
                if same_user {
                    if url.user.is_none() {
                        url.user = entry.login.clone();
                    }
                    url.password = entry.password.clone();
                }
            }
        }
        if let Some(user) = &url.user
            && url.password.is_none()
            && url.security.is_ftp()
            && user != "anonymous"
            && user != "ftp"
        {
            if std::io::stdin().is_terminal() {
                let prompt = format!("Password for {user}@{}: ", url.host);
                url.password =
                    Some(rpassword::prompt_password(prompt).context("reading the password")?);
            } else {
                url.password = Some(String::new());
            }
        }
        let remote = Remote {
            url: url.with_path(""),
            options: self.options()?,
        };
        Ok((remote, url))
    }
}

/// The runtime of one client command.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// The last component of a remote path (`a/b/c.txt` gives `c.txt`).
pub fn basename(path: &str) -> &str {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(path)
}

/// Human time: `0.12s`, or `3.9ms` below a hundredth of a second, where two
/// decimals of a second would read `0.00s`.
pub fn human_seconds(seconds: f64) -> String {
    if seconds < 0.01 {
        format!("{:.1}ms", seconds * 1000.0)
    } else {
        format!("{seconds:.2}s")
    }
}

/// Human size: 1.5 MiB.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::{human_bytes, human_seconds};

    #[test]
    fn sizes_and_times_read_as_people_write_them() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 * 1024 * 1024 / 2), "1.5 MiB");
        assert_eq!(human_seconds(0.123), "0.12s");
        assert_eq!(human_seconds(12.0), "12.00s");
        // Two decimals of a second would say 0.00s.
        assert_eq!(human_seconds(0.0039), "3.9ms");
        assert_eq!(human_seconds(0.0), "0.0ms");
    }
}
