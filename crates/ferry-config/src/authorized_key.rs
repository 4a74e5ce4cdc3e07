//! A user's `authorized_keys` entry: an SSH public key in the form OpenSSH
//! writes it (`ssh-keygen`'s `.pub` file, one line of `~/.ssh/authorized_keys`):
//! `TYPE BASE64 [COMMENT]`.
//!
//! The key is parsed here, at the edge, into its wire form (RFC 4253 § 6.6,
//! the "public key blob"), which is what an SSH client offers at sign-in; the
//! SFTP server compares blobs, so no second parse happens per login.
//!
//! Only key types ferry's SSH can verify are taken: Ed25519, ECDSA over NIST
//! P-256, P-384 and P-521, and RSA of at least [`MIN_RSA_BITS`] (signed with
//! SHA-2 at sign-in, RFC 8332; the server checks RSA signatures with the
//! public key only, which the timing advisory on the `rsa` crate,
//! RUSTSEC-2023-0071, does not concern). Refused with a message: shorter RSA
//! keys, DSA, security-key (`sk-`) keys and certificates. OpenSSH's per-key
//! options (`from="…"`, `restrict`, `cert-authority` …) are read by
//! [`crate::key_options`], which keeps what bears on file transfer and
//! refuses the line over any option it cannot keep: a restriction an
//! operator wrote must not be dropped silently.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::key_options::KeyOptions;

/// The key types ferry's SSH server verifies.
pub const KEY_TYPES: [&str; 5] = [
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
];

/// The shortest RSA modulus taken, in bits: NIST's floor since 2013
/// (SP 800-131A). `ssh-keygen` has made 3,072-bit keys by default since
/// OpenSSH 8.0; OpenSSH's own server still takes 1,024.
pub const MIN_RSA_BITS: usize = 2048;

/// One public key a user may sign in with, or (`cert-authority`) whose
/// certificates sign the user in.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthorizedKey {
    /// The options before the key, as written (empty when none).
    options_text: String,
    /// What they say ([`KeyOptions`]).
    options: KeyOptions,
    algorithm: String,
    /// The key in SSH wire form (what `BASE64` decodes to).
    blob: Vec<u8>,
    /// The free text after the key (`alice@laptop`), possibly empty.
    comment: String,
}

impl AuthorizedKey {
    /// The key type, e.g. `ssh-ed25519`.
    pub fn algorithm(&self) -> &str {
        &self.algorithm
    }

    /// The key in SSH wire form, as a client offers it.
    pub fn blob(&self) -> &[u8] {
        &self.blob
    }

    /// The comment, possibly empty.
    pub fn comment(&self) -> &str {
        &self.comment
    }

    /// What the line's options say (all empty when it has none).
    pub fn options(&self) -> &KeyOptions {
        &self.options
    }

    /// Whether this line signs in a client that holds the plain key `blob`,
    /// connecting from `client` at `now`: the same key, not
    /// a `cert-authority` line, and admitted by its `from` and
    /// `expiry-time`. `Err` says why a line with this key does not.
    pub fn signs_in(
        &self,
        blob: &[u8],
        client: Option<std::net::IpAddr>,
        now: std::time::SystemTime,
    ) -> Option<Result<(), String>> {
        if self.blob != blob {
            return None;
        }
        if self.options.cert_authority {
            return Some(Err("the key is listed as a certificate authority (cert-authority), not to sign in with".into()));
        }
        Some(self.options.admit(client, now))
    }
}

impl fmt::Debug for AuthorizedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuthorizedKey({} {})", self.algorithm, self.comment)
    }
}

impl fmt::Display for AuthorizedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.options_text.is_empty() {
            write!(f, "{} ", self.options_text)?;
        }
        write!(f, "{} {}", self.algorithm, STANDARD.encode(&self.blob))?;
        if !self.comment.is_empty() {
            write!(f, " {}", self.comment)?;
        }
        Ok(())
    }
}

impl FromStr for AuthorizedKey {
    type Err = String;

