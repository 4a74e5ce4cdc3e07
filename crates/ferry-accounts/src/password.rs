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

/// Checks that `hash` is a PHC string ferry can verify.
pub fn check_hash(hash: &str) -> Result<(), PasswordError> {
    PasswordHash::new(hash)
        .map(|_| ())
        .map_err(|e| PasswordError::MalformedHash(e.to_string()))
}

/// Whether `password` matches `hash`. Takes tens of milliseconds by design: call it
/// off the async workers.
pub fn verify(password: &str, hash: &str) -> Result<bool, PasswordError> {
    let parsed =
        PasswordHash::new(hash).map_err(|e| PasswordError::MalformedHash(e.to_string()))?;
    Ok(Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok())
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
}
