//! Revoked keys (`sftp.revoked_keys`, as sshd's `RevokedKeys`): keys and
//! certificates that sign nobody in, whether a user lists the key in
//! `authorized_keys`, a certificate certifies it, or it is the authority that
//! signed a certificate. Read at start and again on SIGHUP
//! (`super::SftpContext::reload_trust`).
//!
//! The file takes either of sshd's two forms, told apart by its first bytes:
//!
//! - **text**: OpenSSH public keys, one per line (blank lines and `#`
//!   comments skipped);
//! - **a binary Key Revocation List** (KRL, made and updated by
//!   `ssh-keygen -k`; the format is OpenSSH's PROTOCOL.krl): plain keys by
//!   their wire form or their SHA-1 or SHA-256 hash, and certificates by
//!   serial number (lists, ranges and bitmaps) or key id, either for one
//!   authority or for any (a section with no authority key).
//!
//! What a KRL revokes is decided as OpenSSH's `ssh_krl_check_key` decides
//! it: a certificate is revoked when its key or its authority's key is, or
//! when a section for its authority (or for any) names its key id or its
//! serial number; serial number 0 (a certificate made without `-z`) is never
//! matched by serial, and a KRL that tries to revoke it is refused. A KRL
//! with a signature section, an unknown section or a critical extension is
//! refused whole, as OpenSSH 9.4 and later refuse it: a list that cannot be
//! read entirely must not be half applied. At start that stops the server;
//! on SIGHUP the old list stays.

use std::collections::HashSet;
use std::fmt;
use std::ops::RangeInclusive;
use std::path::Path;

use russh::keys::ssh_encoding::{Decode, Encode};
use russh::keys::ssh_key::Fingerprint;
use russh::keys::ssh_key::public::KeyData;
use russh::keys::{Certificate, HashAlg, PublicKey};
use sha1::Digest;

use super::SftpSetupError;

/// The first bytes of a binary Key Revocation List (PROTOCOL.krl § 1).
const KRL_MAGIC: &[u8] = b"SSHKRL\n\0";

/// The KRL format version read (PROTOCOL.krl § 1).
const KRL_FORMAT_VERSION: u32 = 1;

/// The longest serial bitmap read, in bytes: OpenSSH's bound on an mpint
/// (`SSHBUF_MAX_BIGNUM`), 16,384 serial numbers from one offset.
const MAX_BITMAP_BYTES: usize = 2048;

/// The section types of a KRL (PROTOCOL.krl §§ 1–2).
mod section {
    pub const CERTIFICATES: u8 = 1;
    pub const EXPLICIT_KEY: u8 = 2;
    pub const FINGERPRINT_SHA1: u8 = 3;
    pub const SIGNATURE: u8 = 4;
    pub const FINGERPRINT_SHA256: u8 = 5;
    pub const EXTENSION: u8 = 255;
    /// The subsections of a certificates section.
    pub const CERT_SERIAL_LIST: u8 = 0x20;
    pub const CERT_SERIAL_RANGE: u8 = 0x21;
    pub const CERT_SERIAL_BITMAP: u8 = 0x22;
    pub const CERT_KEY_ID: u8 = 0x23;
    pub const CERT_EXTENSION: u8 = 0x39;
}

