//! What an upload may store before it ends with 552 ("exceeded storage
//! allocation", RFC 959 §4.2): at most `max_file_size`, fixed when the upload
//! starts, and no more than the user's byte quota leaves, which the upload
//! reserves in the [`UsageLedger`] ahead of the bytes it stores.
//!
//! Reserving is what keeps uploads running at the same moment — two sessions
//! of one user, or two servers sharing a PostgreSQL ledger — from together
//! passing a quota: each byte stored was first taken from the quota in one
//! atomic step ([`UsageLedger::reserve`]). An upload takes more than the piece
//! at hand, so that a long one asks the ledger seldom (as much again as it
//! holds, from [`LEASE_MIN`] up to [`LEASE_MAX`]), but never more than half of
//! the room left, so that an upload running beside it still finds room.
//!
//! However an upload ends — committed, discarded over a limit, aborted after
//! a failure, or dropped (ABOR, a lost session) — a [`CountedUpload`] records
//! what is stored now against what was, less what it reserved. (A new file
//! keeps what arrived when its upload fails, so that it can be resumed: those
//! bytes count too.)

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};

use async_trait::async_trait;
use ferry_accounts::{HoldId, Usage, UsageLedger};
use ferry_storage::{Storage, StorageError, Upload, VirtualPath};
use tokio::io::AsyncWrite;

use crate::error::{SessionError, TransferError};
use crate::options::ServerOptions;
use ferry_accounts::Account;
use ferry_storage::WriteMode;

/// The least an upload reserves from a byte quota at a time.
pub const LEASE_MIN: u64 = 1 << 20;
/// The most an upload reserves from a byte quota at a time.
pub const LEASE_MAX: u64 = 64 << 20;

/// What an upload may store before a limit stops it.
#[derive(Debug, Clone)]
pub struct UploadBudget {
    /// A most fixed at the start (`max_file_size`), and the setting it comes
    /// from.
    fixed: Option<(u64, &'static str)>,
    /// The user's quota, as far as this upload holds it.
    quota: Option<Arc<QuotaLease>>,
}

impl UploadBudget {
    /// What an upload may store: at most what `max_file_size` leaves, and what
    /// the byte quota lets it reserve as it goes ([`UploadBudget`]). A new
    /// file is reserved under the file quota here, and refused at once if
    /// there is no room for it.
    pub async fn for_upload(
        opts: &ServerOptions,
        account: &Account,
        mode: WriteMode,
        old_size: Option<u64>,
    ) -> Result<Option<UploadBudget>, SessionError> {
        let limits = &account.limits;
        // The file size the upload starts from.
        let base = match mode {
            WriteMode::Replace | WriteMode::CreateNew => 0,
            WriteMode::Append | WriteMode::InPlace => old_size.unwrap_or(0),
            WriteMode::Resume { offset } => offset,
        };
        let mut fixed = None;
        if let Some(max) = &limits.max_file_size {
            if base >= max.value && base > 0 {
                return Err(SessionError::OverLimit(ferry_accounts::LimitRefusal {
                    setting: "max_file_size",
                    reason: format!(
                        "the file is already {base} bytes, the most is {} (set by {})",
                        max.value, max.source
                    ),
                }));
            }
            fixed = Some((max.value.saturating_sub(base), "max_file_size"));
        }
        if limits.quota_bytes.is_none() && limits.quota_files.is_none() {
            return Ok(UploadBudget::new(fixed, None));
        }
        let unavailable = |e: ferry_accounts::StoreError| {
            SessionError::usage_unreadable(&VirtualPath::root(), &e)
        };
        let ledger = &opts.ledger;
        let usage = ledger
            .get(&account.name)
            .await
            .map_err(unavailable)?
            .unwrap_or_default();
        // Stored after the upload: usage - old + base + n <= quota.
        let bytes_ceiling = limits.quota_bytes.as_ref().map(|q| {
            q.value
                .saturating_add(old_size.unwrap_or(0))
                .saturating_sub(base)
        });
        // A new file takes its place under the file quota now.
        let files_ceiling = limits
            .quota_files
            .as_ref()
            .filter(|_| old_size.is_none())
            .map(|q| q.value);
        let lease = QuotaLease::open(
            ledger.clone(),
            account.name.clone(),
            bytes_ceiling,
            files_ceiling,
            usage,
            crate::options::unix_seconds((opts.clock)()),
        )
        .await
        .map_err(unavailable)?;
        match (lease, &limits.quota_files) {
            (None, Some(q)) => Err(SessionError::OverLimit(ferry_accounts::LimitRefusal {
                setting: "quota_files",
                reason: format!(
                    "{} files stored, the quota is {} (set by {})",
                    usage.files.max(q.value),
                    q.value,
                    q.source
                ),
            })),
            // Only the file quota refuses a lease.
            (lease, _) => Ok(UploadBudget::new(fixed, lease)),
        }
    }

