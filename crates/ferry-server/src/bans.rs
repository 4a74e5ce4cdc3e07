//! Brute-force defence: after `max_login_failures` failed logins from one address
//! within `ban_window`, the address is refused (421) for `ban_time`. Each failed
//! login is answered after a delay that doubles with every failure in the window.
//!
//! Bans live in memory and, when the accounts are in a database, in its
//! `ferry_bans` table too: `ferry ban list|add|del` and every node sharing the
//! database see the same bans.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use ferry_accounts::{Ban, SqlStore};
use ferry_config::SecuritySection;

use crate::options::Clock;

#[derive(Debug, Default)]
struct Record {
    failures: VecDeque<SystemTime>,
    banned_until: Option<SystemTime>,
}

/// Failed logins and bans, per client address.
pub struct BanList {
    max_failures: u32,
    window: Duration,
    ban_time: Duration,
    records: Mutex<HashMap<IpAddr, Record>>,
    shared: Option<Arc<SqlStore>>,
    clock: Clock,
}

impl std::fmt::Debug for BanList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BanList")
            .field("max_failures", &self.max_failures)
            .finish_non_exhaustive()
    }
}

/// The longest delay before answering a failed login.
const MAX_DELAY: Duration = Duration::from_secs(4);

use crate::options::unix_seconds as unix;

impl BanList {
    pub fn new(security: &SecuritySection, shared: Option<Arc<SqlStore>>, clock: Clock) -> Self {
        BanList {
            max_failures: security.max_login_failures,
            window: security.ban_window.0,
            ban_time: security.ban_time.0,
            records: Mutex::new(HashMap::new()),
            shared,
            clock,
        }
    }

    /// Why `ip` is banned now, if it is.
    pub async fn check(&self, ip: IpAddr) -> Option<String> {
        let now = (self.clock)();
        {
            let records = self.records.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(until) = records.get(&ip).and_then(|r| r.banned_until)
                && until > now
            {
                return Some(format!(
                    "banned for {} more seconds",
                    until.duration_since(now).map_or(0, |d| d.as_secs())
                ));
            }
        }
        if let Some(store) = &self.shared {
            match store.ban_of(ip, unix(now)).await {
                Ok(Some(ban)) => return Some(format!("banned: {}", ban.reason)),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "cannot read the shared ban list"),
            }
        }
        None
    }

    /// Records a failed login from `ip`. Returns how long to wait before answering,
    /// and whether the address is now banned.
    pub async fn failed(&self, ip: IpAddr) -> (Duration, bool) {
        if self.max_failures == 0 {
            return (Duration::ZERO, false);
        }
        let now = (self.clock)();
        let (count, banned) = {
            let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
            // Forget addresses that are neither banned nor failing lately.
            if records.len() > 10_000 {
                records.retain(|_, r| {
                    r.banned_until.is_some_and(|u| u > now)
                        || r.failures.back().is_some_and(|t| *t + self.window > now)
                });
            }
            let r = records.entry(ip).or_default();
            while r.failures.front().is_some_and(|t| *t + self.window <= now) {
                r.failures.pop_front();
            }
            r.failures.push_back(now);
            let count = r.failures.len() as u32;
            let banned = count >= self.max_failures;
            if banned {
                r.banned_until = Some(now + self.ban_time);
                r.failures.clear();
            }
            (count, banned)
        };
        if banned && let Some(store) = &self.shared {
            let ban = Ban {
                address: ip,
                until_unix: unix(now + self.ban_time),
                reason: format!(
                    "{} failed logins within {} s",
                    self.max_failures,
                    self.window.as_secs()
                ),
            };
            if let Err(e) = store.put_ban(&ban).await {
                tracing::warn!(error = %e, "cannot record the ban in the shared ban list");
            }
        }
        let delay = Duration::from_millis(250)
            .saturating_mul(1 << (count.saturating_sub(1)).min(8))
            .min(MAX_DELAY);
        (delay, banned)
    }

    /// A successful login clears the address's failures.
    pub fn succeeded(&self, ip: IpAddr) {
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = records.get_mut(&ip) {
            r.failures.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::UNIX_EPOCH;

    #[tokio::test]
    async fn bans_after_n_failures_in_the_window_and_expires() {
        let now = Arc::new(AtomicU64::new(1_000_000));
        let t = now.clone();
        let clock: Clock =
            Arc::new(move || UNIX_EPOCH + Duration::from_secs(t.load(Ordering::SeqCst)));
        let security: SecuritySection = ferry_config::Config::parse(
            "[security]\nmax_login_failures = 3\nban_window = \"60s\"\nban_time = \"100s\"",
        )
        .expect("config")
        .security;
        let bans = BanList::new(&security, None, clock);
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let (d1, b1) = bans.failed(ip).await;
        now.fetch_add(61, Ordering::SeqCst); // the first failure leaves the window
        let (d2, _) = bans.failed(ip).await;
        let (d3, b3) = bans.failed(ip).await;
        assert!(!b1 && !b3, "only two failures are within the window");
        assert!(
            d1 == d2 && d3 > d2,
            "the delay grows with failures in the window"
        );
        let (_, banned) = bans.failed(ip).await;
        assert!(banned);
        assert!(bans.check(ip).await.is_some());
        assert!(bans.check("192.0.2.2".parse().expect("ip")).await.is_none());
        now.fetch_add(99, Ordering::SeqCst);
        assert!(
            bans.check(ip).await.is_some(),
            "still banned one second before the end"
        );
        now.fetch_add(1, Ordering::SeqCst);
        assert!(bans.check(ip).await.is_none(), "the ban expires");
    }
}
