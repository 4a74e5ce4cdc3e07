//! The SQL account store: SQLite (the embedded default) and PostgreSQL (shared by
//! several ferry nodes), through one code path (sqlx's `Any` driver).
//!
//! Each user and group is one row: its name and its settings as JSON, with the
//! same keys and value forms as `[[users]]` in ferry.toml. Quota usage is a row per
//! user, updated in place (`bytes = bytes + delta`), so concurrent sessions on
//! several nodes add up correctly.

use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use async_trait::async_trait;
use ferry_config::AccountSettings;
use sqlx::pool::PoolOptions;
use sqlx::{Any, AssertSqlSafe, Pool, Row};

type AnyPool = Pool<Any>;

use crate::store::{AccountStore, StoreError};
use crate::usage::{HoldId, Recount, Reservation, Usage, UsageLedger};

/// The schema, in order; each statement is safe to run again. The only SQL built at
/// run time interpolates a table name from [`Kind`], never user input.
const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS ferry_users (name TEXT PRIMARY KEY, settings TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS ferry_groups (name TEXT PRIMARY KEY, settings TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS ferry_usage (name TEXT PRIMARY KEY, bytes BIGINT NOT NULL, files BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS ferry_bans (address TEXT PRIMARY KEY, until_unix BIGINT NOT NULL, reason TEXT NOT NULL)",
    // The servers whose uploads hold reservations, and when each last said it
    // was alive; and the uploads in flight (UsageLedger::hold).
    "CREATE TABLE IF NOT EXISTS ferry_holders (holder TEXT PRIMARY KEY, beat_unix BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS ferry_holds (holder TEXT NOT NULL, id BIGINT NOT NULL, name TEXT NOT NULL, PRIMARY KEY (holder, id))",
];

/// The holds of `ferry_holds` whose server is alive (beat at or after `$1`).
const LIVE_HOLD: &str =
    "SELECT 1 FROM ferry_holders n WHERE n.holder = ferry_holds.holder AND n.beat_unix >= $1";

/// A banned client address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    pub address: std::net::IpAddr,
    /// Seconds since the Unix epoch when the ban ends.
    pub until_unix: i64,
    pub reason: String,
}

/// Users, groups and usage in a SQL database.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: AnyPool,
    url: String,
    /// How long one request may take, waiting for a connection included.
    timeout: Duration,
    /// This process, as the holder of its uploads' holds: random, so that
    /// servers sharing the database (or one restarted) never take each
    /// other's.
    holder: String,
    /// The last hold id given out.
    holds: Arc<AtomicI64>,
    /// When this process last beat (Unix seconds).
    beaten: Arc<AtomicI64>,
    /// Holds whose insert or delete failed (the database away): deleted at
    /// the next beat, so that a hold no upload owns never keeps its user
    /// from a recount.
    unreleased: Arc<Mutex<Vec<i64>>>,
}

/// Which table a row lives in.
#[derive(Debug, Clone, Copy)]
enum Kind {
    User,
    Group,
}

impl Kind {
    fn table(self) -> &'static str {
        match self {
            Kind::User => "ferry_users",
            Kind::Group => "ferry_groups",
        }
    }

    fn word(self) -> &'static str {
        match self {
            Kind::User => "user",
            Kind::Group => "group",
        }
    }
}