/// Why a binary KRL is not read. The file is named by the
/// [`SftpSetupError::RevokedKeys`] that carries it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KrlError {
    /// The file ends inside a field, or a length runs past what holds it.
    #[error("truncated or malformed {0}")]
    Malformed(&'static str),
    /// A format version other than 1.
    #[error("KRL format version {0}, where ferry reads version 1")]
    Version(u32),
    /// A section type PROTOCOL.krl does not define.
    #[error("an unknown section type {0}")]
    UnknownSection(u8),
    /// A subsection type of a certificates section PROTOCOL.krl does not
    /// define.
    #[error("an unknown certificate section type {0:#04x}")]
    UnknownCertificateSection(u8),
    /// An extension marked critical: what it means cannot be ignored, and
    /// ferry knows none.
    #[error("the critical extension {0:?}, which ferry does not understand")]
    CriticalExtension(String),
    /// A signature section: OpenSSH 9.4 and later refuse signed KRLs too.
    #[error(
        "a signature section: signed KRLs are not read (check a KRL's origin with `ssh-keygen -Y verify` instead)"
    )]
    Signed,
    /// A section holds bytes after its last field.
    #[error("{extra} bytes left over in a {section} section")]
    TrailingData { section: &'static str, extra: usize },
    /// A SHA-1 hash not 20 bytes long, or a SHA-256 hash not 32.
    #[error("a {algorithm} hash of {len} bytes")]
    HashLength { algorithm: &'static str, len: usize },
    /// Serial number 0, which every certificate made without one carries.
    #[error(
        "serial number 0, which cannot be revoked (certificates made without a serial carry it)"
    )]
    SerialZero,
    /// A serial range whose end comes before its start.
    #[error("the serial range {lo}-{hi}, which ends before it starts")]
    BackwardRange { lo: u64, hi: u64 },
    /// A bitmap that is negative or longer than [`MAX_BITMAP_BYTES`].
    #[error("a serial bitmap that is negative or longer than 16,384 bits")]
    Bitmap,
    /// A bitmap that reaches past the largest serial number.
    #[error("a serial bitmap past serial number 2^64 - 1")]
    BitmapWraps,
}

/// Why a certificate is revoked (beyond its key or its authority's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateRevocation {
    /// Its serial number is revoked.
    Serial(u64),
    /// Its key id is revoked.
    KeyId(String),
}

/// Certificates revoked by serial number or key id, for one authority or
/// for any.
#[derive(Debug, Clone, Default)]
struct RevokedCertificates {
    /// The SHA-256 digest of the authority's key in wire form; `None`: the
    /// section is for certificates of every authority.
    authority: Option<[u8; 32]>,
    /// Revoked serial numbers, as ranges sorted and merged once read.
    serials: Vec<RangeInclusive<u64>>,
    /// Revoked key ids.
    key_ids: HashSet<Vec<u8>>,
}

impl RevokedCertificates {
    /// Sorts and merges the serial ranges, so that a lookup is a binary
    /// search.
    fn settle(&mut self) {
        self.serials.sort_by_key(|r| *r.start());
        let mut merged: Vec<RangeInclusive<u64>> = Vec::with_capacity(self.serials.len());
        for range in self.serials.drain(..) {
            match merged.last_mut() {
                Some(last) if *range.start() <= last.end().saturating_add(1) => {
                    if range.end() > last.end() {
                        *last = *last.start()..=*range.end();
                    }
                }
                _ => merged.push(range),
            }
        }
        self.serials = merged;
    }

    fn revokes_serial(&self, serial: u64) -> bool {
        let after = self.serials.partition_point(|r| *r.start() <= serial);
        after > 0 && self.serials[after - 1].contains(&serial)
    }
}

/// The keys and certificates that no longer sign in.
#[derive(Debug, Default, Clone)]
pub struct RevokedKeys {
    /// SHA-256 digests of revoked plain keys in wire form: the keys of the
    /// text form and of a KRL's explicit-key sections, and a KRL's SHA-256
    /// hashes (the same digest, which is what a `SHA256:` fingerprint
    /// shows).
    sha256: HashSet<[u8; 32]>,
    /// SHA-1 digests of revoked plain keys (a KRL's SHA-1 sections).
    sha1: HashSet<[u8; 20]>,
    /// Certificates revoked by serial number or key id, one entry per
    /// authority.
    certificates: Vec<RevokedCertificates>,
}

