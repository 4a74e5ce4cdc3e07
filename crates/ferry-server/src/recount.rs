//! Recounting the quota usage that a stopped server left counting
//! reservations nobody will settle.
//!
//! An upload reserves its share of a quota before it stores the bytes, and
//! settles when it ends ([`crate::transfer::budget`]). A server that dies in
//! between (a crash, `kill -9`, a power cut) never settles, and the user's
//! usage keeps counting what it had reserved, up to 64 MiB per upload. So each
//! upload is noted in the ledger while it runs ([`UsageLedger::hold`]), and
//! every running server beats ([`UsageLedger::beat`]). A server that has not
//! beaten for `accounts.recount_after` is taken for stopped: a running server
//! (the same one restarted, or another sharing the database) measures its
//! users' usage from storage and puts it in place of the recorded one
//! ([`UsageLedger::recount`]) — once no upload of theirs is in flight on a
//! live server, and only if the usage did not move while it was measured.
//!
//! `ferry user rescan-quota` goes through the same [`QuotaRecounter::recount`].

use std::sync::Arc;
use std::time::Duration;

use ferry_accounts::{
    AccountKind, AuthError, Authenticator, Recount, StoreError, Usage, UsageLedger,
};
use ferry_storage::{StorageBackend, StorageError};

use crate::options::{Clock, ServerOptions, unix_seconds};

/// How often a measurement is tried again when the usage moved meanwhile.
const TRIES: usize = 3;

/// Why a user's usage was not recounted.
#[derive(Debug, thiserror::Error)]
pub enum RecountError {
    /// The account database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The user's account could not be resolved (deleted, misconfigured).
    #[error("{0}")]
    Account(#[from] AuthError),
    /// The user's home could not be opened or walked.
    #[error("home directory: {0}")]
    Storage(#[from] StorageError),
    /// The user's home is a host directory, and system users are off.
    #[error("{0} is a host account and system users are off")]
    HostAccount(String),
    /// Uploads of the user are in flight on a running server (or on one
    /// stopped less than `accounts.recount_after` ago).
    #[error(
        "uploads of {0} are in flight on a running server, or on one stopped less than accounts.recount_after ago; try again when they end"
    )]
    Busy(String),
    /// The usage moved every time it was measured.
    #[error("the usage of {0} kept changing while it was measured; try again")]
    Changing(String),
}

/// Measures users' usage from storage and records it ([`QuotaRecounter::recount`]),
/// and finds the users a stopped server left behind ([`QuotaRecounter::sweep`]).
#[derive(Clone)]
pub struct QuotaRecounter {
    ledger: Arc<dyn UsageLedger>,
    accounts: Authenticator,
    storage: Arc<dyn StorageBackend>,
    host_storage: Option<Arc<dyn StorageBackend>>,
    /// How long a server may go without beating before it counts as stopped.
    recount_after: Duration,
    clock: Clock,
}

impl std::fmt::Debug for QuotaRecounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuotaRecounter")
            .field("ledger", &self.ledger)
            .field("recount_after", &self.recount_after)
            .finish_non_exhaustive()
    }
}

impl QuotaRecounter {
    /// A recounter over the server's ledger, accounts and storage.
    pub fn new(opts: &ServerOptions, recount_after: Duration) -> Self {
        QuotaRecounter {
            ledger: opts.ledger.clone(),
            accounts: opts.accounts.clone(),
            storage: opts.storage.clone(),
            host_storage: opts.host_storage.clone(),
            recount_after,
            clock: opts.clock.clone(),
        }
    }

    fn now(&self) -> i64 {
        unix_seconds((self.clock)())
    }

    /// Servers that last beat before this are taken for stopped.
    fn stale_before(&self) -> i64 {
        let after = i64::try_from(self.recount_after.as_secs()).unwrap_or(i64::MAX);
        self.now().saturating_sub(after.max(1))
    }

    /// Measures `user`'s usage from storage and records it, unless uploads of
    /// the user are in flight on a live server; returns what it recorded.
    pub async fn recount(&self, user: &str) -> Result<Usage, RecountError> {
        for _ in 0..TRIES {
            let seen = self.ledger.get(user).await?;
            let measured = match self.measure(user).await {
                Err(RecountError::Account(AuthError::UnknownUser)) => {
                    // Deleted since: nothing to measure, and its usage went
                    // with it; only the dead server's holds are left to end.
                    self.ledger
                        .drop_dead_holds(user, self.stale_before())
                        .await?;
                    return Err(RecountError::Account(AuthError::UnknownUser));
                }
                other => other?,
            };
            match self
                .ledger
                .recount(user, seen, measured, self.stale_before())
                .await?
            {
                Recount::Done => return Ok(measured),
                Recount::Busy => return Err(RecountError::Busy(user.to_owned())),
                Recount::Changed => continue,
            }
        }
        Err(RecountError::Changing(user.to_owned()))
    }

    async fn measure(&self, user: &str) -> Result<Usage, RecountError> {
        let account = self.accounts.account(user).await?;
        let home = match account.kind {
            AccountKind::System { uid, gid } => {
                let host = self
                    .host_storage
                    .as_ref()
                    .ok_or_else(|| RecountError::HostAccount(user.to_owned()))?;
                host.open_home_as(&account.home, false, Some((uid, gid)))
                    .await?
            }
            AccountKind::Virtual | AccountKind::Anonymous => {
                self.storage.open_home(&account.home, true).await?
            }
        };
        let (bytes, files) = ferry_storage::measure(home.as_ref()).await?;
        Ok(Usage { bytes, files })
    }

    /// Marks this server alive, and recounts the users whose uploads only
    /// stopped servers hold. Returns each user looked at with the outcome.
    pub async fn sweep(&self) -> Result<Vec<(String, Result<Usage, RecountError>)>, StoreError> {
        self.ledger.beat(self.now()).await?;
        let mut out = Vec::new();
        for user in self.ledger.orphaned(self.stale_before()).await? {
            let outcome = self.recount(&user).await;
            out.push((user, outcome));
        }
        Ok(out)
    }

    /// Sweeps now and then for as long as the server runs: often enough that
    /// a running server never looks stopped (five beats within
    /// `recount_after`).
    pub async fn run(self) {
        let every = (self.recount_after / 5).max(Duration::from_millis(200));
        loop {
            match self.sweep().await {
                Ok(users) => {
                    for (user, outcome) in users {
                        match outcome {
                            Ok(u) => tracing::info!(
                                user = %user, bytes = u.bytes, files = u.files,
                                "quota usage recounted: a stopped server had left uploads unsettled"
                            ),
                            Err(e) => {
                                tracing::warn!(user = %user, error = %e, "quota usage not recounted yet")
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot look for quota usage to recount"),
            }
            tokio::time::sleep(every).await;
        }
    }
}
