//! Extensions: SSH_FXP_EXTENDED (draft-ietf-secsh-filexfer-02 §8) and the
//! names SSH_FXP_VERSION lists (§4), as OpenSSH's PROTOCOL file defines them.
//!
//! | extension | what it does |
//! |---|---|
//! | `limits@openssh.com` | tells the client the largest packet, READ and WRITE the server takes and how many handles it keeps; OpenSSH's `sftp` (8.7 and later) then sends READs and WRITEs of up to 255 KiB instead of 32 KiB |
//! | `posix-rename@openssh.com` | a rename that replaces a file at the new name, as FTP's RNTO (the `overwrite` permission); OpenSSH's `sftp` uses it for `rename`, rclone and paramiko for moves |
//! | `statvfs@openssh.com` | the size and free space of the file system a path is on (`df` in OpenSSH's `sftp`; rclone's `about`), no more than a user's quota leaves; the path must be listable |
//! | `fstatvfs@openssh.com` | the same for an open handle's path (sshfs's `statfs`) |
//! | `fsync@openssh.com` | makes what a write handle wrote durable, and its commit at CLOSE (OpenSSH's `put -f`, sshfs's `fsync`); a read handle has nothing to make durable |
//!
//! Any other extension is answered `SSH_FX_OP_UNSUPPORTED`.

use ferry_accounts::Permission;
use ferry_storage::{Space, VirtualPath};
use russh_sftp::protocol::{Extended, ExtendedReply, Packet, StatusCode, Version};

use crate::error::SessionError;

use super::session::{Answer, Audited, MAX_HANDLES, MAX_PACKET, MAX_READ, SftpSession, resolve};
use super::status::SftpFailure;

const LIMITS: &str = "limits@openssh.com";
const POSIX_RENAME: &str = "posix-rename@openssh.com";
const STATVFS: &str = "statvfs@openssh.com";
const FSTATVFS: &str = "fstatvfs@openssh.com";
const FSYNC: &str = "fsync@openssh.com";

/// statvfs@openssh.com's flags (OpenSSH's PROTOCOL, §4.4).
const ST_RDONLY: u64 = 0x1;
const ST_NOSUID: u64 = 0x2;

/// The largest WRITE taken: what fits in [`MAX_PACKET`] with its header
/// (type, id, a handle of up to 256 bytes, offset, length).
pub const MAX_WRITE: u32 = 256 * 1024;
const _: () = assert!(MAX_WRITE + 1 + 4 + 4 + 256 + 8 + 4 <= MAX_PACKET);

/// SSH_FXP_VERSION with the extensions offered (each at version "1").
pub(super) fn version() -> Version {
    let mut v = Version::new();
    for name in [LIMITS, POSIX_RENAME, FSYNC] {
        v.extensions.insert(name.to_owned(), "1".to_owned());
    }
    // OpenSSH offers the statvfs pair at version "2", and its client checks
    // for it.
    for name in [STATVFS, FSTATVFS] {
        v.extensions.insert(name.to_owned(), "2".to_owned());
    }
    v
}

impl SftpSession {
    /// Answers an SSH_FXP_EXTENDED request; names what its audit record says.
    pub(super) async fn extended(&mut self, e: Extended) -> (Option<Audited>, Answer) {
        match e.request.as_str() {
            LIMITS => (None, Ok(limits(e.id))),
            POSIX_RENAME => {
                let (old, new) = match two_strings(&e.data) {
                    Ok(names) => names,
                    Err(f) => return (None, Err(f)),
                };
                let audited = Audited {
                    verb: "RENAME",
                    arg: format!("{old} {new}"),
                    path: Some(old.clone()),
                };
                (Some(audited), self.rename(e.id, &old, &new, true).await)
            }
            STATVFS => (
                None,
                async {
                    let path = resolve(&one_string(&e.data)?)?;
                    self.statvfs(e.id, &path).await
                }
                .await,
            ),
            FSTATVFS => (
                None,
                async {
                    let path = self.open_path(&one_string(&e.data)?)?;
                    self.statvfs(e.id, &path).await
                }
                .await,
            ),
            FSYNC => match one_string(&e.data) {
                Ok(handle) => self.fsync(e.id, &handle).await,
                Err(f) => (None, Err(f)),
            },
            other => (
                None,
                Err(SftpFailure::unsupported(format!(
                    "extension {other} is not offered"
                ))),
            ),
        }
    }
}

