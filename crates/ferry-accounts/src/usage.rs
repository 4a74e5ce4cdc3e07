//! Quota usage: how many bytes and files each user stores.
//!
//! The server keeps usage in a [`UsageLedger`] and updates it as uploads, deletes,
//! renames over files and appends complete. A user with a quota and no usage
//! record yet is measured from storage at login; `ferry user rescan-quota` does the
//! same on demand.
//!
//! An upload reserves its share of a quota in the ledger before it stores the
//! bytes ([`UsageLedger::reserve`]), so that uploads running at the same moment,
//! in one server or in several sharing a database, cannot together pass the
//! quota; when it ends it records what it stored less what it reserved.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::store::StoreError;

/// Bytes and files stored by one user.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub bytes: u64,
    pub files: u64,
}

impl Usage {
    /// What is left under `ceiling`, bytes and files each (none when over it).
    pub fn room_under(self, ceiling: Usage) -> Usage {
        Usage {
            bytes: ceiling.bytes.saturating_sub(self.bytes),
            files: ceiling.files.saturating_sub(self.files),
        }
    }
}

/// Where usage is kept.
#[async_trait]
pub trait UsageLedger: Send + Sync + fmt::Debug {
    /// The recorded usage, or `None` when the user was never measured.
    async fn get(&self, user: &str) -> Result<Option<Usage>, StoreError>;
    /// Records a measured usage.
    async fn set(&self, user: &str, usage: Usage) -> Result<(), StoreError>;
    /// Adds to a recorded usage (never below zero); does nothing for a user never
    /// measured.
    async fn add(&self, user: &str, bytes: i64, files: i64) -> Result<(), StoreError>;
    /// Adds up to `want` bytes and files to the recorded usage, as many of each
    /// as keep it at or under `ceiling`, in one step that no other change to the
    /// user's usage (from this server or another sharing the store) can come
    /// between. For a user never measured, nothing is recorded and the grant
    /// is as if the usage were zero.
    async fn reserve(
        &self,
        user: &str,
        want: Usage,
        ceiling: Usage,
    ) -> Result<Reservation, StoreError>;

    /// Notes that an upload of `user` may hold reservations from now until
    /// [`UsageLedger::release`]: if this server dies first (a crash, `kill
    /// -9`, a power cut), another one, or this one restarted, can tell that
    /// the user's usage counts reservations nobody will settle, and recount
    /// it ([`UsageLedger::orphaned`], [`UsageLedger::recount`]). Marks this
    /// server alive at `now_unix` too.
    async fn hold(&self, user: &str, now_unix: i64) -> Result<HoldId, StoreError>;

    /// Ends a [`UsageLedger::hold`]: the upload has settled or given back
    /// what it reserved.
    async fn release(&self, hold: HoldId) -> Result<(), StoreError>;

    /// Marks this server alive at `now_unix`: its holds stay live while it
    /// beats.
    async fn beat(&self, now_unix: i64) -> Result<(), StoreError>;

    /// The users holding reservations only for uploads of servers that have
    /// not beaten since `stale_before` (and none for a live one).
    async fn orphaned(&self, stale_before: i64) -> Result<Vec<String>, StoreError>;

    /// Replaces `user`'s usage by `measured` in one step, and ends the user's
    /// holds by servers that have not beaten since `stale_before` — provided
    /// that no live server holds reservations for the user and that the
    /// usage is still `seen` (what it was before `measured` was taken; `None`:
    /// never measured). Otherwise nothing changes, and the outcome says why.
    async fn recount(
        &self,
        user: &str,
        seen: Option<Usage>,
        measured: Usage,
        stale_before: i64,
    ) -> Result<Recount, StoreError>;

    /// Ends `user`'s holds by servers that have not beaten since
    /// `stale_before`, leaving the usage alone: for a user deleted since,
    /// whom there is nothing to measure for.
    async fn drop_dead_holds(&self, user: &str, stale_before: i64) -> Result<(), StoreError>;
}

/// Names one [`UsageLedger::hold`] for its release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HoldId(pub i64);

/// What [`UsageLedger::recount`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recount {
    /// The measured usage replaced the recorded one.
    Done,
    /// A live server holds reservations for the user's uploads now: their
    /// bytes are partly stored and partly only reserved, so a measurement
    /// would count them wrong. Try again when they end.
    Busy,
    /// The usage changed while it was measured. Measure again.
    Changed,
}

/// What [`UsageLedger::reserve`] granted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reservation {
    /// Bytes and files added to the usage.
    pub granted: Usage,
    /// What is left under the ceiling after the grant.
    pub left: Usage,
}

impl Reservation {
    /// The grant of `want` against a usage of `now` under `ceiling`: each of
    /// bytes and files as much of `want` as fits.
    pub fn of(now: Usage, want: Usage, ceiling: Usage) -> Reservation {
        let room = now.room_under(ceiling);
        let granted = Usage {
            bytes: want.bytes.min(room.bytes),
            files: want.files.min(room.files),
        };
        Reservation {
            granted,
            left: Usage {
                bytes: room.bytes - granted.bytes,
                files: room.files - granted.files,
            },
        }
    }
}

/// Usage kept in memory, for the configuration store: measured again at each
/// start, so a crash leaves nothing to recount; holds only keep a recount
/// away from a user's uploads in flight.
#[derive(Debug, Default)]
pub struct MemoryLedger {
    usage: Mutex<HashMap<String, Usage>>,
    holds: Mutex<Holds>,
}

