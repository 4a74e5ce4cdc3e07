//! Access control commands: USER, PASS, ACCT, REIN (RFC 959 §4.1.1).
//!
//! Unknown users and wrong passwords get the same 530, after the same work, so a
//! client cannot tell which names exist. Passwords are never logged. The
//! sign-in itself (password, bans, rules, home, quota usage) is shared with
//! SFTP: `crate::signin`.

use ferry_accounts::{AccountKind, Authenticator};
use ferry_proto::Reply;
use ferry_proto::command::Password;
use ferry_storage::VirtualPath;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{LoginState, Session, Step};
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
        let signed_in = match crate::signin::sign_in(
            &self.opts,
            self.peer.id,
            self.peer.remote,
            &user,
            crate::signin::Credential::Password(pass.expose()),
        )
        .await
        {
            Ok(s) => s,
            Err(refusal) if refusal.closes_connection() => {
                return Ok(Step::Close(refusal.reply()));
            }
            Err(refusal) => return Ok(Step::Reply(refusal.reply())),
        };
        let text = match signed_in.account.kind {
            AccountKind::Anonymous => "Anonymous access granted, restrictions apply.".to_owned(),
            AccountKind::Virtual | AccountKind::System { .. } => {
                format!("User {} logged in.", signed_in.account.name)
            }
        };
        self.login = LoginState::LoggedIn(Box::new(signed_in));
        Ok(Step::Reply(Reply::new(230, text)))
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