impl SftpSession {
    /// statvfs@openssh.com (and fstatvfs's, for a handle's path): the file
    /// system's figures, within the user's quota when there is one.
    async fn statvfs(&self, id: u32, path: &VirtualPath) -> Answer {
        self.check(Permission::List, path)?;
        let space = self
            .user
            .storage
            .space(path)
            .await
            .map_err(|e| SessionError::storage(path, e))?;
        let limits = &self.user.account.limits;
        let quota_bytes = limits.quota_bytes.as_ref().map(|q| q.value);
        let quota_files = limits.quota_files.as_ref().map(|q| q.value);
        if quota_bytes.is_none() && quota_files.is_none() {
            return Ok(statvfs_reply(id, &space));
        }
        let used = self
            .opts
            .ledger
            .get(&self.user.account.name)
            .await
            .map_err(|e| SessionError::usage_unreadable(path, &e))?
            .unwrap_or_default();
        let space = space.within_quota(quota_bytes, quota_files, (used.bytes, used.files));
        Ok(statvfs_reply(id, &space))
    }
}

/// statvfs@openssh.com's reply: eleven uint64s, in `struct statvfs`'s order.
fn statvfs_reply(id: u32, s: &Space) -> Packet {
    let flags = if s.read_only { ST_RDONLY } else { 0 } | if s.no_setuid { ST_NOSUID } else { 0 };
    let mut data = Vec::with_capacity(88);
    for n in [
        s.block_size,
        s.fragment_size,
        s.blocks,
        s.blocks_free,
        s.blocks_available,
        s.files,
        s.files_free,
        s.files_available,
        s.filesystem_id,
        flags,
        s.max_name_length,
    ] {
        data.extend_from_slice(&n.to_be_bytes());
    }
    Packet::ExtendedReply(ExtendedReply { id, data })
}

/// limits@openssh.com's reply: four uint64s.
fn limits(id: u32) -> Packet {
    let mut data = Vec::with_capacity(32);
    for n in [MAX_PACKET, MAX_READ, MAX_WRITE, MAX_HANDLES as u32] {
        data.extend_from_slice(&u64::from(n).to_be_bytes());
    }
    Packet::ExtendedReply(ExtendedReply { id, data })
}

fn malformed() -> SftpFailure {
    SftpFailure::new(StatusCode::BadMessage, "malformed extension request")
}

/// An SSH string (uint32 length, then the bytes), UTF-8, and what follows it.
fn take_string(data: &[u8]) -> Result<(String, &[u8]), SftpFailure> {
    let (len, tail) = data.split_first_chunk::<4>().ok_or_else(malformed)?;
    let len = u32::from_be_bytes(*len) as usize;
    let (text, rest) = tail.split_at_checked(len).ok_or_else(malformed)?;
    let text = String::from_utf8(text.to_vec())
        .map_err(|_| SftpFailure::new(StatusCode::BadMessage, "file names must be UTF-8"))?;
    Ok((text, rest))
}

/// One SSH string and nothing after.
fn one_string(data: &[u8]) -> Result<String, SftpFailure> {
    match take_string(data)? {
        (text, []) => Ok(text),
        _ => Err(malformed()),
    }
}

