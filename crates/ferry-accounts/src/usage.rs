//! Quota usage: how many bytes and files each user stores.
//!
//! The server keeps usage in a [`UsageLedger`] and updates it as uploads, deletes,
//! renames over files and appends complete. A user with a quota and no usage
//! record yet is measured from storage at login; `ferry user rescan-quota` does the
//! same on demand.

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
}

/// Usage kept in memory, for the configuration store: measured again at each start.
#[derive(Debug, Default)]
pub struct MemoryLedger {
    usage: Mutex<HashMap<String, Usage>>,
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
}