impl SqlStore {
    /// Opens (and for SQLite creates) the database at `url` (`sqlite:PATH` or
    /// `postgres://...`) and brings its schema up to date. Every request,
    /// opening included, fails with [`StoreError::Backend`] once it has taken
    /// `timeout` (`accounts.timeout`): a database that is down or stopped
    /// answering costs a login or an upload that long, not forever. The pool
    /// connects again by itself when the database is back.
    pub async fn open(url: &str, timeout: Duration) -> Result<Self, StoreError> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        let shown = redact(url);
        let connect_url = if let Some(path) = url.strip_prefix("sqlite:") {
            let path = path.trim_start_matches("//");
            if let Some(parent) = std::path::Path::new(path).parent()
                && !parent.as_os_str().is_empty()
            {
                std::fs::create_dir_all(parent).map_err(|e| backend(&shown, e))?;
            }
            format!("sqlite://{path}?mode=rwc")
        } else {
            url.to_owned()
        };
        let pool = PoolOptions::<Any>::new()
            .max_connections(if url.starts_with("sqlite:") { 4 } else { 8 })
            // Longer than `timeout`, so that [`SqlStore::bounded`] ends a
            // request first, with a message that names the setting.
            .acquire_timeout(timeout.saturating_mul(2))
            .connect(&connect_url);
        let pool = tokio::time::timeout(timeout, pool)
            .await
            .map_err(|_| backend(&shown, no_answer(timeout)))?
            .map_err(|e| backend(&shown, e))?;
        let store = SqlStore {
            pool,
            url: shown,
            timeout,
            holder: format!("{}-{:016x}", std::process::id(), rand::random::<u64>()),
            holds: Arc::new(AtomicI64::new(0)),
            beaten: Arc::new(AtomicI64::new(i64::MIN)),
            unreleased: Arc::default(),
        };
        store
            .bounded(async {
                if url.starts_with("sqlite:") {
                    // Write-ahead logging: a write (an upload's quota
                    // reservation, a ban) is one append and one fsync rather
                    // than a rollback journal written, synced and deleted each
                    // time, and readers (logins) do not wait for writers. The
                    // mode is kept in the file.
                    sqlx::query("PRAGMA journal_mode = WAL")
                        .execute(&store.pool)
                        .await
                        .map_err(|e| store.err(e))?;
                }
                for statement in SCHEMA {
                    sqlx::query(*statement)
                        .execute(&store.pool)
                        .await
                        .map_err(|e| store.err(e))?;
                }
                Ok(())
            })
            .await?;
        Ok(store)
    }

    fn err(&self, e: impl std::fmt::Display) -> StoreError {
        backend(&self.url, e)
    }

    /// Marks this process alive at `now_unix` (unbounded: callers bound it).
    async fn beat_now(&self, now_unix: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO ferry_holders (holder, beat_unix) VALUES ($1, $2) \
             ON CONFLICT (holder) DO UPDATE SET beat_unix = excluded.beat_unix",
        )
        .bind(self.holder.as_str())
        .bind(now_unix)
        .execute(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        self.beaten.store(now_unix, Ordering::Release);
        Ok(())
    }

    async fn delete_hold(&self, id: i64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM ferry_holds WHERE holder = $1 AND id = $2")
            .bind(self.holder.as_str())
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn unreleased_lock(&self) -> std::sync::MutexGuard<'_, Vec<i64>> {
        self.unreleased.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn unreleased_push(&self, id: i64) {
        self.unreleased_lock().push(id);
    }

    /// Runs one request, failing it once it has taken the store's timeout:
    /// the pool bounds the wait for a connection, and this the answer on it
    /// (a database host that vanished from the network leaves a query waiting
    /// for TCP to give up, which takes many minutes). A request cut short may
    /// still be carried out by the database.
    async fn bounded<T>(
        &self,
        request: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.timeout, request)
            .await
            .unwrap_or_else(|_| Err(self.err(no_answer(self.timeout))))
    }

    /// A usage row's `bytes, files` (read as the first two columns).
    fn usage_of(&self, row: &sqlx::any::AnyRow) -> Result<Usage, StoreError> {
        let bytes: i64 = row.try_get(0).map_err(|e| self.err(e))?;
        let files: i64 = row.try_get(1).map_err(|e| self.err(e))?;
        Ok(Usage {
            bytes: bytes.max(0) as u64,
            files: files.max(0) as u64,
        })
    }

    async fn get(&self, kind: Kind, name: &str) -> Result<Option<AccountSettings>, StoreError> {
        let sql = format!("SELECT settings FROM {} WHERE name = $1", kind.table());
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        match row {
            None => Ok(None),
            Some(row) => {
                let json: String = row.try_get(0).map_err(|e| self.err(e))?;
                serde_json::from_str(&json).map(Some).map_err(|e| {
                    self.err(format!(
                        "{} {name} has unreadable settings: {e}",
                        kind.word()
                    ))
                })
            }
        }
    }

    async fn names(&self, kind: Kind) -> Result<Vec<String>, StoreError> {
        let sql = format!("SELECT name FROM {} ORDER BY name", kind.table());
        let rows = sqlx::query(AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        rows.iter()
            .map(|r| r.try_get::<String, _>(0).map_err(|e| self.err(e)))
            .collect()
    }

    async fn insert(
        &self,
        kind: Kind,
        name: &str,
        settings: &AccountSettings,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(settings).map_err(|e| self.err(e))?;
        let sql = format!(
            "INSERT INTO {} (name, settings) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            kind.table()
        );
        let done = sqlx::query(AssertSqlSafe(sql))
            .bind(name)
            .bind(json)
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::AlreadyExists {
                kind: kind.word(),
                name: name.to_owned(),
            });
        }
        Ok(())
    }

    async fn update(
        &self,
        kind: Kind,
        name: &str,
        settings: &AccountSettings,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(settings).map_err(|e| self.err(e))?;
        let sql = format!("UPDATE {} SET settings = $1 WHERE name = $2", kind.table());
        let done = sqlx::query(AssertSqlSafe(sql))
            .bind(json)
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                kind: kind.word(),
                name: name.to_owned(),
            });
        }
        Ok(())
    }

    async fn delete(&self, kind: Kind, name: &str) -> Result<(), StoreError> {
        let sql = format!("DELETE FROM {} WHERE name = $1", kind.table());
        let done = sqlx::query(AssertSqlSafe(sql))
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                kind: kind.word(),
                name: name.to_owned(),
            });
        }
        if let Kind::User = kind {
            sqlx::query("DELETE FROM ferry_usage WHERE name = $1")
                .bind(name)
                .execute(&self.pool)
                .await
                .map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    pub async fn add_user(&self, name: &str, settings: &AccountSettings) -> Result<(), StoreError> {
        self.bounded(self.insert(Kind::User, name, settings)).await
    }

    pub async fn set_user(&self, name: &str, settings: &AccountSettings) -> Result<(), StoreError> {
        self.bounded(self.update(Kind::User, name, settings)).await
    }

    pub async fn delete_user(&self, name: &str) -> Result<(), StoreError> {
        self.bounded(self.delete(Kind::User, name)).await
    }

    pub async fn add_group(
        &self,
        name: &str,
        settings: &AccountSettings,
    ) -> Result<(), StoreError> {
        self.bounded(self.insert(Kind::Group, name, settings)).await
    }

    pub async fn set_group(
        &self,
        name: &str,
        settings: &AccountSettings,
    ) -> Result<(), StoreError> {
        self.bounded(self.update(Kind::Group, name, settings)).await
    }

    pub async fn delete_group(&self, name: &str) -> Result<(), StoreError> {
        self.bounded(self.delete(Kind::Group, name)).await
    }
}