    /// A budget of at most `fixed` bytes and what `quota` lets the upload
    /// reserve; `None` when there is neither.
    pub fn new(fixed: Option<(u64, &'static str)>, quota: Option<Arc<QuotaLease>>) -> Option<Self> {
        (fixed.is_some() || quota.is_some()).then_some(UploadBudget { fixed, quota })
    }

    /// A budget of exactly `bytes`, set by `setting`.
    pub fn fixed(bytes: u64, setting: &'static str) -> Self {
        UploadBudget {
            fixed: Some((bytes, setting)),
            quota: None,
        }
    }

    /// How many of the next `want` bytes may be stored after `stored`,
    /// reserving more of the quota if the upload's share ran out.
    pub async fn room(&self, stored: u64, want: u64) -> Result<u64, TransferError> {
        let want = want.min(self.fixed_room(stored));
        match &self.quota {
            Some(lease) => Ok(lease
                .cover(stored.saturating_add(want))
                .await?
                .saturating_sub(stored)
                .min(want)),
            None => Ok(want),
        }
    }

    /// [`UploadBudget::room`] for a blocking loop (a thread outside the async
    /// workers): the ledger is asked on the runtime the lease was made on.
    pub fn room_blocking(&self, stored: u64, want: u64) -> Result<u64, TransferError> {
        match &self.quota {
            Some(lease) if !lease.covers(stored.saturating_add(want)) => {
                lease.runtime.clone().block_on(self.room(stored, want))
            }
            _ => Ok(want.min(self.fixed_room(stored))),
        }
    }

    /// The setting that stopped an upload which stored `stored` bytes and
    /// had more to store.
    pub fn setting(&self, stored: u64) -> &'static str {
        match self.fixed {
            Some((bytes, setting)) if stored >= bytes => setting,
            _ => "quota_bytes",
        }
    }

    /// Records what the upload changed in the user's usage (`bytes` and
    /// `files` more than before it), less what it reserved.
    pub async fn settle(&self, bytes: i64, files: i64) {
        if let Some(lease) = &self.quota {
            lease.settle(bytes, files).await;
        }
    }

    /// Whether the upload's usage is settled through this budget (otherwise
    /// the caller records it).
    pub fn holds_quota(&self) -> bool {
        self.quota.is_some()
    }

