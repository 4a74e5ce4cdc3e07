//! Extensions: SSH_FXP_EXTENDED (draft-ietf-secsh-filexfer-02 §8) and the
//! names SSH_FXP_VERSION lists (§4), as OpenSSH's PROTOCOL file defines them.
//!
//! | extension | what it does |
//! |---|---|
//! | `limits@openssh.com` | tells the client the largest packet, READ and WRITE the server takes and how many handles it keeps; OpenSSH's `sftp` (8.7 and later) then sends READs and WRITEs of up to 255 KiB instead of 32 KiB |
//! | `posix-rename@openssh.com` | a rename that replaces a file at the new name, as FTP's RNTO (the `overwrite` permission); OpenSSH's `sftp` uses it for `rename`, rclone and paramiko for moves |
//!
//! Any other extension is answered `SSH_FX_OP_UNSUPPORTED`.

use russh_sftp::protocol::{Extended, ExtendedReply, Packet, StatusCode, Version};

use super::session::{Answer, Audited, MAX_HANDLES, MAX_PACKET, MAX_READ, SftpSession};
use super::status::SftpFailure;

const LIMITS: &str = "limits@openssh.com";
const POSIX_RENAME: &str = "posix-rename@openssh.com";

/// The largest WRITE taken: what fits in [`MAX_PACKET`] with its header
/// (type, id, a handle of up to 256 bytes, offset, length).
pub const MAX_WRITE: u32 = 256 * 1024;
const _: () = assert!(MAX_WRITE + 1 + 4 + 4 + 256 + 8 + 4 <= MAX_PACKET);

/// SSH_FXP_VERSION with the extensions offered (each at version "1").
pub(super) fn version() -> Version {
    let mut v = Version::new();
    for name in [LIMITS, POSIX_RENAME] {
        v.extensions.insert(name.to_owned(), "1".to_owned());
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
            other => (
                None,
                Err(SftpFailure::unsupported(format!(
                    "extension {other} is not offered"
                ))),
            ),
        }
    }
}

/// limits@openssh.com's reply: four uint64s.
fn limits(id: u32) -> Packet {
    let mut data = Vec::with_capacity(32);
    for n in [MAX_PACKET, MAX_READ, MAX_WRITE, MAX_HANDLES as u32] {
        data.extend_from_slice(&u64::from(n).to_be_bytes());
    }
    Packet::ExtendedReply(ExtendedReply { id, data })
}

/// Two SSH strings (uint32 length, then the bytes), UTF-8, and nothing after.
fn two_strings(data: &[u8]) -> Result<(String, String), SftpFailure> {
    let malformed = || SftpFailure::new(StatusCode::BadMessage, "malformed extension request");
    let mut rest = data;
    let mut next = || -> Result<String, SftpFailure> {
        let (len, tail) = rest.split_first_chunk::<4>().ok_or_else(malformed)?;
        let len = u32::from_be_bytes(*len) as usize;
        let (text, tail) = tail.split_at_checked(len).ok_or_else(malformed)?;
        rest = tail;
        String::from_utf8(text.to_vec())
            .map_err(|_| SftpFailure::new(StatusCode::BadMessage, "file names must be UTF-8"))
    };
    let names = (next()?, next()?);
    if !rest.is_empty() {
        return Err(malformed());
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let n: Vec<u64> = r
            .data
            .chunks(8)
            .map(|c| u64::from_be_bytes(c.try_into().expect("8 bytes")))
            .collect();
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
    }
}