impl SqlStore {
    /// Bans `ban.address` until `ban.until_unix` (replacing an earlier ban).
    pub async fn put_ban(&self, ban: &Ban) -> Result<(), StoreError> {
        self.bounded(async {
            sqlx::query(
                "INSERT INTO ferry_bans (address, until_unix, reason) VALUES ($1, $2, $3) \
                 ON CONFLICT (address) DO UPDATE SET until_unix = excluded.until_unix, reason = excluded.reason",
            )
            .bind(ban.address.to_string())
            .bind(ban.until_unix)
            .bind(ban.reason.clone())
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
            Ok(())
        })
        .await
    }

    /// The ban of `address` in force at `now_unix`, if any.
    pub async fn ban_of(
        &self,
        address: std::net::IpAddr,
        now_unix: i64,
    ) -> Result<Option<Ban>, StoreError> {
        self.bounded(async {
            let row = sqlx::query(
                "SELECT until_unix, reason FROM ferry_bans WHERE address = $1 AND until_unix > $2",
            )
            .bind(address.to_string())
            .bind(now_unix)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
            match row {
                None => Ok(None),
                Some(r) => Ok(Some(Ban {
                    address,
                    until_unix: r.try_get(0).map_err(|e| self.err(e))?,
                    reason: r.try_get(1).map_err(|e| self.err(e))?,
                })),
            }
        })
        .await
    }

