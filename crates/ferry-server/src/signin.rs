//! Signing a user in, the same way for every protocol: FTP's USER and PASS
//! (`session/login.rs`) and SSH's password and public-key authentication
//! (`sftp/ssh.rs`).
//!
//! One sign-in checks the password or public key (a failure feeds the
//! [`BanList`]), the address and time rules, `max_sessions`, opens the home
//! and, for a user with a quota and no usage record, measures what the home
//! holds. What it refuses
//! is a [`SignInRefusal`]; each protocol turns that into its own answer
//! (`error.rs` for FTP, `sftp/ssh.rs` for SSH).
//!
//! [`BanList`]: crate::bans::BanList

use std::net::SocketAddr;
use std::sync::Arc;

use ferry_accounts::{Account, AccountKind, AuthError, Permission, Usage};
use ferry_storage::{Storage, StorageError, VirtualPath};
use tracing::{info, warn};

use crate::error::SessionError;
use crate::options::ServerOptions;
use crate::users::SessionTicket;

/// A user signed in: the account, its home, and its place among the user's
/// sessions.
#[derive(Debug)]
pub struct SignedIn {
    pub account: Account,
    pub storage: Arc<dyn Storage>,
    /// This session's place among the user's sessions, and the shared rates.
    pub ticket: SessionTicket,
}

impl SignedIn {
    /// Whether the user's rules allow `action` on `path` (FTP and SFTP ask
    /// the same way).
    pub fn check(
        &self,
        action: ferry_accounts::Permission,
        path: &ferry_storage::VirtualPath,
    ) -> Result<(), crate::error::SessionError> {
        match self.account.rules.decide(action, path) {
            ferry_accounts::PolicyDecision::Allow { .. } => Ok(()),
            decision => Err(crate::error::SessionError::Denied {
                action,
                path: path.clone(),
                decision,
            }),
        }
    }

    /// Renames `from` to `to`, the same way for FTP's RNTO and SFTP's
    /// RENAME and posix-rename: the `rename` permission at both names and
    /// the file-name rules at the new one. A file already at `to` is
    /// replaced only when `replace` is asked and `overwrite` is allowed
    /// there, and its size and count leave the quota's usage; a directory
    /// there is never replaced. A file renamed onto its own name stays as
    /// it is (and in the usage).
    pub async fn rename(
        &self,
        opts: &ServerOptions,
        from: &VirtualPath,
        to: &VirtualPath,
        replace: bool,
    ) -> Result<(), SessionError> {
        self.check(Permission::Rename, from)?;
        self.check(Permission::Rename, to)?;
        self.account
            .limits
            .check_file_name(&to.to_string())
            .map_err(SessionError::FileNameRefused)?;
        self.storage
            .metadata(from)
            .await
            .map_err(|e| SessionError::storage(from, e))?;
        let replaced = match self.storage.metadata(to).await {
            Ok(m) => Some(m),
            Err(StorageError::NotFound) => None,
            Err(e) => return Err(SessionError::storage(to, e)),
        };
        if let Some(existing) = &replaced {
            if !replace || existing.is_dir() {
                return Err(SessionError::storage(to, StorageError::AlreadyExists));
            }
            if from == to {
                // Nothing moves and nothing is replaced: the file stays in
                // the quota's usage.
                return Ok(());
            }
            self.check(Permission::Overwrite, to)?;
        }
        self.storage
            .rename(from, to)
            .await
            .map_err(|e| SessionError::storage(to, e))?;
        if let Some(old) = replaced {
            self.record_usage(opts, -(old.size as i64), -1).await;
        }
        Ok(())
    }

    /// Records a change of stored bytes and files for quota usage; a ledger
    /// that cannot record is logged, not fatal (the next recount mends it).
    pub async fn record_usage(&self, opts: &ServerOptions, bytes: i64, files: i64) {
        if let Err(e) = opts.ledger.add(&self.account.name, bytes, files).await {
            warn!(user = %self.account.name, error = %e, "quota usage not recorded");
        }
    }
}