impl RevokedKeys {
    /// Reads the file in either form (module documentation). An empty file
    /// revokes nothing.
    pub fn read(path: &Path) -> Result<Self, SftpSetupError> {
        let failed = |reason: String| SftpSetupError::RevokedKeys {
            path: path.display().to_string(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| failed(e.to_string()))?;
        if bytes.starts_with(KRL_MAGIC) {
            return Self::from_krl(&bytes).map_err(|e| failed(format!("in its KRL, {e}")));
        }
        let text = String::from_utf8(bytes).map_err(|_| {
            failed("neither a key revocation list (KRL) nor UTF-8 text of public keys".into())
        })?;
        let fingerprints = super::key_fingerprints(&text).map_err(failed)?;
        Ok(RevokedKeys {
            sha256: fingerprints
                .into_iter()
                .filter_map(|f| f.sha256())
                .collect(),
            ..RevokedKeys::default()
        })
    }

    /// Revokes these keys.
    pub fn from_keys<'a>(keys: impl IntoIterator<Item = &'a PublicKey>) -> Self {
        RevokedKeys {
            sha256: keys.into_iter().map(|k| sha256_of(k.key_data())).collect(),
            ..RevokedKeys::default()
        }
    }

    /// Reads a binary KRL (PROTOCOL.krl), magic included.
    pub fn from_krl(bytes: &[u8]) -> Result<Self, KrlError> {
        let mut r = bytes
            .strip_prefix(KRL_MAGIC)
            .ok_or(KrlError::Malformed("header"))?;
        let version: u32 = field(&mut r, "header")?;
        if version != KRL_FORMAT_VERSION {
            return Err(KrlError::Version(version));
        }
        // krl_version, generated_date, flags, reserved, comment: nothing
        // here depends on them.
        for _ in 0..3 {
            let _: u64 = field(&mut r, "header")?;
        }
        for _ in 0..2 {
            let _: Vec<u8> = field(&mut r, "header")?;
        }
        let mut revoked = RevokedKeys::default();
        while !r.is_empty() {
            let kind: u8 = field(&mut r, "section")?;
            if kind == section::SIGNATURE {
                return Err(KrlError::Signed);
            }
            let data: Vec<u8> = field(&mut r, "section")?;
            let mut s = &data[..];
            match kind {
                section::CERTIFICATES => revoked.read_certificates(&mut s)?,
                section::EXPLICIT_KEY => {
                    while !s.is_empty() {
                        let blob: Vec<u8> = field(&mut s, "explicit key section")?;
                        revoked.sha256.insert(sha2::Sha256::digest(&blob).into());
                    }
                }
                section::FINGERPRINT_SHA1 => {
                    while !s.is_empty() {
                        revoked.sha1.insert(hash(&mut s, "SHA-1")?);
                    }
                }
                section::FINGERPRINT_SHA256 => {
                    while !s.is_empty() {
                        revoked.sha256.insert(hash(&mut s, "SHA-256")?);
                    }
                }
                section::EXTENSION => extension(&mut s, "extension")?,
                other => return Err(KrlError::UnknownSection(other)),
            }
        }
        for certificates in &mut revoked.certificates {
            certificates.settle();
        }
        Ok(revoked)
    }

    /// A certificates section (PROTOCOL.krl § 2): the authority, then its
    /// subsections.
    fn read_certificates(&mut self, s: &mut &[u8]) -> Result<(), KrlError> {
        let ca: Vec<u8> = field(s, "certificates section")?;
        let _reserved: Vec<u8> = field(s, "certificates section")?;
        let authority = (!ca.is_empty()).then(|| sha2::Sha256::digest(&ca).into());
        let at = match self
            .certificates
            .iter()
            .position(|c| c.authority == authority)
        {
            Some(at) => at,
            None => {
                self.certificates.push(RevokedCertificates {
                    authority,
                    ..RevokedCertificates::default()
                });
                self.certificates.len() - 1
            }
        };
        let entry = &mut self.certificates[at];
        while !s.is_empty() {
            let kind: u8 = field(s, "certificates section")?;
            let data: Vec<u8> = field(s, "certificates section")?;
            let mut d = &data[..];
            match kind {
                section::CERT_SERIAL_LIST => {
                    while !d.is_empty() {
                        let serial: u64 = field(&mut d, "serial list")?;
                        entry.serials.push(serial_range(serial, serial)?);
                    }
                }
                section::CERT_SERIAL_RANGE => {
                    let lo: u64 = field(&mut d, "serial range")?;
                    let hi: u64 = field(&mut d, "serial range")?;
                    entry.serials.push(serial_range(lo, hi)?);
                    finished(d, "serial range")?;
                }
                section::CERT_SERIAL_BITMAP => {
                    let offset: u64 = field(&mut d, "serial bitmap")?;
                    let bitmap: Vec<u8> = field(&mut d, "serial bitmap")?;
                    finished(d, "serial bitmap")?;
                    for range in bitmap_ranges(offset, &bitmap)? {
                        entry
                            .serials
                            .push(serial_range(*range.start(), *range.end())?);
                    }
                }
                section::CERT_KEY_ID => {
                    while !d.is_empty() {
                        let id: Vec<u8> = field(&mut d, "key id list")?;
                        if id.contains(&0) {
                            return Err(KrlError::Malformed("key id list"));
                        }
                        entry.key_ids.insert(id);
                    }
                }
                section::CERT_EXTENSION => extension(&mut d, "certificate extension")?,
                other => return Err(KrlError::UnknownCertificateSection(other)),
            }
        }
        Ok(())
    }