    fn fixed_room(&self, stored: u64) -> u64 {
        self.fixed
            .map_or(u64::MAX, |(bytes, _)| bytes.saturating_sub(stored))
    }
}

/// The part of a user's quota one upload holds in the [`UsageLedger`].
#[derive(Debug)]
pub struct QuotaLease {
    ledger: Arc<dyn UsageLedger>,
    /// The ledger's note that this upload holds reservations.
    hold: HoldId,
    user: String,
    /// The byte usage this upload may take the user to: the quota, plus the
    /// old file it replaces, less the part of the file it keeps (APPE,
    /// REST). `None` without a byte quota.
    bytes_ceiling: Option<u64>,
    /// Bytes reserved so far.
    held: AtomicU64,
    /// The room under the ceiling at the last look, to size the next
    /// reservation.
    left: AtomicU64,
    /// The file reserved under `quota_files` (1 for a new file, else 0).
    files_held: u64,
    settled: AtomicBool,
    runtime: tokio::runtime::Handle,
}

impl QuotaLease {
    /// Opens a lease for `user`'s upload, the user's usage being `usage`:
    /// reserves in one step a new file under `files_ceiling` (given when the
    /// upload creates a file and the user has a file quota) and a first
    /// share of the bytes under `bytes_ceiling` (as on the field): the least
    /// of [`LEASE_MIN`] and half the room, which is all a small upload
    /// needs. `Ok(None)` when the file quota has no room. Must be called on
    /// the runtime.
    ///
    /// The lease is noted in the ledger first ([`UsageLedger::hold`], this
    /// server alive at `now_unix`) and the note ends when the lease settles
    /// or is dropped: if the server dies in between, what it reserved is
    /// recounted from storage ([`crate::recount`]).
    pub async fn open(
        ledger: Arc<dyn UsageLedger>,
        user: String,
        bytes_ceiling: Option<u64>,
        files_ceiling: Option<u64>,
        usage: Usage,
        now_unix: i64,
    ) -> Result<Option<Arc<Self>>, ferry_accounts::StoreError> {
        let left = bytes_ceiling.map_or(0, |c| c.saturating_sub(usage.bytes));
        let want = Usage {
            bytes: bytes_ceiling.map_or(0, |_| LEASE_MIN.min(left / 2)),
            files: u64::from(files_ceiling.is_some()),
        };
        let hold = ledger.hold(&user, now_unix).await?;
        let granted = if want == Usage::default() {
            ferry_accounts::Reservation::default()
        } else {
            let ceiling = Usage {
                bytes: bytes_ceiling.unwrap_or(u64::MAX),
                files: files_ceiling.unwrap_or(u64::MAX),
            };
            match ledger.reserve(&user, want, ceiling).await {
                Ok(r) => r,
                Err(e) => {
                    release(ledger.as_ref(), hold, &user).await;
                    return Err(e);
                }
            }
        };
        let lease = Arc::new(QuotaLease {
            ledger,
            hold,
            user,
            bytes_ceiling,
            held: AtomicU64::new(granted.granted.bytes),
            left: AtomicU64::new(if want.bytes > 0 {
                granted.left.bytes
            } else {
                left
            }),
            files_held: granted.granted.files,
            settled: AtomicBool::new(false),
            runtime: tokio::runtime::Handle::current(),
        });
        // No room for the file: the lease is dropped, which gives back the
        // bytes it got.
        Ok((granted.granted.files == want.files).then_some(lease))
    }

    /// Bytes reserved so far.
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Acquire)
    }

    fn covers(&self, upto: u64) -> bool {
        self.bytes_ceiling.is_none() || self.held() >= upto
    }

    /// Reserves until `upto` bytes are held, if the quota has room; returns
    /// what is held (all of `upto` or more, unless the quota ran out).
    async fn cover(&self, upto: u64) -> Result<u64, TransferError> {
        let Some(ceiling) = self.bytes_ceiling else {
            return Ok(u64::MAX);
        };
        let held = self.held();
        if held >= upto {
            return Ok(held);
        }
        let ahead = held
            .clamp(LEASE_MIN, LEASE_MAX)
            .min(self.left.load(Ordering::Acquire) / 2);
        let want = (upto - held).max(ahead);
        let r = self
            .ledger
            .reserve(
                &self.user,
                Usage {
                    bytes: want,
                    files: 0,
                },
                Usage {
                    bytes: ceiling,
                    files: u64::MAX,
                },
            )
            .await
            .map_err(|e| TransferError::QuotaUnavailable(e.to_string()))?;
        self.left.store(r.left.bytes, Ordering::Release);
        Ok(self.held.fetch_add(r.granted.bytes, Ordering::AcqRel) + r.granted.bytes)
    }

    /// Records the upload's change to the usage less what it reserved. Once.
    async fn settle(&self, bytes: i64, files: i64) {
        if self.settled.swap(true, Ordering::AcqRel) {
            return;
        }
        let held = i64::try_from(self.held()).unwrap_or(i64::MAX);
        let files_held = i64::try_from(self.files_held).unwrap_or(i64::MAX);
        let (bytes, files) = (bytes - held, files - files_held);
        if (bytes, files) != (0, 0)
            && let Err(e) = self.ledger.add(&self.user, bytes, files).await
        {
            // Counted too high (by what was reserved and not stored) until
            // `ferry user rescan-quota`; never too low.
            tracing::warn!(user = %self.user, error = %e, "quota usage not recorded");
        }
        release(self.ledger.as_ref(), self.hold, &self.user).await;
    }
}