/// Two SSH strings and nothing after.
fn two_strings(data: &[u8]) -> Result<(String, String), SftpFailure> {
    let (first, rest) = take_string(data)?;
    match take_string(rest)? {
        (second, []) => Ok((first, second)),
        _ => Err(malformed()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reply's data as the uint64s it holds.
    fn u64s(data: &[u8]) -> Vec<u64> {
        data.chunks(8)
            .map(|c| u64::from_be_bytes(c.try_into().expect("8 bytes")))
            .collect()
    }

    fn ssh_string(s: &[u8]) -> Vec<u8> {
        let mut v = (s.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(s);
        v
    }

    #[test]
    fn two_strings_are_read_and_anything_else_is_refused() {
        let mut ok = ssh_string(b"/a b");
        ok.extend(ssh_string("/é".as_bytes()));
        assert_eq!(
            two_strings(&ok).expect("two"),
            ("/a b".to_owned(), "/é".to_owned())
        );
        let bad_message = |data: &[u8]| match two_strings(data) {
            Err(f) => f.code == StatusCode::BadMessage,
            Ok(_) => false,
        };
        assert!(bad_message(&ssh_string(b"/only-one")), "one string");
        let mut trailing = ok.clone();
        trailing.push(0);
        assert!(bad_message(&trailing), "bytes after the second string");
        let mut short = ssh_string(b"/a");
        short.extend_from_slice(&[0, 0, 0, 9, b'/']);
        assert!(bad_message(&short), "a length past the end");
        let mut not_utf8 = ssh_string(b"/a");
        not_utf8.extend(ssh_string(b"/\xff"));
        assert!(bad_message(&not_utf8), "a name that is not UTF-8");
        assert!(bad_message(&[]), "nothing");
    }

    #[test]
    fn limits_are_what_the_session_takes() {
        let Packet::ExtendedReply(r) = limits(7) else {
            panic!("not an extended reply");
        };
        assert_eq!(r.id, 7);
        let n = u64s(&r.data);
        assert_eq!(
            n,
            vec![
                u64::from(MAX_PACKET),
                u64::from(MAX_READ),
                u64::from(MAX_WRITE),
                MAX_HANDLES as u64
            ]
        );
    }

    #[test]
    fn the_version_lists_the_extensions() {
        let v = version();
        assert_eq!(v.extensions.get(LIMITS).map(String::as_str), Some("1"));
        assert_eq!(
            v.extensions.get(POSIX_RENAME).map(String::as_str),
            Some("1")
        );
        assert_eq!(v.extensions.get(STATVFS).map(String::as_str), Some("2"));
        assert_eq!(v.extensions.get(FSTATVFS).map(String::as_str), Some("2"));
        assert_eq!(v.extensions.get(FSYNC).map(String::as_str), Some("1"));
    }

    #[test]
    fn one_string_is_read_and_anything_else_is_refused() {
        assert_eq!(one_string(&ssh_string(b"/d")).expect("one"), "/d");
        let bad_message = |data: &[u8]| match one_string(data) {
            Err(f) => f.code == StatusCode::BadMessage,
            Ok(_) => false,
        };
        let mut two = ssh_string(b"/a");
        two.extend(ssh_string(b"/b"));
        assert!(bad_message(&two), "a second string");
        assert!(bad_message(&[0, 0, 0, 3, b'/']), "a length past the end");
        assert!(bad_message(&ssh_string(b"\xc3")), "not UTF-8");
        assert!(bad_message(&[0, 0]), "a short length");
    }

    #[test]
    fn statvfs_replies_in_struct_statvfs_order() {
        let space = Space {
            block_size: 1,
            fragment_size: 2,
            blocks: 3,
            blocks_free: 4,
            blocks_available: 5,
            files: 6,
            files_free: 7,
            files_available: 8,
            filesystem_id: 9,
            read_only: true,
            no_setuid: true,
            max_name_length: 255,
        };
        let Packet::ExtendedReply(r) = statvfs_reply(3, &space) else {
            panic!("not an extended reply");
        };
        assert_eq!(r.id, 3);
        let n = u64s(&r.data);
        assert_eq!(n, vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 3, 255]);
        let writable = Space {
            read_only: false,
            no_setuid: false,
            ..space
        };
        let Packet::ExtendedReply(r) = statvfs_reply(3, &writable) else {
            panic!("not an extended reply");
        };
        assert_eq!(r.data[72..80], [0u8; 8], "no flags");
    }
}