/// Why a sign-in was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignInRefusal {
    /// No such user, a wrong password, or an account that cannot be used: the
    /// client is not told which.
    #[error("wrong user name or password")]
    Credentials,
    /// This failure was one too many: the address is banned for a while.
    #[error("too many failed logins: the address is banned for a while")]
    Banned,
    /// The account database did not answer (down, or slower than
    /// `accounts.timeout`).
    #[error("the account database cannot be reached")]
    AccountsUnavailable,
    /// The password was right, but `allow_from`/`deny_from` refuse the address.
    #[error("login not allowed from this address")]
    AddressRefused,
    /// The password was right, but not within `login_hours`.
    #[error("login not allowed at this time")]
    OutsideHours,
    /// `max_sessions` is reached.
    #[error("too many sessions for this user")]
    TooManySessions,
    /// The file storage (an S3 endpoint) cannot be reached.
    #[error("the file storage cannot be reached")]
    StorageUnavailable,
    /// The home directory cannot be opened (a host account's missing home).
    #[error("home directory unavailable")]
    HomeUnavailable,
    /// The user has a quota and what the home holds cannot be measured.
    #[error("quota usage cannot be measured")]
    UsageUnmeasurable,
}

impl SignInRefusal {
    /// Whether the connection ends with the refusal: the ones a client cannot
    /// mend by trying another password on the same connection.
    pub fn closes_connection(self) -> bool {
        matches!(
            self,
            SignInRefusal::Banned
                | SignInRefusal::AccountsUnavailable
                | SignInRefusal::TooManySessions
                | SignInRefusal::StorageUnavailable
        )
    }
}

/// What a user proves its identity with.
#[derive(Clone, Copy)]
pub enum Credential<'a> {
    /// FTP's PASS, SSH's password method.
    Password(&'a str),
    /// SSH's publickey method: a key in wire form whose possession the SSH
    /// layer has verified; it must be one of the user's `authorized_keys`.
    PublicKey(&'a [u8]),
    /// SSH's publickey method with an OpenSSH certificate the SSH layer has
    /// checked against the trusted authorities and found naming the user
    /// (`crate::sftp::certificates`): the account must exist and be allowed
    /// in, no key need be listed.
    Certified,
}

impl std::fmt::Debug for Credential<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credential::Password(_) => "Password(..)",
            Credential::PublicKey(_) => "PublicKey(..)",
            Credential::Certified => "Certified",
        })
    }
}