#[derive(Debug, Default)]
struct Holds {
    next: i64,
    by_id: HashMap<i64, String>,
}

fn apply(u: &mut Usage, bytes: i64, files: i64) {
    u.bytes = u.bytes.saturating_add_signed(bytes);
    u.files = u.files.saturating_add_signed(files);
}

#[async_trait]
impl UsageLedger for MemoryLedger {
    async fn get(&self, user: &str) -> Result<Option<Usage>, StoreError> {
        Ok(self
            .usage
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(user)
            .copied())
    }

    async fn set(&self, user: &str, usage: Usage) -> Result<(), StoreError> {
        self.usage
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(user.to_owned(), usage);
        Ok(())
    }

    async fn add(&self, user: &str, bytes: i64, files: i64) -> Result<(), StoreError> {
        if let Some(u) = self
            .usage
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(user)
        {
            apply(u, bytes, files);
        }
        Ok(())
    }

    async fn reserve(
        &self,
        user: &str,
        want: Usage,
        ceiling: Usage,
    ) -> Result<Reservation, StoreError> {
        let mut usage = self.usage.lock().unwrap_or_else(|p| p.into_inner());
        let Some(u) = usage.get_mut(user) else {
            return Ok(Reservation::of(Usage::default(), want, ceiling));
        };
        let r = Reservation::of(*u, want, ceiling);
        u.bytes += r.granted.bytes;
        u.files += r.granted.files;
        Ok(r)
    }

    async fn hold(&self, user: &str, _now_unix: i64) -> Result<HoldId, StoreError> {
        let mut holds = self.holds.lock().unwrap_or_else(|p| p.into_inner());
        holds.next += 1;
        let id = holds.next;
        holds.by_id.insert(id, user.to_owned());
        Ok(HoldId(id))
    }

    async fn release(&self, hold: HoldId) -> Result<(), StoreError> {
        self.holds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .by_id
            .remove(&hold.0);
        Ok(())
    }

    async fn beat(&self, _now_unix: i64) -> Result<(), StoreError> {
        Ok(())
    }

    async fn orphaned(&self, _stale_before: i64) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }

    async fn recount(
        &self,
        user: &str,
        seen: Option<Usage>,
        measured: Usage,
        _stale_before: i64,
    ) -> Result<Recount, StoreError> {
        let holds = self.holds.lock().unwrap_or_else(|p| p.into_inner());
        if holds.by_id.values().any(|u| u == user) {
            return Ok(Recount::Busy);
        }
        let mut usage = self.usage.lock().unwrap_or_else(|p| p.into_inner());
        if usage.get(user).copied() != seen {
            return Ok(Recount::Changed);
        }
        usage.insert(user.to_owned(), measured);
        Ok(Recount::Done)
    }

    async fn drop_dead_holds(&self, _user: &str, _stale_before: i64) -> Result<(), StoreError> {
        // Every hold here is this process's own, so alive.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn adds_only_to_measured_users_and_never_below_zero() {
        let l = MemoryLedger::default();
        l.add("a", 10, 1).await.expect("add");
        assert_eq!(l.get("a").await.expect("get"), None);
        l.set("a", Usage { bytes: 5, files: 1 }).await.expect("set");
        l.add("a", 10, 1).await.expect("add");
        assert_eq!(
            l.get("a").await.expect("get"),
            Some(Usage {
                bytes: 15,
                files: 2
            })
        );
        l.add("a", -100, -5).await.expect("add");
        assert_eq!(
            l.get("a").await.expect("get"),
            Some(Usage { bytes: 0, files: 0 })
        );
    }

    fn usage(bytes: u64, files: u64) -> Usage {
        Usage { bytes, files }
    }

    #[test]
    fn a_reservation_grants_what_fits_under_the_ceiling() {
        let r = Reservation::of(usage(70, 2), usage(20, 1), usage(100, 3));
        assert_eq!(r.granted, usage(20, 1));
        assert_eq!(r.left, usage(10, 0));
        let r = Reservation::of(usage(90, 3), usage(20, 1), usage(100, 3));
        assert_eq!(r.granted, usage(10, 0), "only the room is granted");
        assert_eq!(r.left, usage(0, 0));
        // A usage already over the ceiling (the quota was lowered) grants nothing.
        let r = Reservation::of(usage(150, 9), usage(20, 1), usage(100, 3));
        assert_eq!(r, Reservation::default());
    }

    #[tokio::test]
    async fn reservations_add_up_to_the_ceiling_and_no_further() {
        let l = MemoryLedger::default();
        let ceiling = usage(100, 2);
        // Never measured: granted as from zero, nothing recorded.
        let r = l
            .reserve("a", usage(150, 1), ceiling)
            .await
            .expect("reserve");
        assert_eq!(r.granted, usage(100, 1));
        assert_eq!(l.get("a").await.expect("get"), None);
        l.set("a", usage(10, 0)).await.expect("set");
        let first = l
            .reserve("a", usage(60, 1), ceiling)
            .await
            .expect("reserve");
        let second = l
            .reserve("a", usage(60, 1), ceiling)
            .await
            .expect("reserve");
        let third = l
            .reserve("a", usage(60, 1), ceiling)
            .await
            .expect("reserve");
        assert_eq!(first.granted, usage(60, 1));
        assert_eq!(second.granted, usage(30, 1));
        assert_eq!(third.granted, usage(0, 0));
        assert_eq!(l.get("a").await.expect("get"), Some(ceiling));
    }
}
