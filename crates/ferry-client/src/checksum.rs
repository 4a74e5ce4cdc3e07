//! Checksums the client compares with the server's: the algorithms of HASH
//! (draft-bryan-ftp-hash) and the X* commands, computed locally over a file or a
//! byte range of it.

use std::path::Path;

use md5::Digest;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::error::{ClientError, Result};

/// A checksum algorithm servers offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum HashAlgorithm {
    #[serde(rename = "SHA-256")]
    Sha256,
    #[serde(rename = "SHA-1")]
    Sha1,
    #[serde(rename = "MD5")]
    Md5,
    #[serde(rename = "CRC32")]
    Crc32,
}

impl HashAlgorithm {
    /// The name as HASH and FEAT spell it.
    pub fn name(self) -> &'static str {
        match self {
            HashAlgorithm::Sha256 => "SHA-256",
            HashAlgorithm::Sha1 => "SHA-1",
            HashAlgorithm::Md5 => "MD5",
            HashAlgorithm::Crc32 => "CRC32",
        }
    }

    /// Parses a name as HASH and FEAT spell it (case-insensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Sha256, Self::Sha1, Self::Md5, Self::Crc32]
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name.trim()))
    }
}

/// A checksum: algorithm and lowercase hex digest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Checksum {
    pub algorithm: HashAlgorithm,
    pub hex: String,
}

impl Checksum {
    /// The checksum of zero bytes.
    pub fn of_nothing(algorithm: HashAlgorithm) -> Self {
        LocalHasher::new(algorithm).finish()
    }
}

impl std::fmt::Display for Checksum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.algorithm.name(), self.hex)
    }
}

/// An incremental local hash.
#[derive(Debug)]
pub enum LocalHasher {
    Sha256(sha2::Sha256),
    Sha1(sha1::Sha1),
    Md5(md5::Md5),
    Crc32(crc32fast::Hasher),
}

impl LocalHasher {
    pub fn new(algorithm: HashAlgorithm) -> Self {
        match algorithm {
            HashAlgorithm::Sha256 => LocalHasher::Sha256(sha2::Sha256::new()),
            HashAlgorithm::Sha1 => LocalHasher::Sha1(sha1::Sha1::new()),
            HashAlgorithm::Md5 => LocalHasher::Md5(md5::Md5::new()),
            HashAlgorithm::Crc32 => LocalHasher::Crc32(crc32fast::Hasher::new()),
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            LocalHasher::Sha256(h) => h.update(bytes),
            LocalHasher::Sha1(h) => h.update(bytes),
            LocalHasher::Md5(h) => h.update(bytes),
            LocalHasher::Crc32(h) => h.update(bytes),
        }
    }

    pub fn finish(self) -> Checksum {
        let (algorithm, hex) = match self {
            LocalHasher::Sha256(h) => (HashAlgorithm::Sha256, hex::encode(h.finalize())),
            LocalHasher::Sha1(h) => (HashAlgorithm::Sha1, hex::encode(h.finalize())),
            LocalHasher::Md5(h) => (HashAlgorithm::Md5, hex::encode(h.finalize())),
            LocalHasher::Crc32(h) => (HashAlgorithm::Crc32, format!("{:08x}", h.finalize())),
        };
        Checksum { algorithm, hex }
    }
}

/// The checksum of bytes `start..end` of a local file.
pub async fn hash_file_range(
    path: &Path,
    algorithm: HashAlgorithm,
    start: u64,
    end: u64,
) -> Result<Checksum> {
    let local = |e| ClientError::local(path, e);
    let mut file = tokio::fs::File::open(path).await.map_err(local)?;
    file.seek(std::io::SeekFrom::Start(start))
        .await
        .map_err(local)?;
    let mut hasher = LocalHasher::new(algorithm);
    let mut left = end.saturating_sub(start);
    let mut buf = vec![0u8; 256 * 1024];
    while left > 0 {
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        let n = file.read(&mut buf[..want]).await.map_err(local)?;
        if n == 0 {
            return Err(local(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "file is shorter than expected",
            )));
        }
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests() {
        let mut h = LocalHasher::new(HashAlgorithm::Sha256);
        h.update(b"abc");
        assert_eq!(
            h.finish().hex,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let mut h = LocalHasher::new(HashAlgorithm::Crc32);
        h.update(b"123456789");
        assert_eq!(h.finish().hex, "cbf43926");
        assert_eq!(
            Checksum::of_nothing(HashAlgorithm::Md5).hex,
            "d41d8cd98f00b204e9800998ecf8427e"
        );
    }

    #[tokio::test]
    async fn ranges_of_files() {
        let dir = tempfile::tempdir().expect("test input");
        let p = dir.path().join("f");
        std::fs::write(&p, b"xxabcxx").expect("test input");
        let c = hash_file_range(&p, HashAlgorithm::Sha256, 2, 5)
            .await
            .expect("test input");
        let mut h = LocalHasher::new(HashAlgorithm::Sha256);
        h.update(b"abc");
        assert_eq!(c, h.finish());
        assert!(
            hash_file_range(&p, HashAlgorithm::Sha256, 2, 50)
                .await
                .is_err()
        );
    }
}
