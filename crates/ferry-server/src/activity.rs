//! The audit log (one JSON object per command) and the xferlog (one wu-ftpd line
//! per transfer).
//!
//! Each log is written by its own thread through a channel: a session never waits
//! on the disk. Every line is one `write` on a file opened with `O_APPEND`, so
//! lines from concurrent sessions, and from several ferry processes sharing a file,
//! never interleave. Passwords are never written: PASS is logged as `****`.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc::{Sender, channel};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use time::OffsetDateTime;

/// One log file, written by a thread of its own.
#[derive(Debug)]
struct LineWriter {
    tx: Mutex<Option<Sender<Vec<u8>>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl LineWriter {
    fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent)?;
        }
        let mut file = OpenOptions::new().create(true).append(true).open(path)?;
        let (tx, rx) = channel::<Vec<u8>>();
        let shown = path.display().to_string();
        let thread = std::thread::Builder::new()
            .name("ferry-log".into())
            .spawn(move || {
                for line in rx {
                    if let Err(e) = file.write_all(&line) {
                        tracing::error!(file = %shown, error = %e, "cannot write a log line");
                    }
                }
                let _ = file.flush();
            })?;
        Ok(LineWriter {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    fn write(&self, line: Vec<u8>) {
        if let Some(tx) = self.tx.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            let _ = tx.send(line);
        }
    }

    /// Writes what is queued and stops the thread.
    fn close(&self) {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }
}

/// One command, as the audit log records it.
#[derive(Debug, Serialize)]
pub struct AuditRecord<'a> {
    pub time: String,
    pub session: u64,
    pub user: Option<&'a str>,
    pub client: SocketAddr,
    /// `"sftp"` for SFTP requests (whose `code` is then an SFTP status
    /// code); absent for FTP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<&'a str>,
    pub command: &'a str,
    /// The argument as sent (PASS masked); absent when there was none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arg: Option<&'a str>,
    /// The path the command acted on, from the storage root.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub code: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

/// One finished transfer, as xferlog records it.
#[derive(Debug)]
pub struct XferRecord<'a> {
    pub end: SystemTime,
    pub duration: Duration,
    pub client: SocketAddr,
    pub bytes: u64,
    /// From the storage root.
    pub path: &'a str,
    pub ascii: bool,
    /// `o` for a download, `i` for an upload.
    pub direction: char,
    pub anonymous: bool,
    /// The user name; for anonymous logins, the address given as password.
    pub user: &'a str,
    pub complete: bool,
}

/// The server's activity logs.
#[derive(Debug, Default)]
pub struct ActivityLog {
    audit: Option<LineWriter>,
    xferlog: Option<LineWriter>,
}

/// RFC 3339 with milliseconds, UTC.
pub fn rfc3339(t: SystemTime) -> String {
    let t = OffsetDateTime::from(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

impl XferRecord<'_> {
    /// The wu-ftpd xferlog line: `DDD MMM dd hh:mm:ss YYYY secs host size file type
    /// _ direction mode user ftp 0 * status`. Times are UTC; white space in file
    /// names becomes `_`, so that analysers splitting on spaces read it whole.
    pub fn line(&self) -> String {
        let t = OffsetDateTime::from(self.end);
        let when = format!(
            "{} {} {:>2} {:02}:{:02}:{:02} {}",
            DAYS[usize::from(t.weekday().number_days_from_monday())],
            MONTHS[usize::from(u8::from(t.month())) - 1],
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.year()
        );
        let secs = self.duration.as_secs_f64().ceil().max(1.0) as u64;
        let file: String = self
            .path
            .chars()
            .map(|c| if c.is_whitespace() { '_' } else { c })
            .collect();
        let user: String = self
            .user
            .chars()
            .map(|c| if c.is_whitespace() { '_' } else { c })
            .collect();
        format!(
            "{when} {secs} {} {} {file} {} _ {} {} {user} ftp 0 * {}\n",
            self.client.ip(),
            self.bytes,
            if self.ascii { 'a' } else { 'b' },
            self.direction,
            if self.anonymous { 'a' } else { 'r' },
            if self.complete { 'c' } else { 'i' }
        )
    }
}

impl ActivityLog {
    /// Opens the logs that are configured (`None` or an empty path: off).
    pub fn open(audit: Option<&PathBuf>, xferlog: Option<&PathBuf>) -> std::io::Result<Self> {
        let open = |p: Option<&PathBuf>| -> std::io::Result<Option<LineWriter>> {
            match p {
                Some(p) if !p.as_os_str().is_empty() => LineWriter::open(p).map(Some),
                _ => Ok(None),
            }
        };
        Ok(ActivityLog {
            audit: open(audit)?,
            xferlog: open(xferlog)?,
        })
    }

    /// Whether any log is on: when none is, a session skips the bookkeeping
    /// (paths, names, times) a log line would need.
    pub fn is_on(&self) -> bool {
        self.audit.is_some() || self.xferlog.is_some()
    }

    /// Whether the audit log is on.
    pub fn audits(&self) -> bool {
        self.audit.is_some()
    }

    pub fn audit(&self, record: &AuditRecord<'_>) {
        if let Some(w) = &self.audit
            && let Ok(mut line) = serde_json::to_vec(record)
        {
            line.push(b'\n');
            w.write(line);
        }
    }

    pub fn xfer(&self, record: &XferRecord<'_>) {
        if let Some(w) = &self.xferlog {
            w.write(record.line().into_bytes());
        }
    }

    /// Writes everything queued; call once the server has stopped.
    pub fn close(&self) {
        for w in [&self.audit, &self.xferlog].into_iter().flatten() {
            w.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xferlog_line() {
        let end = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_285_805); // Sat 2026-11-21 18:30:05 UTC
        let r = XferRecord {
            end,
            duration: Duration::from_millis(1500),
            client: "127.0.0.1:4000".parse().expect("addr"),
            bytes: 1234,
            path: "/alice/my file.txt",
            ascii: false,
            direction: 'o',
            anonymous: false,
            user: "alice",
            complete: true,
        };
        assert_eq!(
            r.line(),
            "Sat Nov 21 18:30:05 2026 2 127.0.0.1 1234 /alice/my_file.txt b _ o r alice ftp 0 * c\n"
        );
    }

    #[test]
    fn concurrent_lines_stay_whole() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("logs/audit.jsonl");
        let log = std::sync::Arc::new(ActivityLog::open(Some(&path), None).expect("open"));
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for i in 0..200 {
                        let arg = format!("{t}-{i}-{}", "x".repeat(500));
                        log.audit(&AuditRecord {
                            time: rfc3339(SystemTime::now()),
                            session: t,
                            user: Some("u"),
                            client: "127.0.0.1:1".parse().expect("addr"),
                            protocol: None,
                            command: "RETR",
                            arg: Some(&arg),
                            path: None,
                            code: 226,
                            bytes: Some(1),
                            duration_ms: Some(0),
                        });
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("join");
        }
        log.close();
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text.lines().count(), 1600);
        for line in text.lines() {
            let v: serde_json::Value =
                serde_json::from_str(line).expect("each line is one JSON object");
            assert_eq!(v["code"], 226);
        }
    }
}