    /// How many keys, serial ranges and key ids are revoked.
    pub fn len(&self) -> usize {
        self.sha256.len()
            + self.sha1.len()
            + self
                .certificates
                .iter()
                .map(|c| c.serials.len() + c.key_ids.len())
                .sum::<usize>()
    }

    /// Whether nothing is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the plain key `key` is revoked (a certificate's key, its
    /// authority's, or a key of `authorized_keys`).
    pub fn contains(&self, key: &KeyData) -> bool {
        if !self.sha256.is_empty() && self.sha256.contains(&sha256_of(key)) {
            return true;
        }
        !self.sha1.is_empty()
            && key.encode_vec().is_ok_and(|blob| {
                self.sha1
                    .contains(&<[u8; 20]>::from(sha1::Sha1::digest(blob)))
            })
    }

    /// Whether `cert` is revoked by its serial number or key id (its keys
    /// are asked of [`RevokedKeys::contains`]).
    pub fn revokes_certificate(&self, cert: &Certificate) -> Option<CertificateRevocation> {
        if self.certificates.is_empty() {
            return None;
        }
        let authority = sha256_of(cert.signature_key());
        for entry in &self.certificates {
            if entry.authority.is_some_and(|a| a != authority) {
                continue;
            }
            if entry.key_ids.contains(cert.key_id().as_bytes()) {
                return Some(CertificateRevocation::KeyId(cert.key_id().to_owned()));
            }
            if cert.serial() != 0 && entry.revokes_serial(cert.serial()) {
                return Some(CertificateRevocation::Serial(cert.serial()));
            }
        }
        None
    }
}

impl fmt::Display for RevokedKeys {
    /// What is revoked, counted, for the log of a reload.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (serials, ids) = self.certificates.iter().fold((0, 0), |(s, i), c| {
            (s + c.serials.len(), i + c.key_ids.len())
        });
        write!(
            f,
            "{} revoked keys, {serials} revoked certificate serial ranges, {ids} revoked certificate key ids",
            self.sha256.len() + self.sha1.len()
        )
    }
}

/// The SHA-256 digest of `key` in wire form: a `SHA256:` fingerprint's
/// bytes.
fn sha256_of(key: &KeyData) -> [u8; 32] {
    Fingerprint::new(HashAlg::Sha256, key)
        .sha256()
        .unwrap_or_default()
}

/// One field of an SSH wire encoding (RFC 4251 § 5), named `what` when it
/// is not there.
fn field<T: Decode>(r: &mut &[u8], what: &'static str) -> Result<T, KrlError> {
    T::decode(r).map_err(|_| KrlError::Malformed(what))
}

/// One hash of a fingerprint section, of the length its algorithm gives.
fn hash<const N: usize>(r: &mut &[u8], algorithm: &'static str) -> Result<[u8; N], KrlError> {
    let bytes: Vec<u8> = field(r, "fingerprint section")?;
    let len = bytes.len();
    bytes
        .try_into()
        .map_err(|_| KrlError::HashLength { algorithm, len })
}