/// Signs `user` in from `remote` with `credential`. Failed logins are slowed
/// down and counted towards a ban here, so every protocol pays the same.
pub async fn sign_in(
    opts: &ServerOptions,
    session: u64,
    remote: SocketAddr,
    user: &str,
    credential: Credential<'_>,
) -> Result<SignedIn, SignInRefusal> {
    let checked = match credential {
        Credential::Password(password) => {
            opts.accounts
                .authenticate_from(user, password, Some(remote.ip()))
                .await
        }
        Credential::PublicKey(key) => {
            opts.accounts
                .authenticate_key_from(user, key, Some(remote.ip()), (opts.clock)())
                .await
        }
        Credential::Certified => {
            opts.accounts
                .authenticate_certified_from(user, Some(remote.ip()))
                .await
        }
    };
    let account = match checked {
        Ok(a) => a,
        Err(e) => {
            match e {
                AuthError::UnknownUser
                | AuthError::WrongPassword
                | AuthError::KeyNotAuthorized
                | AuthError::KeyRestricted(_)
                | AuthError::AccountRefused => {}
                // Not the client's doing, and not for long (one hopes): a
                // temporary refusal, which clients retry, rather than one that
                // reads as a wrong password.
                AuthError::Store(_) => {
                    warn!(session, %remote, user = %user, reason = %e, "login failed");
                    return Err(SignInRefusal::AccountsUnavailable);
                }
                AuthError::Misconfigured(_) => {
                    warn!(session, %remote, user = %user, reason = %e, "login failed");
                    return Err(SignInRefusal::Credentials);
                }
            }
            return Err(failed_login(opts, session, remote, user, &e).await);
        }
    };
    opts.bans.succeeded(remote.ip());
    // Address and time rules: the password was right, but not from here or now.
    let now = time::OffsetDateTime::from((opts.clock)());
    if let Err(refusal) = account
        .limits
        .check_address(remote.ip())
        .and_then(|()| account.limits.check_time(now))
    {
        warn!(session, %remote, user = %user, reason = %refusal, "login refused");
        return Err(match refusal.setting {
            "login_hours" => SignInRefusal::OutsideHours,
            _ => SignInRefusal::AddressRefused,
        });
    }
    let ticket = opts.users.join(&account).map_err(|refusal| {
        warn!(session, %remote, user = %user, reason = %refusal, "login refused");
        SignInRefusal::TooManySessions
    })?;
    // Virtual users' homes live under storage.root and are made on first login;
    // host accounts' homes are host directories that must exist.
    let opened = match (account.kind, &opts.host_storage) {
        (AccountKind::System { uid, gid }, Some(host)) => {
            host.open_home_as(&account.home, false, Some((uid, gid)))
                .await
        }
        (AccountKind::System { .. }, None) => {
            Err(StorageError::Unsupported("system users are off"))
        }
        _ => opts.storage.open_home(&account.home, true).await,
    };
    let storage = match opened {
        Ok(s) => s,
        Err(StorageError::Unavailable) => {
            warn!(session, user = %user, home = %account.home, "the file storage cannot be reached");
            return Err(SignInRefusal::StorageUnavailable);
        }
        Err(e) => {
            warn!(session, user = %user, home = %account.home, error = %e, "home directory unavailable");
            return Err(SignInRefusal::HomeUnavailable);
        }
    };
    match measure_usage_if_needed(opts, &account, &storage).await {
        Ok(Some((bytes, files))) => {
            info!(session, user = %account.name, bytes, files, "measured quota usage");
        }
        Ok(None) => {}
        Err(UsageUnknown::Ledger(e)) => {
            warn!(session, user = %user, error = %e, "cannot read quota usage");
            return Err(SignInRefusal::AccountsUnavailable);
        }
        Err(UsageUnknown::Storage(e)) => {
            warn!(session, user = %user, error = %e, "cannot measure quota usage");
            return Err(SignInRefusal::UsageUnmeasurable);
        }
    }
    info!(session, %remote, user = %account.name, "logged in");
    Ok(SignedIn {
        account,
        storage,
        ticket,
    })
}

/// A login refused for its credentials (`why`): logged, slowed down and
/// counted towards a ban of the address. Answers the refusal to give.
pub async fn failed_login(
    opts: &ServerOptions,
    session: u64,
    remote: SocketAddr,
    user: &str,
    why: &(dyn std::fmt::Display + Sync),
) -> SignInRefusal {
    warn!(session, %remote, user = %user, reason = %why, "login failed");
    let (delay, banned) = opts.bans.failed(remote.ip()).await;
    tokio::time::sleep(delay).await;
    if banned {
        warn!(session, %remote, "address banned after repeated failed logins");
        return SignInRefusal::Banned;
    }
    SignInRefusal::Credentials
}

/// A user with a quota and no usage record is measured from storage; answers
/// what was measured.
async fn measure_usage_if_needed(
    opts: &ServerOptions,
    account: &Account,
    storage: &Arc<dyn Storage>,
) -> Result<Option<(u64, u64)>, UsageUnknown> {
    let limits = &account.limits;
    if limits.quota_bytes.is_none() && limits.quota_files.is_none() {
        return Ok(None);
    }
    if opts
        .ledger
        .get(&account.name)
        .await
        .map_err(UsageUnknown::Ledger)?
        .is_some()
    {
        return Ok(None);
    }
    let (bytes, files) = ferry_storage::measure(storage.as_ref())
        .await
        .map_err(UsageUnknown::Storage)?;
    opts.ledger
        .set(&account.name, Usage { bytes, files })
        .await
        .map_err(UsageUnknown::Ledger)?;
    Ok(Some((bytes, files)))
}

/// Why a quota user's usage could not be known at login.
enum UsageUnknown {
    /// The account database did not answer.
    Ledger(ferry_accounts::StoreError),
    /// Walking the home directory failed.
    Storage(StorageError),
}