    /// The bans in force at `now_unix`.
    pub async fn bans(&self, now_unix: i64) -> Result<Vec<Ban>, StoreError> {
        self.bounded(async {
            let rows = sqlx::query("SELECT address, until_unix, reason FROM ferry_bans WHERE until_unix > $1 ORDER BY address")
                .bind(now_unix)
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.err(e))?;
            let mut out = Vec::new();
            for r in rows {
                let address: String = r.try_get(0).map_err(|e| self.err(e))?;
                out.push(Ban {
                    address: address
                        .parse()
                        .map_err(|e| self.err(format!("bad address {address}: {e}")))?,
                    until_unix: r.try_get(1).map_err(|e| self.err(e))?,
                    reason: r.try_get(2).map_err(|e| self.err(e))?,
                });
            }
            Ok(out)
        })
        .await
    }

    /// Lifts the ban of `address`; whether there was one.
    pub async fn delete_ban(&self, address: std::net::IpAddr) -> Result<bool, StoreError> {
        self.bounded(async {
            let done = sqlx::query("DELETE FROM ferry_bans WHERE address = $1")
                .bind(address.to_string())
                .execute(&self.pool)
                .await
                .map_err(|e| self.err(e))?;
            Ok(done.rows_affected() > 0)
        })
        .await
    }
}

fn no_answer(timeout: Duration) -> String {
    format!(
        "no answer within {:?} (accounts.timeout): is the database running and reachable?",
        timeout
    )
}