/// Ends a hold; a failure is logged (the ledger tries again later).
async fn release(ledger: &dyn UsageLedger, hold: HoldId, user: &str) {
    if let Err(e) = ledger.release(hold).await {
        tracing::warn!(user = %user, error = %e, "quota hold not ended");
    }
}

impl Drop for QuotaLease {
    /// An upload dropped before it settled (ABOR, a lost session) gives back
    /// what it reserved.
    fn drop(&mut self) {
        if self.settled.load(Ordering::Acquire) {
            return;
        }
        let (held, files, hold) = (self.held(), self.files_held, self.hold);
        let (ledger, user) = (self.ledger.clone(), std::mem::take(&mut self.user));
        let back = |n: u64| -i64::try_from(n).unwrap_or(i64::MAX);
        self.runtime.spawn(async move {
            if (held, files) != (0, 0)
                && let Err(e) = ledger.add(&user, back(held), back(files)).await
            {
                tracing::warn!(user = %user, error = %e, "quota reservation not given back");
            }
            release(ledger.as_ref(), hold, &user).await;
        });
    }
}

/// An upload that, however it ends, records what it changed in its user's
/// usage ([`UsageCount`]).
pub struct CountedUpload {
    /// Taken when the upload ends; dropped before the count is made, so that
    /// a dropped upload has settled its file (see [`Upload`]) by then.
    inner: Option<Box<dyn Upload>>,
    count: Option<UsageCount>,
    runtime: tokio::runtime::Handle,
}

/// What an upload needs to record its change to the usage.
#[derive(Debug)]
pub struct UsageCount {
    pub storage: Arc<dyn Storage>,
    pub path: VirtualPath,
    /// The file's size before the upload, if it existed.
    pub old_size: Option<u64>,
    pub ledger: Arc<dyn UsageLedger>,
    pub user: String,
    /// The budget that reserved quota for the upload, if any.
    pub budget: Option<UploadBudget>,
}

impl UsageCount {
    /// Compares what is stored now with what was, and records the difference
    /// (less what the upload reserved).
    async fn record(self) {
        let now = self.storage.metadata(&self.path).await.ok().map(|m| m.size);
        self.record_size(now).await;
    }

    /// Records the difference to `now`, the size stored now (`None`: no file).
    async fn record_size(self, now: Option<u64>) {
        let size = |s: Option<u64>| i64::try_from(s.unwrap_or(0)).unwrap_or(i64::MAX);
        let bytes = size(now) - size(self.old_size);
        let files = i64::from(now.is_some()) - i64::from(self.old_size.is_some());
        match &self.budget {
            Some(b) if b.holds_quota() => b.settle(bytes, files).await,
            _ if (bytes, files) != (0, 0) => {
                if let Err(e) = self.ledger.add(&self.user, bytes, files).await {
                    tracing::warn!(user = %self.user, error = %e, "quota usage not recorded");
                }
            }
            _ => {}
        }
    }
}

impl CountedUpload {
    /// Opens an upload of `path` for a signed-in user, as STOR/APPE and
    /// SFTP's write handles do: its budget ([`UploadBudget::for_upload`]),
    /// the storage's upload, and the count of what it changes. Dropped
    /// unused, the upload ends as after a failure (see [`Upload`]).
    pub async fn open(
        opts: &ServerOptions,
        user: &crate::signin::SignedIn,
        path: &VirtualPath,
        mode: WriteMode,
        old_size: Option<u64>,
    ) -> Result<(Box<dyn Upload>, Option<UploadBudget>), SessionError> {
        let budget = UploadBudget::for_upload(opts, &user.account, mode, old_size).await?;
        let storage = user.storage.clone();
        let upload = storage
            .write(path, mode)
            .await
            .map_err(|e| SessionError::storage(path, e))?;
        let upload = CountedUpload::wrap(
            upload,
            UsageCount {
                storage,
                path: path.clone(),
                old_size,
                ledger: opts.ledger.clone(),
                user: user.account.name.clone(),
                budget: budget.clone(),
            },
        );
        Ok((upload, budget))
    }

