//! FTP security extensions for TLS: AUTH, PBSZ, PROT, CCC (RFC 2228, RFC 4217).

use ferry_config::ExplicitTls;
use ferry_proto::Reply;
use ferry_proto::command::Command;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Session, Step};
use crate::error::SessionError;

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    /// Whether AUTH TLS is offered on this connection.
    pub(super) fn tls_offered(&self) -> bool {
        self.opts.tls.is_some()
            && (self.opts.explicit_tls != ExplicitTls::Off || self.tls.is_some())
    }

    pub(super) fn cmd_security(&mut self, command: Command) -> Result<Step, SessionError> {
        let reply = match command {
            Command::Auth(mechanism) => {
                if !self.tls_offered() {
                    return Ok(Step::Reply(Reply::new(
                        502,
                        "AUTH not offered: TLS is off on this server.",
                    )));
                }
                if self.tls.is_some() {
                    return Err(SessionError::BadSequence(
                        "the control connection is already under TLS",
                    ));
                }
                if !matches!(mechanism.as_str(), "TLS" | "SSL" | "TLS-C" | "TLS-P") {
                    return Ok(Step::Reply(Reply::new(504, "AUTH takes TLS or SSL.")));
                }
                let Some(ctx) = &self.opts.tls else {
                    return Ok(Step::Reply(Reply::new(502, "AUTH not offered.")));
                };
                // AUTH resets the login (RFC 4217 §4).
                self.login = super::LoginState::AwaitingUser;
                // TLS-P (and SSL, as old clients mean it) asks for protected data too.
                self.protect_data = matches!(mechanism.as_str(), "TLS-P" | "SSL");
                self.pbsz = self.protect_data;
                return Ok(Step::StartTls(
                    Reply::new(234, format!("AUTH {mechanism} successful.")),
                    ctx.for_session(),
                ));
            }
            Command::Pbsz(size) => {
                if self.tls.is_none() {
                    return Err(SessionError::BadSequence("PBSZ needs AUTH TLS first"));
                }
                self.pbsz = true;
                // For TLS the buffer size is always 0 (RFC 4217 §9).
                if size == "0" {
                    Reply::new(200, "PBSZ=0")
                } else {
                    Reply::new(200, "PBSZ=0 (TLS uses no buffer size)")
                }
            }
            Command::Prot(level) => {
                if self.tls.is_none() || !self.pbsz {
                    return Err(SessionError::BadSequence(
                        "PROT needs AUTH TLS and PBSZ first",
                    ));
                }
                match level.as_str() {
                    "P" => {
                        self.protect_data = true;
                        Reply::new(200, "PROT now Private.")
                    }
                    "C" if self.opts.explicit_tls == ExplicitTls::Required => Reply::new(
                        534,
                        "PROT C refused: this server requires protected data connections.",
                    ),
                    "C" => {
                        self.protect_data = false;
                        Reply::new(200, "PROT now Clear.")
                    }
                    "S" | "E" => Reply::new(536, "PROT S and E are not supported; use P or C."),
                    _ => Reply::new(504, "PROT takes P or C."),
                }
            }
            // Dropping back to clear text would expose everything after it.
            _ => Reply::new(534, "CCC refused: the control connection stays protected."),
        };
        Ok(Step::Reply(reply))
    }
}