    fn from_str(line: &str) -> Result<Self, String> {
        let line = line.trim();
        // Words are separated by runs of blanks, as OpenSSH reads them; the
        // comment is the rest of the line.
        let (mut algorithm, mut rest) = first_word(line);
        if algorithm.is_empty() {
            return Err("empty: expected a public key like \"ssh-ed25519 AAAA… user@host\"".into());
        }
        let (mut options_text, mut options) = (String::new(), KeyOptions::default());
        if let Err(e) = check_type(algorithm) {
            // `from="10.0.0.0/8",no-pty ssh-ed25519 AAAA…`: the first field
            // is OpenSSH's options (quoted values may hold blanks), and a
            // key type follows.
            let (field, after) = options_field(line);
            let (next, _) = first_word(after);
            let key_follows = ["ssh-", "ecdsa-", "sk-"]
                .iter()
                .any(|t| next.starts_with(t));
            if !key_follows || algorithm.starts_with("ssh-") {
                return Err(e);
            }
            options =
                KeyOptions::parse(field).map_err(|why| format!("options before the key: {why}"))?;
            options_text = field.to_owned();
            (algorithm, rest) = first_word(after);
            check_type(algorithm)?;
        }
        let (encoded, rest) = first_word(rest);
        let encoded = Some(encoded)
            .filter(|w| !w.is_empty())
            .ok_or_else(|| format!("`{algorithm}` is not followed by the key's base64 text"))?;
        let blob = STANDARD.decode(encoded).map_err(|e| {
            format!("the key's base64 text is damaged ({e}): copy the whole line of the .pub file")
        })?;
        let fields = ssh_strings(&blob).ok_or(
            "the key's base64 text is not an SSH public key: copy the whole line of the .pub file",
        )?;
        let inner = fields
            .first()
            .and_then(|f| std::str::from_utf8(f).ok())
            .unwrap_or_default();
        if inner != algorithm {
            return Err(format!(
                "the line says `{algorithm}` but the key inside is `{inner}`"
            ));
        }
        // Ed25519: the type and the point; ECDSA: the type, the curve and
        // the point; RSA: the type, the exponent and the modulus.
        let expected = if algorithm == "ssh-ed25519" { 2 } else { 3 };
        if fields.len() != expected {
            return Err(
                "the key's text is cut short or damaged: copy the whole line of the .pub file"
                    .into(),
            );
        }
        if algorithm == "ssh-rsa" {
            check_rsa_size(&fields)?;
        }
        let comment = rest.trim();
        Ok(AuthorizedKey {
            options_text,
            options,
            algorithm: algorithm.to_owned(),
            blob,
            comment: comment.to_owned(),
        })
    }
}

/// The options field that starts `line` (up to the first blank outside
/// double quotes; `\"` does not end a quote) and what follows it.
fn options_field(line: &str) -> (&str, &str) {
    // As OpenSSH's sshkey_advance_past_options.
    let mut quoted = false;
    let mut chars = line.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' if chars.peek().is_some_and(|&(_, n)| n == '"') => {
                chars.next();
            }
            '"' => quoted = !quoted,
            ' ' | '\t' if !quoted => return line.split_at(i),
            _ => {}
        }
    }
    (line, "")
}

/// The first word of `text` (after leading blanks) and what follows it.
fn first_word(text: &str) -> (&str, &str) {
    let text = text.trim_start();
    let end = text.find([' ', '\t']).unwrap_or(text.len());
    text.split_at(end)
}

/// Refuses key types ferry cannot verify, saying what to use instead.
fn check_type(algorithm: &str) -> Result<(), String> {
    let instead = "make one with `ssh-keygen -t ed25519`";
    match algorithm {
        a if KEY_TYPES.contains(&a) => Ok(()),
        "rsa-sha2-256" | "rsa-sha2-512" => Err(format!(
            "`{algorithm}` names a signature, not a key type: an RSA key's line starts with `ssh-rsa`"
        )),
        "ssh-dss" => Err(format!("DSA keys are not accepted: {instead}")),
        a if a.starts_with("sk-") => Err(format!(
            "security-key (`{a}`) keys are not supported yet: {instead}"
        )),
        a if a.contains("-cert-") => Err(format!(
            "certificates (`{a}`) are not supported: give the plain public key"
        )),
        a => Err(format!(
            "`{a}` is not an SSH public key type; expected one of {}",
            KEY_TYPES.join(", ")
        )),
    }
}

/// The fields of a wire-form key, when the whole blob is a sequence of SSH
/// strings (RFC 4251 § 5: a 32-bit length, then the bytes); the first is the
/// key type.
fn ssh_strings(blob: &[u8]) -> Option<Vec<&[u8]>> {
    let mut rest = blob;
    let mut fields = Vec::new();
    while !rest.is_empty() {
        let (len, tail) = rest.split_first_chunk::<4>()?;
        let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
        if len > tail.len() {
            return None;
        }
        let (field, tail) = tail.split_at(len);
        fields.push(field);
        rest = tail;
    }
    (!fields.is_empty()).then_some(fields)
}

