//! File checksums: HASH and OPTS HASH (draft-bryan-ftp-hash), RANG
//! (draft-bryan-ftp-range), and the XCRC, XMD5, XSHA1 and XSHA256 commands of
//! other servers, over a whole file or a byte range.

use ferry_accounts::Permission;
use ferry_proto::Reply;
use ferry_proto::command::{ByteRange, ChecksumCommand, PathArg};
use md5::Digest;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use super::Session;
use crate::error::SessionError;

/// A checksum algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlgorithm {
    Sha256,
    Sha1,
    Md5,
    Crc32,
}

impl HashAlgorithm {
    const ALL: [HashAlgorithm; 4] = [
        HashAlgorithm::Sha256,
        HashAlgorithm::Sha1,
        HashAlgorithm::Md5,
        HashAlgorithm::Crc32,
    ];

    pub fn name(self) -> &'static str {
        match self {
            HashAlgorithm::Sha256 => "SHA-256",
            HashAlgorithm::Sha1 => "SHA-1",
            HashAlgorithm::Md5 => "MD5",
            HashAlgorithm::Crc32 => "CRC32",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(s.trim()))
    }

    /// `HASH SHA-256*;SHA-1;MD5;CRC32`, the current one starred.
    pub fn feat_line(current: Self) -> String {
        let names: Vec<String> = Self::ALL
            .iter()
            .map(|a| {
                if *a == current {
                    format!("{}*", a.name())
                } else {
                    a.name().to_owned()
                }
            })
            .collect();
        format!("HASH {}", names.join(";"))
    }
}

enum Hasher {
    Sha256(sha2::Sha256),
    Sha1(sha1::Sha1),
    Md5(md5::Md5),
    Crc32(crc32fast::Hasher),
}

impl Hasher {
    fn new(a: HashAlgorithm) -> Self {
        match a {
            HashAlgorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            HashAlgorithm::Sha1 => Hasher::Sha1(sha1::Sha1::new()),
            HashAlgorithm::Md5 => Hasher::Md5(md5::Md5::new()),
            HashAlgorithm::Crc32 => Hasher::Crc32(crc32fast::Hasher::new()),
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha1(h) => h.update(data),
            Hasher::Md5(h) => h.update(data),
            Hasher::Crc32(h) => h.update(data),
        }
    }

    fn finish(self) -> String {
        match self {
            Hasher::Sha256(h) => hex::encode(h.finalize()),
            Hasher::Sha1(h) => hex::encode(h.finalize()),
            Hasher::Md5(h) => hex::encode(h.finalize()),
            Hasher::Crc32(h) => format!("{:08X}", h.finalize()),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    pub(super) fn cmd_rang(&mut self, range: Option<ByteRange>) -> Reply {
        self.range = range;
        match range {
            Some(r) => Reply::new(
                350,
                format!(
                    "Restricting to bytes {}-{}.",
                    r.start,
                    r.end.map_or(0, |e| e - 1)
                ),
            ),
            None => Reply::new(350, "Range reset to the whole file."),
        }
    }

    pub(super) async fn cmd_checksum(
        &mut self,
        kind: ChecksumCommand,
        arg: &PathArg,
        range: Option<ByteRange>,
    ) -> Result<Reply, SessionError> {
        let path = self.resolve(arg)?;
        self.check(Permission::Download, &path)?;
        let meta = self.metadata(&path).await?;
        if meta.is_dir() {
            return Err(SessionError::NotAFile(format!("{path}: not a plain file.")));
        }
        let (algo, range) = match kind {
            ChecksumCommand::Hash => (self.hash, range.or(self.range.take())),
            ChecksumCommand::Xcrc => (HashAlgorithm::Crc32, range),
            ChecksumCommand::Xmd5 => (HashAlgorithm::Md5, range),
            ChecksumCommand::Xsha1 => (HashAlgorithm::Sha1, range),
            ChecksumCommand::Xsha256 => (HashAlgorithm::Sha256, range),
        };
        let start = range.map_or(0, |r| r.start).min(meta.size);
        let end = range
            .and_then(|r| r.end)
            .unwrap_or(meta.size)
            .min(meta.size)
            .max(start);
        let mut reader = self
            .storage()?
            .read(&path, start)
            .await
            .map_err(|e| SessionError::storage(&path, e))?;
        let mut hasher = Hasher::new(algo);
        let mut left = end - start;
        let mut buf = vec![0u8; 256 * 1024];
        while left > 0 {
            let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
            let n = reader
                .read(&mut buf[..want])
                .await
                .map_err(|e| SessionError::storage(&path, e.into()))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            left -= n as u64;
        }
        let digest = hasher.finish();
        Ok(match kind {
            ChecksumCommand::Hash => Reply::new(
                213,
                format!(
                    "{} {}-{} {} {}",
                    algo.name(),
                    start,
                    end.saturating_sub(1).max(start),
                    digest,
                    arg.as_str()
                ),
            ),
            _ => Reply::new(250, digest),
        })
    }
}
