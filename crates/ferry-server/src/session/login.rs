//! Access control commands: USER, PASS, ACCT, REIN (RFC 959 §4.1.1).
//!
//! Unknown users and wrong passwords get the same 530, after the same work, so a
//! client cannot tell which names exist. Passwords are never logged.

use std::sync::Arc;

use ferry_accounts::{Account, AccountKind, AuthError, Authenticator, Usage};
use ferry_proto::Reply;
use ferry_proto::command::Password;
use ferry_storage::Storage;
use ferry_storage::VirtualPath;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{info, warn};

use super::{LoggedIn, LoginState, Session, Step};
use crate::data::DataSetup;
use crate::error::SessionError;

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    pub(super) fn cmd_user(&mut self, name: String) -> Result<Reply, SessionError> {
        // A new USER starts a new login, as REIN does.
        self.reset();
        let text =
            if Authenticator::is_anonymous_name(&name) && self.opts.accounts.anonymous_enabled() {
                "Anonymous login okay, send your e-mail address as password."
            } else {
                "Please specify the password."
            };
        self.login = LoginState::AwaitingPass { user: name };
        Ok(Reply::new(331, text))
    }

    pub(super) async fn cmd_pass(&mut self, pass: Password) -> Result<Step, SessionError> {
        let user = match std::mem::replace(&mut self.login, LoginState::AwaitingUser) {
            LoginState::AwaitingPass { user } => user,
            LoginState::AwaitingUser => return Err(SessionError::BadSequence("send USER first")),
            logged_in @ LoginState::LoggedIn(_) => {
                self.login = logged_in;
                return Ok(Step::Reply(Reply::new(230, "Already logged in.")));
            }
        };
        let remote = self.peer.remote;
        let account = match self
            .opts
            .accounts
            .authenticate_from(&user, pass.expose(), Some(remote.ip()))
            .await
        {
            Ok(a) => a,
            Err(e) => {
                warn!(session = self.peer.id, %remote, user = %user, reason = %e, "login failed");
                match e {
                    AuthError::UnknownUser | AuthError::WrongPassword => {}
                    // Not the client's doing, and not for long (one hopes):
                    // a temporary refusal, which clients retry, rather than
                    // a 530 that reads as a wrong password.
                    AuthError::Store(_) => return Ok(Step::Close(store_unavailable())),
                    AuthError::Misconfigured(_) => {
                        return Ok(Step::Reply(Reply::new(530, "Login incorrect.")));
                    }
                }
                let (delay, banned) = self.opts.bans.failed(remote.ip()).await;
                tokio::time::sleep(delay).await;
                if banned {
                    warn!(session = self.peer.id, %remote, "address banned after repeated failed logins");
                    return Ok(Step::Close(Reply::new(
                        421,
                        "Too many failed logins: your address is banned for a while.",
                    )));
                }
                return Ok(Step::Reply(Reply::new(530, "Login incorrect.")));
            }
        };
        self.opts.bans.succeeded(remote.ip());
        // Address and time rules: the password was right, but not from here or now.
        let now = time::OffsetDateTime::from((self.opts.clock)());
        if let Err(refusal) = account
            .limits
            .check_address(remote.ip())
            .and_then(|()| account.limits.check_time(now))
        {
            warn!(session = self.peer.id, %remote, user = %user, reason = %refusal, "login refused");
            let text = match refusal.setting {
                "login_hours" => "Login not allowed at this time.",
                _ => "Login not allowed from your address.",
            };
            return Ok(Step::Reply(Reply::new(530, text)));
        }
        let ticket = match self.opts.users.join(&account) {
            Ok(t) => t,
            Err(refusal) => {
                warn!(session = self.peer.id, %remote, user = %user, reason = %refusal, "login refused");
                return Ok(Step::Close(Reply::new(
                    421,
                    "Too many sessions for this user; try again later.",
                )));
            }
        };
        // Virtual users' homes live under storage.root and are made on first login;
        // host accounts' homes are host directories that must exist.
        let opened = match (account.kind, &self.opts.host_storage) {
            (AccountKind::System { uid, gid }, Some(host)) => {
                host.open_home_as(&account.home, false, Some((uid, gid)))
                    .await
            }
            (AccountKind::System { .. }, None) => Err(ferry_storage::StorageError::Unsupported(
                "system users are off",
            )),
            _ => self.opts.storage.open_home(&account.home, true).await,
        };
        let storage = match opened {
            Ok(s) => s,
            Err(ferry_storage::StorageError::Unavailable) => {
                warn!(session = self.peer.id, user = %user, home = %account.home, "the file storage cannot be reached");
                return Ok(Step::Close(Reply::new(
                    421,
                    "Service not available: the file storage cannot be reached; try again later.",
                )));
            }
            Err(e) => {
                warn!(session = self.peer.id, user = %user, home = %account.home, error = %e, "home directory unavailable");
                return Ok(Step::Reply(Reply::new(
                    530,
                    "Login refused: home directory unavailable.",
                )));
            }
        };
        match self.measure_usage_if_needed(&account, &storage).await {
            Ok(()) => {}
            Err(UsageUnknown::Ledger(e)) => {
                warn!(session = self.peer.id, user = %user, error = %e, "cannot read quota usage");
                return Ok(Step::Close(store_unavailable()));
            }
            Err(UsageUnknown::Storage(e)) => {
                warn!(session = self.peer.id, user = %user, error = %e, "cannot measure quota usage");
                return Ok(Step::Reply(Reply::new(
                    530,
                    "Login refused: quota usage cannot be measured.",
                )));
            }
        }
        info!(session = self.peer.id, %remote, user = %account.name, "logged in");
        let text = match account.kind {
            AccountKind::Anonymous => "Anonymous access granted, restrictions apply.".to_owned(),
            AccountKind::Virtual | AccountKind::System { .. } => {
                format!("User {} logged in.", account.name)
            }
        };
        self.login = LoginState::LoggedIn(Box::new(LoggedIn {
            account,
            storage,
            ticket,
        }));
        Ok(Step::Reply(Reply::new(230, text)))
    }

    /// A user with a quota and no usage record is measured from storage.
    async fn measure_usage_if_needed(
        &self,
        account: &Account,
        storage: &Arc<dyn Storage>,
    ) -> Result<(), UsageUnknown> {
        let limits = &account.limits;
        if limits.quota_bytes.is_none() && limits.quota_files.is_none() {
            return Ok(());
        }
        if self
            .opts
            .ledger
            .get(&account.name)
            .await
            .map_err(UsageUnknown::Ledger)?
            .is_some()
        {
            return Ok(());
        }
        let (bytes, files) = ferry_storage::measure(storage.as_ref())
            .await
            .map_err(UsageUnknown::Storage)?;
        info!(session = self.peer.id, user = %account.name, bytes, files, "measured quota usage");
        self.opts
            .ledger
            .set(&account.name, Usage { bytes, files })
            .await
            .map_err(UsageUnknown::Ledger)
    }

    pub(super) fn cmd_rein(&mut self) -> Reply {
        self.reset();
        Reply::new(220, "Service ready for new user.")
    }

    /// Back to the state of a fresh connection.
    fn reset(&mut self) {
        self.login = LoginState::AwaitingUser;
        self.cwd = VirtualPath::root();
        self.ascii = false;
        self.rest = None;
        self.rename_from = None;
        self.data = DataSetup::None;
        self.epsv_all = false;
        self.range = None;
    }
}

/// Why a quota user's usage could not be known at login.
enum UsageUnknown {
    /// The account database did not answer.
    Ledger(ferry_accounts::StoreError),
    /// Walking the home directory failed.
    Storage(ferry_storage::StorageError),
}

/// The reply to a login that the account database could not answer (down,
/// unreachable, or slower than `accounts.timeout`); the connection closes.
fn store_unavailable() -> Reply {
    Reply::new(
        421,
        "Service not available: the account database cannot be reached; try again later.",
    )
}