/// An extension (PROTOCOL.krl §§ 2.5, 5): skipped unless critical.
fn extension(r: &mut &[u8], what: &'static str) -> Result<(), KrlError> {
    let name: Vec<u8> = field(r, what)?;
    let critical: u8 = field(r, what)?;
    let _contents: Vec<u8> = field(r, what)?;
    finished(r, what)?;
    if critical != 0 {
        return Err(KrlError::CriticalExtension(
            String::from_utf8_lossy(&name).into_owned(),
        ));
    }
    Ok(())
}

/// Refuses what is left after a section's last field.
fn finished(r: &[u8], section: &'static str) -> Result<(), KrlError> {
    match r.len() {
        0 => Ok(()),
        extra => Err(KrlError::TrailingData { section, extra }),
    }
}

/// The serials `lo` to `hi`, refusing 0 and backward ranges as OpenSSH does.
fn serial_range(lo: u64, hi: u64) -> Result<RangeInclusive<u64>, KrlError> {
    if lo == 0 {
        return Err(KrlError::SerialZero);
    }
    if lo > hi {
        return Err(KrlError::BackwardRange { lo, hi });
    }
    Ok(lo..=hi)
}

/// The serial numbers a bitmap section sets, as runs: bit N of the
/// bitmap, a positive big-endian integer (an SSH `mpint`), stands for
/// serial `offset + N`.
fn bitmap_ranges(offset: u64, mpint: &[u8]) -> Result<Vec<RangeInclusive<u64>>, KrlError> {
    if mpint.first().is_some_and(|b| b & 0x80 != 0) {
        return Err(KrlError::Bitmap);
    }
    let start = mpint.iter().position(|&b| b != 0).unwrap_or(mpint.len());
    let bits = &mpint[start..];
    if bits.len() > MAX_BITMAP_BYTES {
        return Err(KrlError::Bitmap);
    }
    let set = |n: usize| bits[bits.len() - 1 - n / 8] >> (n % 8) & 1 == 1;
    let nbits = bits.len() * 8;
    let mut runs = Vec::new();
    let mut n = 0;
    while n < nbits {
        if !set(n) {
            n += 1;
            continue;
        }
        let first = n;
        while n < nbits && set(n) {
            n += 1;
        }
        // Bits up to `n - 1` are serials: each must fit in 64 bits.
        let lo = offset.checked_add(first as u64);
        let hi = offset.checked_add(n as u64 - 1);
        match (lo, hi) {
            (Some(lo), Some(hi)) => runs.push(lo..=hi),
            _ => return Err(KrlError::BitmapWraps),
        }
    }
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{certificate_builder, ed25519_key};
    use russh::keys::ssh_key::certificate::CertType;

    fn key(seed: u8) -> PublicKey {
        ed25519_key(seed).public_key().clone()
    }

    fn blob(seed: u8) -> Vec<u8> {
        key(seed).key_data().encode_vec().expect("blob")
    }

    /// A certificate for key 1 by the authority of seed `ca`, with
    /// `serial` and `id`.
    fn certificate(ca: u8, serial: u64, id: &str) -> Certificate {
        let mut b = certificate_builder(&ed25519_key(1), CertType::User, 0..u64::MAX, id);
        b.serial(serial).expect("serial");
        b.valid_principal("alice").expect("principal");
        b.sign(&ed25519_key(ca)).expect("signed")
    }

    /// SSH wire encoding for the KRLs built here.
    fn string(bytes: &[u8]) -> Vec<u8> {
        let mut out = (bytes.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(bytes);
        out
    }

    fn part(kind: u8, data: &[u8]) -> Vec<u8> {
        let mut out = vec![kind];
        out.extend(string(data));
        out
    }

    /// A KRL of these sections, with an empty comment.
    fn krl(sections: &[Vec<u8>]) -> Vec<u8> {
        let mut out = KRL_MAGIC.to_vec();
        out.extend(1u32.to_be_bytes());
        for n in [3u64, 1_700_000_000, 0] {
            out.extend(n.to_be_bytes());
        }
        out.extend(string(b""));
        out.extend(string(b"made by a test"));
        for s in sections {
            out.extend(s);
        }
        out
    }

    /// A certificates section for the authority of seed `ca` (`None`: any).
    fn certificates(ca: Option<u8>, subsections: &[Vec<u8>]) -> Vec<u8> {
        let mut data = string(&ca.map(blob).unwrap_or_default());
        data.extend(string(b""));
        for s in subsections {
            data.extend(s);
        }
        part(section::CERTIFICATES, &data)
    }

    fn u64s(values: &[u64]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_be_bytes()).collect()
    }

    #[test]
    fn listed_keys_are_revoked_and_bad_files_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("revoked");
        let listed = key(1).to_openssh().expect("openssh");
        std::fs::write(&file, format!("# lost laptop\n{listed}\n\n")).expect("write");
        let revoked = RevokedKeys::read(&file).expect("read");
        assert_eq!(revoked.len(), 1);
        assert!(revoked.contains(key(1).key_data()));
        assert!(!revoked.contains(key(2).key_data()));
        assert_eq!(revoked.revokes_certificate(&certificate(9, 5, "x")), None);
        std::fs::write(&file, "").expect("write");
        assert!(RevokedKeys::read(&file).expect("empty").is_empty());
        for (text, says) in [
            (
                &b"SSHKRL\n\0\x00\x01"[..],
                "in its KRL, truncated or malformed header",
            ),
            (b"not a key\n", "line 1: not a public key"),
            (b"\xff\xfe", "nor UTF-8 text"),
        ] {
            std::fs::write(&file, text).expect("write");
            let err = RevokedKeys::read(&file).expect_err("refused").to_string();
            assert!(
                err.contains(&file.display().to_string()) && err.contains(says),
                "{err}"
            );
        }
    }

    /// Every kind of section PROTOCOL.krl defines, each deciding as
    /// OpenSSH's `ssh_krl_check_key` does.
    #[test]
    fn a_krl_revokes_keys_hashes_serials_and_key_ids() {
        let sha1 = |seed: u8| <[u8; 20]>::from(sha1::Sha1::digest(blob(seed))).to_vec();
        let sha256 = |seed: u8| sha256_of(key(seed).key_data()).to_vec();
        let bytes = krl(&[
            part(section::EXPLICIT_KEY, &string(&blob(2))),
            part(section::FINGERPRINT_SHA1, &string(&sha1(3))),
            part(section::FINGERPRINT_SHA256, &string(&sha256(4))),
            // A non-critical extension is skipped.
            part(section::EXTENSION, &{
                let mut d = string(b"bloom-explicit-key");
                d.push(0);
                d.extend(string(b"whatever"));
                d
            }),
            certificates(
                Some(9),
                &[
                    part(section::CERT_SERIAL_LIST, &u64s(&[5, 7])),
                    part(section::CERT_SERIAL_RANGE, &u64s(&[100, 200])),
                    // Bits 0, 2, 4 and 9 from 1000: 1000, 1002, 1004, 1009
                    // (a leading zero byte, as an mpint may have).
                    part(section::CERT_SERIAL_BITMAP, &{
                        let mut d = u64s(&[1000]);
                        d.extend(string(&[0x00, 0x02, 0x15]));
                        d
                    }),
                    part(section::CERT_KEY_ID, &string(b"stolen")),
                ],
            ),
            // Another section for the same authority adds to it.
            certificates(
                Some(9),
                &[part(section::CERT_SERIAL_RANGE, &u64s(&[201, 300]))],
            ),
            // Any authority: a key id.
            certificates(None, &[part(section::CERT_KEY_ID, &string(b"everywhere"))]),
        ]);
        let revoked = RevokedKeys::from_krl(&bytes).expect("read");
        for (seed, is_revoked) in [(1, false), (2, true), (3, true), (4, true), (9, false)] {
            assert_eq!(
                revoked.contains(key(seed).key_data()),
                is_revoked,
                "key {seed}"
            );
        }
        use CertificateRevocation::{KeyId, Serial};
        for (ca, serial, id, expected) in [
            (9, 5, "a", Some(Serial(5))),
            (9, 6, "a", None),
            (9, 7, "a", Some(Serial(7))),
            (9, 99, "a", None),
            (9, 100, "a", Some(Serial(100))),
            (9, 250, "a", Some(Serial(250))),
            (9, 300, "a", Some(Serial(300))),
            (9, 301, "a", None),
            (9, 1000, "a", Some(Serial(1000))),
            (9, 1001, "a", None),
            (9, 1004, "a", Some(Serial(1004))),
            (9, 1009, "a", Some(Serial(1009))),
            (9, 1010, "a", None),
            (9, 0, "a", None),
            (9, 6, "stolen", Some(KeyId("stolen".into()))),
            // Another authority's serials and ids are its own.
            (8, 5, "stolen", None),
            (8, 6, "everywhere", Some(KeyId("everywhere".into()))),
        ] {
            assert_eq!(
                revoked.revokes_certificate(&certificate(ca, serial, id)),
                expected,
                "CA {ca} serial {serial} id {id}"
            );
        }
        // Ranges 100–200 and 201–300 merged; 5, 7, 1000, 1002, 1004, 1009.
        assert_eq!(
            revoked.to_string(),
            "3 revoked keys, 7 revoked certificate serial ranges, 2 revoked certificate key ids"
        );
    }

    /// A KRL that cannot be read whole is refused, saying why.
    #[test]
    fn a_krl_that_cannot_be_read_whole_is_refused() {
        let bitmap = |offset: u64, bits: &[u8]| {
            let mut d = u64s(&[offset]);
            d.extend(string(bits));
            part(section::CERT_SERIAL_BITMAP, &d)
        };
        let mut version_2 = krl(&[]);
        version_2[11] = 2;
        let mut cut = krl(&[part(section::EXPLICIT_KEY, &string(&blob(2)))]);
        cut.truncate(cut.len() - 3);
        let critical = {
            let mut d = string(b"must-know@example.com");
            d.push(1);
            d.extend(string(b""));
            d
        };
        for (bytes, error) in [
            (version_2, KrlError::Version(2)),
            (cut, KrlError::Malformed("section")),
            (krl(&[part(6, b"")]), KrlError::UnknownSection(6)),
            (krl(&[vec![section::SIGNATURE]]), KrlError::Signed),
            (
                krl(&[part(section::EXTENSION, &critical)]),
                KrlError::CriticalExtension("must-know@example.com".into()),
            ),
            (
                krl(&[certificates(
                    Some(9),
                    &[part(section::CERT_EXTENSION, &critical)],
                )]),
                KrlError::CriticalExtension("must-know@example.com".into()),
            ),
            (
                krl(&[certificates(Some(9), &[part(0x24, b"")])]),
                KrlError::UnknownCertificateSection(0x24),
            ),
            (
                krl(&[part(section::FINGERPRINT_SHA256, &string(&[1; 20]))]),
                KrlError::HashLength {
                    algorithm: "SHA-256",
                    len: 20,
                },
            ),
            (
                krl(&[certificates(
                    None,
                    &[part(section::CERT_SERIAL_LIST, &u64s(&[0]))],
                )]),
                KrlError::SerialZero,
            ),
            (
                krl(&[certificates(
                    None,
                    &[part(section::CERT_SERIAL_RANGE, &u64s(&[9, 3]))],
                )]),
                KrlError::BackwardRange { lo: 9, hi: 3 },
            ),
            (
                krl(&[certificates(
                    None,
                    &[part(section::CERT_SERIAL_RANGE, &u64s(&[1, 2, 3]))],
                )]),
                KrlError::TrailingData {
                    section: "serial range",
                    extra: 8,
                },
            ),
            (
                krl(&[certificates(None, &[bitmap(1, &[0x80])])]),
                KrlError::Bitmap,
            ),
            (
                krl(&[certificates(
                    None,
                    &[bitmap(1, &vec![1; MAX_BITMAP_BYTES + 1])],
                )]),
                KrlError::Bitmap,
            ),
            (
                krl(&[certificates(None, &[bitmap(u64::MAX, &[0x02])])]),
                KrlError::BitmapWraps,
            ),
            (
                krl(&[certificates(None, &[bitmap(0, &[0x01])])]),
                KrlError::SerialZero,
            ),
            (
                krl(&[certificates(
                    None,
                    &[part(section::CERT_KEY_ID, &string(b"a\0b"))],
                )]),
                KrlError::Malformed("key id list"),
            ),
        ] {
            assert_eq!(RevokedKeys::from_krl(&bytes).map(|_| ()), Err(error));
        }
        // The last serial number is revocable by a bitmap ending there.
        let last = RevokedKeys::from_krl(&krl(&[certificates(
            None,
            &[bitmap(u64::MAX - 1, &[0x03])],
        )]))
        .expect("read");
        assert_eq!(
            last.revokes_certificate(&certificate(9, u64::MAX, "a")),
            Some(CertificateRevocation::Serial(u64::MAX))
        );
    }

    /// KRLs made by OpenSSH's `ssh-keygen -k` (serials it writes as lists,
    /// ranges and bitmaps as it sees fit, key ids, keys and hashes) decide
    /// as `ssh-keygen -Q` does for the same certificates and keys.
    #[test]
    fn krls_made_by_ssh_keygen_decide_as_ssh_keygen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let write = |name: &str, text: String| {
            std::fs::write(d.join(name), text).expect("write");
            d.join(name)
        };
        let ca = write("ca.pub", key(9).to_openssh().expect("ca"));
        let spec = write(
            "spec",
            format!(
                "serial: 1\nserial: 3\nserial: 5\nserial: 7\nserial: 9\nserial: 11\n\
                 serial: 500-600\nserial: 4000\nid: stolen\nkey: {}\nhash: {}\n",
                key(2).to_openssh().expect("key"),
                key(3).fingerprint(HashAlg::Sha256),
            ),
        );
        let krl = d.join("krl");
        let made = std::process::Command::new("ssh-keygen")
            .arg("-k")
            .arg("-f")
            .arg(&krl)
            .arg("-s")
            .arg(&ca)
            .arg(&spec)
            .output()
            .expect("ssh-keygen runs");
        assert!(
            made.status.success(),
            "{}",
            String::from_utf8_lossy(&made.stderr)
        );
        let revoked = RevokedKeys::read(&krl).expect("read");
        let openssh_revokes = |file: &Path| {
            let asked = std::process::Command::new("ssh-keygen")
                .arg("-Q")
                .arg("-f")
                .arg(&krl)
                .arg(file)
                .output()
                .expect("ssh-keygen runs");
            let said = String::from_utf8_lossy(&asked.stdout).into_owned();
            assert!(said.contains("REVOKED") || said.contains(": ok"), "{said}");
            said.contains("REVOKED")
        };
        let mut revoked_seen = 0;
        for serial in (0..14).chain([499, 500, 550, 600, 601, 3999, 4000, 4001]) {
            for id in ["alice", "stolen"] {
                let cert = certificate(9, serial, id);
                let file = write("cert.pub", cert.to_openssh().expect("cert"));
                let ours = revoked.revokes_certificate(&cert).is_some()
                    || revoked.contains(cert.public_key())
                    || revoked.contains(cert.signature_key());
                assert_eq!(ours, openssh_revokes(&file), "serial {serial} id {id}");
                revoked_seen += usize::from(ours);
            }
        }
        assert!(revoked_seen > 10, "{revoked_seen}");
        for (seed, expected) in [(1, false), (2, true), (3, true)] {
            let file = write("key.pub", key(seed).to_openssh().expect("key"));
            assert_eq!(openssh_revokes(&file), expected, "key {seed}");
            assert_eq!(
                revoked.contains(key(seed).key_data()),
                expected,
                "key {seed}"
            );
        }
    }
}
