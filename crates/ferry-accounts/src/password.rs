//! Password hashes: argon2id in PHC form for new ones.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

/// Why a password could not be hashed or checked.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// The stored hash is not a PHC string ferry can read.
    #[error("stored password hash is malformed: {0}")]
    MalformedHash(String),
    /// The hash function failed (out of memory, bad parameters).
    #[error("password hashing failed: {0}")]
    Hashing(String),
}

/// Hashes `password` with argon2id (m=19456 KiB, t=2, p=1) and a random salt.
pub fn hash(password: &str) -> Result<String, PasswordError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hashing(e.to_string()))
}

/// Checks that `hash` is a hash ferry can verify.
pub fn check_hash(hash: &str) -> Result<(), PasswordError> {
    if hash.starts_with("$argon2") {
        return PasswordHash::new(hash)
            .map(|_| ())
            .map_err(|e| PasswordError::MalformedHash(e.to_string()));
    }
    // bcrypt and crypt hashes are checked when verified; a malformed one never matches.
    if ["$2a$", "$2b$", "$2y$", "$6$", "$5$", "$y$"]
        .iter()
        .any(|p| hash.starts_with(p))
    {
        return Ok(());
    }
    Err(PasswordError::MalformedHash("unknown hash scheme".into()))
}

/// Whether `password` matches `hash`: argon2 (PHC), bcrypt (`$2a$`, `$2b$`, `$2y$`),
/// sha512/sha256-crypt (`$6$`, `$5$`, as in /etc/shadow and ProFTPD's
/// AuthUserFile) or yescrypt (`$y$`, /etc/shadow's default on Debian since 12). Takes tens of milliseconds by design: call it off the async
/// workers.
pub fn verify(password: &str, hash: &str) -> Result<bool, PasswordError> {
    if hash.starts_with("$argon2") {
        let parsed =
            PasswordHash::new(hash).map_err(|e| PasswordError::MalformedHash(e.to_string()))?;
        return Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok());
    }
    if ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p)) {
        return bcrypt::verify(password, hash)
            .map_err(|e| PasswordError::MalformedHash(e.to_string()));
    }
    if hash.starts_with("$6$") || hash.starts_with("$5$") {
        use sha_crypt::PasswordVerifier as _;
        return Ok(sha_crypt::ShaCrypt::default()
            .verify_password(password.as_bytes(), hash)
            .is_ok());
    }
    if hash.starts_with("$y$") {
        use yescrypt::PasswordVerifier as _;
        return Ok(yescrypt::Yescrypt::default()
            .verify_password(password.as_bytes(), hash)
            .is_ok());
    }
    Err(PasswordError::MalformedHash("unknown hash scheme".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_then_verify() {
        let h = hash("correct horse").expect("hash");
        assert!(h.starts_with("$argon2id$v=19$"));
        assert!(verify("correct horse", &h).expect("verify"));
        assert!(!verify("Correct horse", &h).expect("verify"));
        assert!(check_hash(&h).is_ok());
        assert!(check_hash("$argon2id$garbage").is_err());
        // Salts differ, so equal passwords give different hashes.
        assert_ne!(h, hash("correct horse").expect("hash"));
    }

    #[test]
    fn imported_hashes() {
        // From `openssl passwd -6 -salt saltsalt secret`, and a bcrypt hash as Apache and
        // Pure-FTPd write them.
        let sha512 = "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1";
        assert!(verify("secret", sha512).expect("sha512"));
        assert!(!verify("Secret", sha512).expect("sha512"));
        let bcrypt = bcrypt::hash_with_salt("secret", 4, *b"0123456789abcdef")
            .expect("bcrypt")
            .format_for_version(bcrypt::Version::TwoY);
        assert!(verify("secret", &bcrypt).expect("bcrypt"));
        assert!(!verify("nope", &bcrypt).expect("bcrypt"));
        assert!(verify("x", "md5:whatever").is_err());
    }

    /// yescrypt, as Debian 12's libxcrypt writes /etc/shadow: this hash came
    /// from `crypt("correct horse", crypt_gensalt("$y$", 0, NULL, 0))` on this
    /// machine (the default cost, `j9T`).
    #[test]
    fn yescrypt_from_the_host_libxcrypt() {
        let host = "$y$j9T$H0gP5ALOVHLT6dU6GrM8u1$f645apmbce3FixTiZTLS1Kw2dRKUss37sDQ5Z3XH1C3";
        assert!(check_hash(host).is_ok());
        assert!(verify("correct horse", host).expect("yescrypt"));
        assert!(!verify("correct horsE", host).expect("yescrypt"));
        // A malformed one is an error or a mismatch, never a match.
        assert!(!verify("x", "$y$j9T$broken").unwrap_or(false));
    }
}
