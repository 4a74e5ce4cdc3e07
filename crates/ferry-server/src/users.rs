//! What all sessions of one user share on this server: the session count
//! (`max_sessions`), the rate buckets (`download_rate`, `upload_rate`: one token
//! bucket per direction for all of the user's sessions together).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use ferry_accounts::{Account, LimitRefusal};
use ferry_rate::RateLimit;

/// The shared state of one user.
#[derive(Debug)]
pub struct UserState {
    sessions: AtomicUsize,
    /// `download_rate`, shared by the user's sessions.
    pub download: Option<RateLimit>,
    /// `upload_rate`, shared by the user's sessions.
    pub upload: Option<RateLimit>,
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
                        .map(|r| RateLimit::new(r.value)),
                    upload: limits.upload_rate.as_ref().map(|r| RateLimit::new(r.value)),
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