fn backend(url: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend {
        store: url.to_owned(),
        message: e.to_string(),
    }
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:****{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[async_trait]
impl AccountStore for SqlStore {
    fn describe(&self) -> String {
        self.url.clone()
    }

    async fn user(&self, name: &str) -> Result<Option<AccountSettings>, StoreError> {
        self.bounded(self.get(Kind::User, name)).await
    }

    async fn group(&self, name: &str) -> Result<Option<AccountSettings>, StoreError> {
        self.bounded(self.get(Kind::Group, name)).await
    }

    async fn user_names(&self) -> Result<Vec<String>, StoreError> {
        self.bounded(self.names(Kind::User)).await
    }

    async fn group_names(&self) -> Result<Vec<String>, StoreError> {
        self.bounded(self.names(Kind::Group)).await
    }
}

#[async_trait]
impl UsageLedger for SqlStore {
    async fn get(&self, user: &str) -> Result<Option<Usage>, StoreError> {
        self.bounded(async {
            let row = sqlx::query("SELECT bytes, files FROM ferry_usage WHERE name = $1")
                .bind(user)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| self.err(e))?;
            row.map(|r| self.usage_of(&r)).transpose()
        })
        .await
    }

    async fn set(&self, user: &str, usage: Usage) -> Result<(), StoreError> {
        self.bounded(async {
            let (bytes, files) = (
                i64::try_from(usage.bytes).unwrap_or(i64::MAX),
                i64::try_from(usage.files).unwrap_or(i64::MAX),
            );
            sqlx::query(
                "INSERT INTO ferry_usage (name, bytes, files) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET bytes = excluded.bytes, files = excluded.files",
            )
            .bind(user)
            .bind(bytes)
            .bind(files)
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
            Ok(())
        })
        .await
    }

    async fn add(&self, user: &str, bytes: i64, files: i64) -> Result<(), StoreError> {
        self.bounded(async {
            sqlx::query(
                "UPDATE ferry_usage SET \
                 bytes = CASE WHEN bytes + $1 < 0 THEN 0 ELSE bytes + $1 END, \
                 files = CASE WHEN files + $2 < 0 THEN 0 ELSE files + $2 END \
                 WHERE name = $3",
            )
            .bind(bytes)
            .bind(files)
            .bind(user)
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
            Ok(())
        })
        .await
    }

    /// One statement when all of `want` fits (the common case); otherwise the
    /// room is read and taken with a compare-and-swap on the row, tried again
    /// if another change came between.
    async fn reserve(
        &self,
        user: &str,
        want: Usage,
        ceiling: Usage,
    ) -> Result<Reservation, StoreError> {
        self.bounded(async {
            let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            let whole = sqlx::query(
                "UPDATE ferry_usage SET bytes = bytes + $1, files = files + $2 \
                 WHERE name = $3 AND bytes <= $4 - $1 AND files <= $5 - $2 RETURNING bytes, files",
            )
            .bind(n(want.bytes))
            .bind(n(want.files))
            .bind(user)
            .bind(n(ceiling.bytes))
            .bind(n(ceiling.files))
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
            if let Some(row) = whole {
                return Ok(Reservation {
                    granted: want,
                    left: self.usage_of(&row)?.room_under(ceiling),
                });
            }
            for _ in 0..RESERVE_TRIES {
                let Some(now) = UsageLedger::get(self, user).await? else {
                    return Ok(Reservation::of(Usage::default(), want, ceiling));
                };
                let r = Reservation::of(now, want, ceiling);
                if r.granted == Usage::default() {
                    return Ok(r);
                }
                let done = sqlx::query(
                    "UPDATE ferry_usage SET bytes = $1, files = $2 \
                     WHERE name = $3 AND bytes = $4 AND files = $5",
                )
                .bind(n(now.bytes + r.granted.bytes))
                .bind(n(now.files + r.granted.files))
                .bind(user)
                .bind(n(now.bytes))
                .bind(n(now.files))
                .execute(&self.pool)
                .await
                .map_err(|e| self.err(e))?;
                if done.rows_affected() == 1 {
                    return Ok(r);
                }
            }
            Err(self.err(format!(
                "the quota usage of {user} changed under {RESERVE_TRIES} reservations in a row"
            )))
        })
        .await
    }

    async fn hold(&self, user: &str, now_unix: i64) -> Result<HoldId, StoreError> {
        let id = self.holds.fetch_add(1, Ordering::AcqRel) + 1;
        let held = self
            .bounded(async {
                // A hold is written within a second of a beat, so that it never
                // looks like a stopped server's (the server's recounter beats
                // regularly; this only matters before its first beat, or when
                // one failed).
                if now_unix.saturating_sub(self.beaten.load(Ordering::Acquire)) >= 1 {
                    self.beat_now(now_unix).await?;
                }
                sqlx::query("INSERT INTO ferry_holds (holder, id, name) VALUES ($1, $2, $3)")
                    .bind(self.holder.as_str())
                    .bind(id)
                    .bind(user)
                    .execute(&self.pool)
                    .await
                    .map_err(|e| self.err(e))?;
                Ok(HoldId(id))
            })
            .await;
        if held.is_err() {
            // The insert may have been carried out all the same.
            self.unreleased_push(id);
        }
        held
    }

    async fn release(&self, hold: HoldId) -> Result<(), StoreError> {
        let done = self.bounded(self.delete_hold(hold.0)).await;
        if done.is_err() {
            self.unreleased_push(hold.0);
        }
        done
    }

    async fn beat(&self, now_unix: i64) -> Result<(), StoreError> {
        self.bounded(async {
            self.beat_now(now_unix).await?;
            let ids = self.unreleased_lock().clone();
            for id in ids {
                self.delete_hold(id).await?;
                self.unreleased_lock().retain(|&x| x != id);
            }
            Ok(())
        })
        .await
    }

    async fn orphaned(&self, stale_before: i64) -> Result<Vec<String>, StoreError> {
        self.bounded(async {
            // Servers long dead with nothing held are forgotten.
            sqlx::query(
                "DELETE FROM ferry_holders WHERE beat_unix < $1 AND NOT EXISTS \
                 (SELECT 1 FROM ferry_holds h WHERE h.holder = ferry_holders.holder)",
            )
            .bind(stale_before)
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
            let sql = format!(
                "SELECT DISTINCT name FROM ferry_holds WHERE NOT EXISTS ({LIVE_HOLD}) \
                 AND name NOT IN (SELECT name FROM ferry_holds WHERE EXISTS ({LIVE_HOLD})) \
                 ORDER BY name"
            );
            let rows = sqlx::query(AssertSqlSafe(sql))
                .bind(stale_before)
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.err(e))?;
            rows.iter()
                .map(|r| r.try_get::<String, _>(0).map_err(|e| self.err(e)))
                .collect()
        })
        .await
    }

    async fn recount(
        &self,
        user: &str,
        seen: Option<Usage>,
        measured: Usage,
        stale_before: i64,
    ) -> Result<Recount, StoreError> {
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.bounded(async {
            let mut tx = self.pool.begin().await.map_err(|e| self.err(e))?;
            let live = sqlx::query(AssertSqlSafe(format!(
                "SELECT 1 FROM ferry_holds WHERE EXISTS ({LIVE_HOLD}) AND name = $2"
            )))
            .bind(stale_before)
            .bind(user)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
            // Ended at once, not when the connection is next used (as a
            // dropped transaction would be): the UPDATE below holds SQLite's
            // write lock even when it changes no row.
            if live.is_some() {
                tx.rollback().await.map_err(|e| self.err(e))?;
                return Ok(Recount::Busy);
            }
            let replaced = match seen {
                Some(seen) => sqlx::query(
                    "UPDATE ferry_usage SET bytes = $1, files = $2 \
                     WHERE name = $3 AND bytes = $4 AND files = $5",
                )
                .bind(n(measured.bytes))
                .bind(n(measured.files))
                .bind(user)
                .bind(n(seen.bytes))
                .bind(n(seen.files)),
                None => sqlx::query(
                    "INSERT INTO ferry_usage (name, bytes, files) VALUES ($1, $2, $3) \
                     ON CONFLICT (name) DO NOTHING",
                )
                .bind(user)
                .bind(n(measured.bytes))
                .bind(n(measured.files)),
            }
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
            if replaced.rows_affected() == 0 {
                tx.rollback().await.map_err(|e| self.err(e))?;
                return Ok(Recount::Changed);
            }
            sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM ferry_holds WHERE NOT EXISTS ({LIVE_HOLD}) AND name = $2"
            )))
            .bind(stale_before)
            .bind(user)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
            tx.commit().await.map_err(|e| self.err(e))?;
            Ok(Recount::Done)
        })
        .await
    }

    async fn drop_dead_holds(&self, user: &str, stale_before: i64) -> Result<(), StoreError> {
        self.bounded(async {
            sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM ferry_holds WHERE NOT EXISTS ({LIVE_HOLD}) AND name = $2"
            )))
            .bind(stale_before)
            .bind(user)
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
            Ok(())
        })
        .await
    }
}

