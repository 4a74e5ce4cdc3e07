//! What all sessions of one user share on this server: the session count
//! (`max_sessions`), the rate buckets (`download_rate`, `upload_rate`: one token
//! bucket per direction for all of the user's sessions together).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use ferry_accounts::{Account, LimitRefusal};
use leaky_bucket::RateLimiter;

/// A byte-rate limit shared by every session of a user.
#[derive(Debug)]
pub struct SharedRate {
    limiter: RateLimiter,
    piece: usize,
}

impl SharedRate {
    /// `bytes_per_second`, refilled every 50 ms, with a burst of at most 50 ms
    /// worth, so a transfer cannot run ahead of the rate.
    pub fn new(bytes_per_second: u64) -> Self {
        let refill = usize::try_from((bytes_per_second / 20).max(1)).unwrap_or(usize::MAX);
        let limiter = RateLimiter::builder()
            .initial(0)
            .refill(refill)
            .max(refill)
            .interval(Duration::from_millis(50))
            .fair(true)
            .build();
        SharedRate {
            limiter,
            piece: refill,
        }
    }

    /// Waits until `bytes` may pass.
    pub async fn wait_for(&self, mut bytes: usize) {
        while bytes > 0 {
            let n = bytes.min(self.piece);
            self.limiter.acquire(n).await;
            bytes -= n;
        }
    }
}

/// The shared state of one user.
#[derive(Debug)]
pub struct UserState {
    sessions: AtomicUsize,
    pub download: Option<Arc<SharedRate>>,
    pub upload: Option<Arc<SharedRate>>,
}

/// One session's place among its user's sessions; dropping it frees the place.
#[derive(Debug)]
pub struct SessionTicket {
    pub state: Arc<UserState>,
}

impl Drop for SessionTicket {
    fn drop(&mut self) {
        self.state.sessions.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Users with sessions on this server.
#[derive(Debug, Default)]
pub struct UserRegistry {
    users: Mutex<HashMap<String, Weak<UserState>>>,
}

impl UserRegistry {
    /// Admits one more session of `account`, or refuses it over `max_sessions`.
    pub fn join(&self, account: &Account) -> Result<SessionTicket, LimitRefusal> {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        users.retain(|_, w| w.strong_count() > 0);
        let state = match users.get(&account.name).and_then(Weak::upgrade) {
            Some(s) => s,
            None => {
                let limits = &account.limits;
                let s = Arc::new(UserState {
                    sessions: AtomicUsize::new(0),
                    download: limits
                        .download_rate
                        .as_ref()
                        .map(|r| Arc::new(SharedRate::new(r.value))),
                    upload: limits
                        .upload_rate
                        .as_ref()
                        .map(|r| Arc::new(SharedRate::new(r.value))),
                });
                users.insert(account.name.clone(), Arc::downgrade(&s));
                s
            }
        };
        let now = state.sessions.fetch_add(1, Ordering::AcqRel) + 1;
        if let Some(max) = &account.limits.max_sessions
            && now > max.value as usize
        {
            state.sessions.fetch_sub(1, Ordering::AcqRel);
            return Err(LimitRefusal {
                setting: "max_sessions",
                reason: format!(
                    "{} already has {} sessions (set by {})",
                    account.name, max.value, max.source
                ),
            });
        }
        Ok(SessionTicket { state })
    }
}
