//! A bounded cache of recent successful password verifications, so that a
//! returning user's login costs a hash lookup instead of an argon2 run.
//!
//! No password is kept: an entry is SHA-256 over a random key made at start, the
//! user name, the stored hash and the password. Changing the stored hash (a new
//! password) therefore misses the cache, and failed verifications are never
//! cached. The trade-off: someone who reads the process's memory could test
//! guesses against these digests at SHA-256 speed rather than argon2 speed, for as
//! long as an entry lives (`accounts.login_cache`, "0s" turns the cache off).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// How many verifications are remembered at most.
const CAPACITY: usize = 4096;

/// Recent successful verifications.
#[derive(Debug)]
pub struct VerificationCache {
    key: [u8; 32],
    ttl: Duration,
    entries: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    expiry: HashMap<[u8; 32], Instant>,
    order: VecDeque<[u8; 32]>,
}

impl VerificationCache {
    /// A cache whose entries live for `ttl` (zero: nothing is cached).
    pub fn new(ttl: Duration) -> Self {
        VerificationCache {
            key: rand::random(),
            ttl,
            entries: Mutex::default(),
        }
    }

    fn digest(&self, user: &str, stored_hash: &str, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        for part in [
            &self.key[..],
            user.as_bytes(),
            b"\0",
            stored_hash.as_bytes(),
            b"\0",
            password.as_bytes(),
        ] {
            h.update(part);
        }
        h.finalize().into()
    }

    /// Whether this password was verified against this stored hash lately.
    pub fn recall(&self, user: &str, stored_hash: &str, password: &str, now: Instant) -> bool {
        if self.ttl.is_zero() {
            return false;
        }
        let d = self.digest(user, stored_hash, password);
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.expiry.get(&d).is_some_and(|until| *until > now)
    }

    /// Remembers a successful verification.
    pub fn remember(&self, user: &str, stored_hash: &str, password: &str, now: Instant) {
        if self.ttl.is_zero() {
            return;
        }
        let d = self.digest(user, stored_hash, password);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.expiry.insert(d, now + self.ttl).is_none() {
            entries.order.push_back(d);
        }
        while entries.order.len() > CAPACITY {
            if let Some(old) = entries.order.pop_front() {
                entries.expiry.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_only_what_was_verified_and_forgets() {
        let c = VerificationCache::new(Duration::from_secs(60));
        let t0 = Instant::now();
        assert!(!c.recall("alice", "$h1", "pw", t0));
        c.remember("alice", "$h1", "pw", t0);
        assert!(c.recall("alice", "$h1", "pw", t0 + Duration::from_secs(59)));
        assert!(
            !c.recall("alice", "$h1", "pw", t0 + Duration::from_secs(60)),
            "entries expire"
        );
        assert!(
            !c.recall("alice", "$h1", "wrong", t0),
            "another password misses"
        );
        assert!(
            !c.recall("alice", "$h2", "pw", t0),
            "a new stored hash misses"
        );
        assert!(!c.recall("bob", "$h1", "pw", t0), "another user misses");
        let off = VerificationCache::new(Duration::ZERO);
        off.remember("alice", "$h1", "pw", t0);
        assert!(!off.recall("alice", "$h1", "pw", t0));
    }

    #[test]
    fn stays_bounded() {
        let c = VerificationCache::new(Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..CAPACITY + 10 {
            c.remember(&format!("u{i}"), "$h", "pw", t0);
        }
        assert!(
            !c.recall("u0", "$h", "pw", t0),
            "the oldest entries go first"
        );
        assert!(c.recall(&format!("u{}", CAPACITY + 9), "$h", "pw", t0));
        assert_eq!(c.entries.lock().expect("lock").expiry.len(), CAPACITY);
    }
}