/// An `ssh-rsa` key is its type, the exponent and the modulus (RFC 4253
/// § 6.6), each number an mpint (RFC 4251 § 5: big-endian, a leading zero
/// byte when the top bit is set). Refuses moduli below [`MIN_RSA_BITS`].
fn check_rsa_size(fields: &[&[u8]]) -> Result<(), String> {
    let [_, _, modulus] = fields else {
        return Err("an RSA key has an exponent and a modulus".into());
    };
    let significant = modulus
        .iter()
        .position(|&b| b != 0)
        .map_or(&[][..], |i| &modulus[i..]);
    let bits = match significant.first() {
        Some(&top) => significant.len() * 8 - top.leading_zeros() as usize,
        None => 0,
    };
    if bits < MIN_RSA_BITS {
        return Err(format!(
            "this RSA key has {bits} bits; at least {MIN_RSA_BITS} are needed: make a new key with `ssh-keygen -t ed25519` (or `-t rsa -b 3072`)"
        ));
    }
    Ok(())
}

crate::string_serde!(AuthorizedKey);

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Made with `ssh-keygen -t ed25519 -C alice@laptop`.
    pub(crate) const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHOW7n+TV5zOQGr72zD3Uvxe2rkYTk+2qquNn7Hp9Cjv alice@laptop";
    /// Made with `ssh-keygen -t ecdsa -b 256`.
    const ECDSA: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBBGjLBxZ0h8kRG3lK4+4dMNlcMkVLlKas3FAGeRA6ALhto1CHLLM6H4E+GEzVal3nfz3ce/siPEn0S87G1hY2Lo= root@vm";

    /// Made with `ssh-keygen -t rsa -b 2048 -C bob@desk`.
    const RSA_2048: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDjwFmoNkhv6Zv7jqZq7/gi1M4Tx8OZl0NVvNJhgHhJiCYtAr2rILc5Y6AjEdXvL6KyMqjuQyW0na0EN0KCEiMfGFsqavh9xObkg0nyB53TJhcwX2QyyNGIaQbQK3lL73tMG/Vsg2pg+Qq0QugBh9iqv7jj8QshmgxtYaui8tMnwUYLybhxgJ0dMkw8CmEIPfhTd/lBAcxa992rY/3ZVSLk06lbJgIMbRvY3HWj++oCFdstpUyJQFfF34Vn2jGU1GuJWlKmCGjjpuEONm5ksP+Q3woogojyVV7zy3SrBWv14T0m5kebtEjtuom+CC89vT/xCQQ5JU7eQlSjX9zojHVR bob@desk";
    /// Made with `ssh-keygen -t rsa -b 1024`.
    const RSA_1024: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC+JVQ6k65lWLa1WW15fE+nYi7EOJRSoq8V3uAZMqTw6cRBmw/MypZ1QS6K9IYH1zQTxv5TwKD0WdTW5hUS66kLsttqsQbKoGW99nthKWrBB0dILyBrEeAL59Iqntk4axDJYe5wWzgkv6+/vEqg0++nnsuzBDX3rOzrDyw5+YzAqQ== old@box";

    #[test]
    fn openssh_public_key_lines_are_read() {
        let k: AuthorizedKey = ED25519.parse().expect("ed25519");
        assert_eq!(k.algorithm(), "ssh-ed25519");
        assert_eq!(k.comment(), "alice@laptop");
        // 4 + 11 ("ssh-ed25519") + 4 + 32 (the point).
        assert_eq!(k.blob().len(), 51);
        assert_eq!(k.to_string(), ED25519);

        let k: AuthorizedKey = ECDSA.parse().expect("ecdsa");
        assert_eq!(k.algorithm(), "ecdsa-sha2-nistp256");
        assert_eq!(k.to_string(), ECDSA);

        let k: AuthorizedKey = RSA_2048.parse().expect("rsa");
        assert_eq!((k.algorithm(), k.comment()), ("ssh-rsa", "bob@desk"));
        // 4 + 7 ("ssh-rsa") + 4 + 3 (65537) + 4 + 257 (a zero, 256 bytes).
        assert_eq!(k.blob().len(), 279);
        assert_eq!(k.to_string(), RSA_2048);

        // No comment, extra blanks, a comment with spaces.
        let bare = ED25519.trim_end_matches(" alice@laptop");
        let k: AuthorizedKey = format!("  {bare}  ").parse().expect("bare");
        let doubled = ED25519.replacen(' ', "  \t", 2);
        assert_eq!(
            doubled
                .parse::<AuthorizedKey>()
                .expect("blanks")
                .to_string(),
            ED25519
        );
        assert_eq!((k.comment(), k.to_string()), ("", bare.to_owned()));
        let k: AuthorizedKey = format!("{bare} Alice's laptop, 2026")
            .parse()
            .expect("spaces");
        assert_eq!(k.comment(), "Alice's laptop, 2026");
    }

    #[test]
    fn what_ferry_cannot_verify_is_refused_with_a_reason() {
        let blob = ED25519.split(' ').nth(1).expect("blob");
        let cases = [
            ("", "empty"),
            ("ssh-ed25519", "not followed"),
            (
                &format!("ssh-rsa {blob}") as &str,
                "the key inside is `ssh-ed25519`",
            ),
            (RSA_1024, "this RSA key has 1024 bits; at least 2048"),
            (
                &RSA_2048.replacen("ssh-rsa", "rsa-sha2-512", 1),
                "names a signature",
            ),
            (&format!("ssh-dss {blob}"), "DSA"),
            (
                &format!("sk-ssh-ed25519@openssh.com {blob}"),
                "security-key",
            ),
            (
                &format!("ssh-ed25519-cert-v01@openssh.com {blob}"),
                "certificates",
            ),
            (
                &format!("from=10.0.0.0/8 {ED25519}"),
                "options before the key: option `from`",
            ),
            (
                &format!("no-pty,command=\"x\" {ED25519}"),
                "which is not SFTP",
            ),
            (&format!("rot13 {ED25519}"), "unknown option `rot13`"),
            (&format!("restrict ssh-dss {blob}"), "DSA"),
            (&format!("rot13 {blob}"), "not an SSH public key type"),
            ("ssh-ed25519 AAAA!!!!", "damaged"),
            // Base64 of "hello": not a sequence of SSH strings.
            ("ssh-ed25519 aGVsbG8=", "not an SSH public key"),
            // An ECDSA key labelled as Ed25519.
            (
                &format!("ssh-ed25519 {}", ECDSA.split(' ').nth(1).expect("blob")),
                "the key inside is `ecdsa-sha2-nistp256`",
            ),
        ];
        for (line, expected) in cases {
            let e = line.parse::<AuthorizedKey>().expect_err(line);
            assert!(e.contains(expected), "{line:?}: {e}");
        }
    }

    /// `authorized_keys` lines with OpenSSH's options: read, kept, written
    /// back as they were.
    #[test]
    fn options_before_a_key_are_read_and_kept() {
        let line = format!(
            "restrict,command=\"internal-sftp -l INFO\",from=\"10.0.0.0/8,!10.9.*\" {ED25519}"
        );
        let k: AuthorizedKey = line.parse().expect("options");
        assert_eq!(
            (k.algorithm(), k.comment()),
            ("ssh-ed25519", "alice@laptop")
        );
        assert_eq!(k.to_string(), line);
        let blob = k.blob().to_vec();
        let at = |ip: &str| Some(ip.parse().expect("ip"));
        assert_eq!(
            k.signs_in(&blob, at("10.1.1.1"), std::time::UNIX_EPOCH),
            Some(Ok(()))
        );
        assert!(matches!(
            k.signs_in(&blob, at("10.9.1.1"), std::time::UNIX_EPOCH),
            Some(Err(_))
        ));
        assert!(matches!(
            k.signs_in(&blob, at("127.0.0.1"), std::time::UNIX_EPOCH),
            Some(Err(_))
        ));
        assert_eq!(
            k.signs_in(b"another key", at("10.1.1.1"), std::time::UNIX_EPOCH),
            None
        );
        // An authority's line is not a key to sign in with.
        let ca: AuthorizedKey = format!("cert-authority,principals=\"ops\" {ED25519}")
            .parse()
            .expect("ca");
        assert!(ca.options().cert_authority);
        let refused = ca
            .signs_in(&blob, None, std::time::UNIX_EPOCH)
            .expect("same key")
            .expect_err("ca");
        assert!(refused.contains("cert-authority"), "{refused}");
        // A quoted value with blanks and an escaped quote.
        let odd: AuthorizedKey = format!("environment=\"A=\\\"x y\\\"\"\t{ED25519}")
            .parse()
            .expect("quoted");
        assert_eq!(odd.comment(), "alice@laptop");
    }

    #[test]
    fn a_truncated_key_is_refused() {
        for whole in [ED25519, ECDSA, RSA_2048] {
            let mut words = whole.split(' ');
            let algorithm = words.next().expect("type");
            let blob = STANDARD
                .decode(words.next().expect("blob"))
                .expect("base64");
            // 4 + the type's length: the type alone, without the key.
            let type_only = 4 + algorithm.len();
            for cut in [1, 3, 5, type_only, 20, blob.len() - 1] {
                let line = format!("{algorithm} {}", STANDARD.encode(&blob[..cut]));
                assert!(
                    line.parse::<AuthorizedKey>().is_err(),
                    "{algorithm}: {cut} bytes accepted"
                );
            }
        }
    }
}