    /// Wraps `inner`. Must be called on the runtime.
    pub fn wrap(inner: Box<dyn Upload>, count: UsageCount) -> Box<dyn Upload> {
        Box::new(CountedUpload {
            inner: Some(inner),
            count: Some(count),
            runtime: tokio::runtime::Handle::current(),
        })
    }

    fn inner(&mut self) -> std::io::Result<&mut Box<dyn Upload>> {
        self.inner
            .as_mut()
            .ok_or_else(|| std::io::Error::other("the upload has ended"))
    }

    /// Ends the upload with `end`, then records the count.
    async fn end<T, F>(mut self: Box<Self>, end: impl FnOnce(Box<dyn Upload>) -> F) -> Option<T>
    where
        F: std::future::Future<Output = T>,
    {
        let result = match self.inner.take() {
            Some(inner) => Some(end(inner).await),
            None => None,
        };
        if let Some(count) = self.count.take() {
            count.record().await;
        }
        result
    }
}

impl std::fmt::Debug for CountedUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CountedUpload").finish_non_exhaustive()
    }
}

#[async_trait]
impl Upload for CountedUpload {
    /// A committed upload's file is at its path with the size the commit
    /// answers: the count takes it from there rather than from a lookup.
    async fn commit(mut self: Box<Self>) -> Result<u64, StorageError> {
        let Some(inner) = self.inner.take() else {
            return Err(StorageError::Io(std::io::Error::other(
                "the upload has ended",
            )));
        };
        let result = inner.commit().await;
        if let Some(count) = self.count.take() {
            match &result {
                Ok(size) => count.record_size(Some(*size)).await,
                Err(_) => count.record().await,
            }
        }
        result
    }

    async fn abort(self: Box<Self>) {
        self.end(|u| u.abort()).await;
    }

    async fn discard(self: Box<Self>) {
        self.end(|u| u.discard()).await;
    }

    async fn sync(&mut self) -> Result<(), StorageError> {
        self.inner()?.sync().await
    }

    fn host_file(&self) -> Option<std::io::Result<std::fs::File>> {
        self.inner.as_ref()?.host_file()
    }

    fn wrote(&mut self, n: u64) {
        if let Some(inner) = self.inner.as_mut() {
            inner.wrote(n);
        }
    }

    async fn seek(&mut self, offset: u64) -> Result<(), StorageError> {
        self.inner()?.seek(offset).await
    }

    async fn set_len(&mut self, size: u64) -> Result<(), StorageError> {
        self.inner()?.set_len(size).await
    }
}