/// How often [`SqlStore::reserve`] tries to take the last of a quota while other
/// changes to the same user's usage keep coming between.
const RESERVE_TRIES: usize = 32;

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(5);

    /// Two handles on one SQLite database in `dir`, as two servers would have.
    async fn two_handles(dir: &tempfile::TempDir) -> (SqlStore, SqlStore) {
        let url = format!("sqlite:{}/a.db", dir.path().display());
        (
            SqlStore::open(&url, TIMEOUT).await.expect("open"),
            SqlStore::open(&url, TIMEOUT).await.expect("open"),
        )
    }

    /// Holds of a server that stopped beating make its users orphaned, unless
    /// a live server holds for them too; a recount replaces the usage only
    /// when nothing live holds and the usage is still what was seen, and
    /// ends the dead server's holds.
    #[tokio::test]
    async fn holds_of_a_dead_server_are_recounted_and_live_ones_wait() {
        let dir = tempfile::tempdir().expect("tmp");
        let (dead, live) = two_handles(&dir).await;
        let u = |bytes, files| Usage { bytes, files };
        UsageLedger::set(&dead, "u", u(10, 1)).await.expect("set");
        let _crashed = dead.hold("u", 100).await.expect("hold");
        UsageLedger::add(&dead, "u", 1 << 20, 1)
            .await
            .expect("reserved");
        let held = u(10 + (1 << 20), 2);
        // While it beats (stale_before 50 ≤ 100), nothing is orphaned.
        assert!(live.orphaned(50).await.expect("orphaned").is_empty());
        assert_eq!(
            live.recount("u", Some(held), u(5, 1), 50)
                .await
                .expect("recount"),
            Recount::Busy
        );
        // A live server's hold for the same user keeps it from a recount.
        let busy = live.hold("u", 300).await.expect("hold");
        assert!(live.orphaned(200).await.expect("orphaned").is_empty());
        assert_eq!(
            live.recount("u", Some(held), u(5, 1), 200)
                .await
                .expect("recount"),
            Recount::Busy
        );
        live.release(busy).await.expect("release");
        assert_eq!(live.orphaned(200).await.expect("orphaned"), vec!["u"]);
        // The usage moved since it was seen: nothing changes.
        assert_eq!(
            live.recount("u", Some(u(10, 1)), u(5, 1), 200)
                .await
                .expect("recount"),
            Recount::Changed
        );
        assert_eq!(UsageLedger::get(&live, "u").await.expect("get"), Some(held));
        assert_eq!(
            live.recount("u", Some(held), u(5, 1), 200)
                .await
                .expect("recount"),
            Recount::Done
        );
        assert_eq!(
            UsageLedger::get(&live, "u").await.expect("get"),
            Some(u(5, 1))
        );
        assert!(live.orphaned(200).await.expect("orphaned").is_empty());
        // A user never measured is measured by a recount.
        assert_eq!(
            live.recount("new", None, u(7, 2), 200)
                .await
                .expect("recount"),
            Recount::Done
        );
        assert_eq!(
            UsageLedger::get(&live, "new").await.expect("get"),
            Some(u(7, 2))
        );
        assert_eq!(
            live.recount("new", None, u(9, 2), 200)
                .await
                .expect("recount"),
            Recount::Changed
        );
        // A deleted user's dead holds go without touching any usage; a live
        // server's stay.
        let _gone = dead.hold("gone", 100).await.expect("hold");
        let alive = live.hold("gone", 300).await.expect("hold");
        live.drop_dead_holds("gone", 200).await.expect("drop");
        assert!(live.orphaned(200).await.expect("orphaned").is_empty());
        assert_eq!(UsageLedger::get(&live, "gone").await.expect("get"), None);
        assert_eq!(
            live.recount("gone", None, u(0, 0), 200)
                .await
                .expect("recount"),
            Recount::Busy,
            "the live hold stays"
        );
        live.release(alive).await.expect("release");
        assert!(
            live.orphaned(200).await.expect("orphaned").is_empty(),
            "the dead hold went"
        );
    }

    /// A hold whose release failed is deleted at the next beat, so that it
    /// never keeps its user from a recount while this server lives.
    #[tokio::test]
    async fn a_hold_not_released_goes_at_the_next_beat() {
        let dir = tempfile::tempdir().expect("tmp");
        let url = format!("sqlite:{}/a.db", dir.path().display());
        let store = SqlStore::open(&url, TIMEOUT).await.expect("open");
        let u = Usage { bytes: 1, files: 1 };
        UsageLedger::set(&store, "u", u).await.expect("set");
        let hold = store.hold("u", 100).await.expect("hold");
        // The release fails: the table is gone for a moment.
        sqlx::query("ALTER TABLE ferry_holds RENAME TO away")
            .execute(&store.pool)
            .await
            .expect("rename");
        store.release(hold).await.expect_err("no table");
        sqlx::query("ALTER TABLE away RENAME TO ferry_holds")
            .execute(&store.pool)
            .await
            .expect("rename back");
        // The hold is still there, and live while the server beats.
        assert_eq!(
            store.recount("u", Some(u), u, 50).await.expect("recount"),
            Recount::Busy
        );
        store.beat(100).await.expect("beat");
        assert_eq!(
            store.recount("u", Some(u), u, 50).await.expect("recount"),
            Recount::Done
        );
    }

    /// A database host that takes connections and never answers (a frozen
    /// server, a half-open network path) costs `accounts.timeout`, not the
    /// minutes TCP takes to give up.
    #[tokio::test]
    async fn a_database_that_never_answers_fails_within_the_timeout() {
        let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
        let port = silent.local_addr().expect("addr").port();
        let url = format!("postgres://ferry:secret@127.0.0.1:{port}/db");
        let start = std::time::Instant::now();
        let e = SqlStore::open(&url, Duration::from_millis(300))
            .await
            .expect_err("nothing answers");
        let took = start.elapsed();
        assert!(took < Duration::from_secs(5), "took {took:?}");
        let text = e.to_string();
        assert!(text.contains("accounts.timeout"), "{text}");
        assert!(text.contains("127.0.0.1"), "{text}");
        assert!(!text.contains("secret"), "{text}");
        drop(silent);
    }

    fn settings(toml: &str) -> AccountSettings {
        toml::from_str(toml).expect("settings")
    }

    #[tokio::test]
    async fn sqlite_round_trip() {
        let dir = tempfile::tempdir().expect("tmp");
        let url = format!("sqlite:{}/sub/accounts.db", dir.path().display());
        let store = SqlStore::open(&url, TIMEOUT).await.expect("open");
        let alice = settings(
            "home = \"/a\"\nquota_bytes = \"1 GiB\"\npermissions = { \"/\" = [\"list\"] }",
        );
        store.add_user("alice", &alice).await.expect("add");
        assert!(matches!(
            store.add_user("alice", &alice).await,
            Err(StoreError::AlreadyExists { .. })
        ));
        assert_eq!(store.user("alice").await.expect("get"), Some(alice.clone()));
        let mut changed = alice.clone();
        changed.max_sessions = Some(2);
        store.set_user("alice", &changed).await.expect("set");
        // A second handle on the same database sees the change.
        let again = SqlStore::open(&url, TIMEOUT).await.expect("reopen");
        let mode: String = sqlx::query("PRAGMA journal_mode")
            .fetch_one(&again.pool)
            .await
            .and_then(|r| r.try_get(0))
            .expect("journal mode");
        assert_eq!(mode, "wal");
        assert_eq!(
            again
                .user("alice")
                .await
                .expect("get")
                .and_then(|s| s.max_sessions),
            Some(2)
        );
        store
            .add_group("staff", &settings("max_sessions = 1"))
            .await
            .expect("group");
        assert_eq!(store.group_names().await.expect("names"), ["staff"]);
        // Usage: only measured users are updated, never below zero.
        store.add("alice", 5, 1).await.expect("add");
        assert_eq!(
            UsageLedger::get(&store, "alice").await.expect("usage"),
            None
        );
        store
            .set(
                "alice",
                Usage {
                    bytes: 10,
                    files: 1,
                },
            )
            .await
            .expect("set");
        again.add("alice", 5, 1).await.expect("add");
        store.add("alice", -100, 0).await.expect("add");
        assert_eq!(
            UsageLedger::get(&store, "alice").await.expect("usage"),
            Some(Usage { bytes: 0, files: 2 })
        );
        store.delete_user("alice").await.expect("del");
        assert!(matches!(
            store.delete_user("alice").await,
            Err(StoreError::NotFound { .. })
        ));
        assert_eq!(
            UsageLedger::get(&store, "alice").await.expect("usage"),
            None
        );
    }

    /// Reservations racing from two handles (as from two servers) add up to the
    /// ceiling exactly: the last one gets only the room left, later ones nothing.
    #[tokio::test]
    async fn racing_reservations_stop_at_the_ceiling() {
        let dir = tempfile::tempdir().expect("tmp");
        let (one, two) = two_handles(&dir).await;
        let usage = |bytes, files| Usage { bytes, files };
        one.set("bob", usage(10, 0)).await.expect("set");
        let ceiling = usage(95, 3);
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let store = if i % 2 == 0 { one.clone() } else { two.clone() };
                tokio::spawn(async move { store.reserve("bob", usage(10, 1), ceiling).await })
            })
            .collect();
        let mut granted = Vec::new();
        for t in tasks {
            granted.push(t.await.expect("task").expect("reserve").granted);
        }
        assert_eq!(granted.iter().map(|g| g.bytes).sum::<u64>(), 85);
        assert_eq!(granted.iter().map(|g| g.files).sum::<u64>(), 3);
        assert_eq!(
            granted.iter().filter(|g| g.bytes == 5).count(),
            1,
            "one grant is the 5 bytes left: {granted:?}"
        );
        assert_eq!(
            UsageLedger::get(&two, "bob").await.expect("get"),
            Some(ceiling)
        );
        // The whole of a want that fits is one grant, and says what is left.
        one.set("bob", usage(0, 0)).await.expect("set");
        let r = two
            .reserve("bob", usage(30, 1), ceiling)
            .await
            .expect("reserve");
        assert_eq!(r.granted, usage(30, 1));
        assert_eq!(r.left, usage(65, 2));
        // A user never measured: nothing recorded.
        let r = one
            .reserve("nobody", usage(30, 1), ceiling)
            .await
            .expect("reserve");
        assert_eq!(r.granted, usage(30, 1));
        assert_eq!(UsageLedger::get(&one, "nobody").await.expect("get"), None);
    }

    #[tokio::test]
    async fn bans_expire_and_lift() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = SqlStore::open(&format!("sqlite:{}/a.db", dir.path().display()), TIMEOUT)
            .await
            .expect("open");
        let ip: std::net::IpAddr = "192.0.2.9".parse().expect("ip");
        store
            .put_ban(&Ban {
                address: ip,
                until_unix: 100,
                reason: "test".into(),
            })
            .await
            .expect("ban");
        assert!(store.ban_of(ip, 99).await.expect("ban").is_some());
        assert!(
            store.ban_of(ip, 100).await.expect("ban").is_none(),
            "a ban ends at its time"
        );
        assert_eq!(store.bans(50).await.expect("list").len(), 1);
        assert!(store.delete_ban(ip).await.expect("del"));
        assert!(store.ban_of(ip, 0).await.expect("ban").is_none());
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:****@h/db");
        assert_eq!(redact("sqlite:./x.db"), "sqlite:./x.db");
    }
}