impl AsyncWrite for CountedUpload {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.inner() {
            Ok(inner) => Pin::new(&mut **inner).poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.inner() {
            Ok(inner) => Pin::new(&mut **inner).poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.inner() {
            Ok(inner) => Pin::new(&mut **inner).poll_shutdown(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl Drop for CountedUpload {
    /// An upload dropped before it ended (ABOR, a lost session): its file is
    /// settled first (dropping it does that), then counted.
    fn drop(&mut self) {
        drop(self.inner.take());
        if let Some(count) = self.count.take() {
            self.runtime.spawn(count.record());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_accounts::MemoryLedger;

    fn usage(bytes: u64, files: u64) -> Usage {
        Usage { bytes, files }
    }

    async fn ledger_at(bytes: u64) -> Arc<MemoryLedger> {
        let ledger = Arc::new(MemoryLedger::default());
        ledger.set("u", usage(bytes, 0)).await.expect("set");
        ledger
    }

    async fn lease(ledger: &Arc<MemoryLedger>, ceiling: u64) -> Option<UploadBudget> {
        let now = ledger.get("u").await.expect("get").unwrap_or_default();
        let ledger: Arc<dyn UsageLedger> = ledger.clone();
        let lease = QuotaLease::open(ledger, "u".into(), Some(ceiling), None, now, 0)
            .await
            .expect("open");
        UploadBudget::new(None, lease)
    }

    /// Two uploads side by side under one quota store no more than it
    /// allows together, and each finds room while there is room.
    #[tokio::test]
    async fn uploads_side_by_side_share_the_quota() {
        let ledger = ledger_at(0).await;
        let quota = 100 << 20;
        let (a, b) = (
            lease(&ledger, quota).await.expect("budget"),
            lease(&ledger, quota).await.expect("budget"),
        );
        // Each stores 40 MiB, a MiB at a time, in turn: both fit.
        let (mut sa, mut sb) = (0u64, 0u64);
        for _ in 0..40 {
            sa += a.room(sa, 1 << 20).await.expect("room");
            sb += b.room(sb, 1 << 20).await.expect("room");
        }
        assert_eq!((sa, sb), (40 << 20, 40 << 20));
        // Then each wants 30 MiB more: together they get the 20 MiB left.
        let (ga, gb) = (
            a.room(sa, 30 << 20).await.expect("room"),
            b.room(sb, 30 << 20).await.expect("room"),
        );
        assert_eq!(ga + gb, 20 << 20, "{ga} + {gb}");
        assert_eq!(a.setting(sa + ga), "quota_bytes");
        a.settle(i64::try_from(sa + ga).expect("i64"), 1).await;
        b.settle(i64::try_from(sb + gb).expect("i64"), 1).await;
        assert_eq!(ledger.get("u").await.expect("get"), Some(usage(quota, 2)));
    }

    /// An upload asks the ledger seldom: once per piece at first, then for
    /// as much again as it holds, up to [`LEASE_MAX`].
    #[tokio::test]
    async fn a_long_upload_reserves_ahead() {
        let ledger = ledger_at(0).await;
        let budget = lease(&ledger, u64::MAX / 2).await.expect("budget");
        let mut stored = 0u64;
        let mut asked = 0;
        while stored < (1 << 30) {
            let before = ledger.get("u").await.expect("get");
            stored += budget.room(stored, 1 << 20).await.expect("room");
            asked += usize::from(ledger.get("u").await.expect("get") != before);
        }
        assert!(asked <= 24, "{asked} reservations for 1 GiB");
        // What was reserved and not stored goes back when it settles.
        budget.settle(1 << 30, 1).await;
        assert_eq!(ledger.get("u").await.expect("get"), Some(usage(1 << 30, 1)));
    }

    /// A dropped upload gives its reservation back; one that settled does
    /// not give it twice.
    #[tokio::test]
    async fn a_dropped_upload_gives_its_share_back() {
        let ledger = ledger_at(5).await;
        let budget = lease(&ledger, 1000).await.expect("budget");
        assert_eq!(budget.room(0, 300).await.expect("room"), 300);
        assert!(ledger.get("u").await.expect("get").expect("usage").bytes > 5);
        drop(budget);
        tokio::task::yield_now().await;
        assert_eq!(ledger.get("u").await.expect("get"), Some(usage(5, 0)));
        let budget = lease(&ledger, 1000).await.expect("budget");
        assert_eq!(budget.room(0, 300).await.expect("room"), 300);
        budget.settle(300, 1).await;
        drop(budget);
        tokio::task::yield_now().await;
        assert_eq!(ledger.get("u").await.expect("get"), Some(usage(305, 1)));
    }

    /// `max_file_size` stops an upload before the quota does, and is named.
    #[tokio::test]
    async fn the_fixed_most_is_named_when_it_stops_the_upload() {
        let ledger = ledger_at(0).await;
        let ledger_dyn: Arc<dyn UsageLedger> = ledger.clone();
        let lease = QuotaLease::open(ledger_dyn, "u".into(), Some(1000), None, usage(0, 0), 0)
            .await
            .expect("open");
        let budget = UploadBudget::new(Some((10, "max_file_size")), lease).expect("budget");
        assert_eq!(budget.room(0, 64).await.expect("room"), 10);
        assert_eq!(budget.setting(10), "max_file_size");
        assert_eq!(budget.room_blocking(4, 64).expect("room"), 6);
    }

    /// A new file takes its place under the file quota with its first share
    /// of the bytes, in one reservation; with no place left, the upload is
    /// refused and the bytes go back.
    #[tokio::test]
    async fn a_new_file_needs_room_under_the_file_quota() {
        let ledger = ledger_at(0).await;
        let open = |ledger: &Arc<MemoryLedger>| {
            let ledger: Arc<dyn UsageLedger> = ledger.clone();
            async move {
                let now = ledger.get("u").await.expect("get").unwrap_or_default();
                QuotaLease::open(ledger, "u".into(), Some(100 << 20), Some(1), now, 0)
                    .await
                    .expect("open")
            }
        };
        let first = open(&ledger).await.expect("room for one file");
        assert_eq!(
            ledger.get("u").await.expect("get"),
            Some(usage(LEASE_MIN, 1))
        );
        assert!(open(&ledger).await.is_none(), "no room for a second file");
        tokio::task::yield_now().await;
        assert_eq!(
            ledger.get("u").await.expect("get"),
            Some(usage(LEASE_MIN, 1))
        );
        drop(first);
        tokio::task::yield_now().await;
        assert_eq!(ledger.get("u").await.expect("get"), Some(usage(0, 0)));
    }

    /// A ledger that fails once its first reservation is made: the account
    /// database gone in the middle of an upload.
    #[derive(Debug, Default)]
    struct FailingLedger {
        inner: MemoryLedger,
        reserved: AtomicBool,
    }

    #[async_trait]
    impl UsageLedger for FailingLedger {
        async fn get(&self, user: &str) -> Result<Option<Usage>, ferry_accounts::StoreError> {
            self.inner.get(user).await
        }
        async fn set(&self, user: &str, usage: Usage) -> Result<(), ferry_accounts::StoreError> {
            self.inner.set(user, usage).await
        }
        async fn add(&self, user: &str, b: i64, f: i64) -> Result<(), ferry_accounts::StoreError> {
            self.inner.add(user, b, f).await
        }
        async fn hold(&self, user: &str, now: i64) -> Result<HoldId, ferry_accounts::StoreError> {
            self.inner.hold(user, now).await
        }
        async fn release(&self, hold: HoldId) -> Result<(), ferry_accounts::StoreError> {
            self.inner.release(hold).await
        }
        async fn beat(&self, now: i64) -> Result<(), ferry_accounts::StoreError> {
            self.inner.beat(now).await
        }
        async fn orphaned(&self, before: i64) -> Result<Vec<String>, ferry_accounts::StoreError> {
            self.inner.orphaned(before).await
        }
        async fn recount(
            &self,
            user: &str,
            seen: Option<Usage>,
            measured: Usage,
            before: i64,
        ) -> Result<ferry_accounts::Recount, ferry_accounts::StoreError> {
            self.inner.recount(user, seen, measured, before).await
        }
        async fn drop_dead_holds(
            &self,
            user: &str,
            before: i64,
        ) -> Result<(), ferry_accounts::StoreError> {
            self.inner.drop_dead_holds(user, before).await
        }
        async fn reserve(
            &self,
            user: &str,
            want: Usage,
            ceiling: Usage,
        ) -> Result<ferry_accounts::Reservation, ferry_accounts::StoreError> {
            if self.reserved.swap(true, Ordering::AcqRel) {
                return Err(ferry_accounts::StoreError::Backend {
                    store: "postgres://db".into(),
                    message: "connection refused".into(),
                });
            }
            self.inner.reserve(user, want, ceiling).await
        }
    }

    /// The ledger failing when an upload needs more of the quota stops the
    /// upload with 451 and says why; what it held is still settled.
    #[tokio::test]
    async fn a_ledger_failing_mid_upload_stops_it_with_451() {
        let ledger = Arc::new(FailingLedger::default());
        ledger.set("u", usage(0, 0)).await.expect("set");
        let ledger_dyn: Arc<dyn UsageLedger> = ledger.clone();
        let lease = QuotaLease::open(
            ledger_dyn,
            "u".into(),
            Some(100 << 20),
            None,
            usage(0, 0),
            0,
        )
        .await
        .expect("open");
        let budget = UploadBudget::new(None, lease).expect("budget");
        assert_eq!(budget.room(0, LEASE_MIN).await.expect("room"), LEASE_MIN);
        let e = budget
            .room(LEASE_MIN, 1)
            .await
            .expect_err("the ledger failed");
        assert!(matches!(e, TransferError::QuotaUnavailable(_)), "{e}");
        let reply = e.reply();
        assert_eq!(reply.code(), 451);
        assert!(reply.to_string().contains("connection refused"), "{reply}");
        budget
            .settle(i64::try_from(LEASE_MIN).expect("i64"), 1)
            .await;
        assert_eq!(
            ledger.get("u").await.expect("get"),
            Some(usage(LEASE_MIN, 1))
        );
    }
}
