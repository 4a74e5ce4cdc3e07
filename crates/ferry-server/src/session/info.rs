//! Informational commands: SYST, NOOP, HELP, STAT without a path (RFC 959
//! §4.1.3), FEAT and OPTS (RFC 2389), OPTS UTF8 (RFC 2640), OPTS MLST (RFC 3659
//! §7.9).

use ferry_proto::Reply;
use ferry_proto::command::VERBS;
use ferry_proto::listing::MlstFacts;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{HashAlgorithm, LoginState, Session};
use crate::error::SessionError;

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    pub(super) fn cmd_feat(&self) -> Reply {
        let mut lines = vec!["Features:".to_owned()];
        if self.tls_offered() {
            lines.extend([
                "AUTH TLS".to_owned(),
                "AUTH SSL".into(),
                "PBSZ".into(),
                "PROT".into(),
            ]);
        }
        lines.extend([
            "EPRT".into(),
            "EPSV".into(),
            HashAlgorithm::feat_line(self.hash),
            "MDTM".into(),
            "MFMT".into(),
            self.mlst_facts.feat_line(),
            "PASV".into(),
            "RANG STREAM".into(),
            "REST STREAM".into(),
            "SIZE".into(),
            "TVFS".into(),
            "UTF8".into(),
            "XCRC".into(),
            "XMD5".into(),
            "XSHA1".into(),
            "XSHA256".into(),
            "End".into(),
        ]);
        Reply::multi(211, lines)
    }

    pub(super) fn cmd_opts(&mut self, name: &str, arg: &str) -> Result<Reply, SessionError> {
        match name {
            "UTF8" | "UTF-8" => match arg.to_ascii_uppercase().as_str() {
                "" | "ON" => Ok(Reply::new(200, "UTF8 mode on: paths are UTF-8.")),
                "OFF" => Ok(Reply::new(
                    200,
                    "Paths stay UTF-8: ferry has no other encoding.",
                )),
                _ => Err(SessionError::Parse(
                    ferry_proto::ParseError::InvalidArgument("OPTS UTF8 takes ON or OFF"),
                )),
            },
            "MLST" => {
                let (facts, chosen) = MlstFacts::select(arg);
                self.mlst_facts = facts;
                Ok(Reply::new(200, format!("MLST OPTS {chosen}")))
            }
            "HASH" => {
                if arg.is_empty() {
                    return Ok(Reply::new(200, self.hash.name()));
                }
                let algo = HashAlgorithm::from_name(arg).ok_or(SessionError::Unsupported(
                    "HASH algorithms are SHA-256, SHA-1, MD5 and CRC32",
                ))?;
                self.hash = algo;
                Ok(Reply::new(200, algo.name()))
            }
            _ => Err(SessionError::Parse(
                ferry_proto::ParseError::InvalidArgument("unknown OPTS; FEAT lists the options"),
            )),
        }
    }

    pub(super) fn cmd_help(&self, topic: Option<String>) -> Reply {
        match topic {
            Some(t) if VERBS.contains(&t.as_str()) => Reply::new(214, format!("{t} is supported.")),
            Some(t) => Reply::new(502, format!("Unknown command {t}.")),
            None => {
                let mut lines = vec!["The following commands are recognized:".to_owned()];
                lines.extend(VERBS.chunks(8).map(|c| c.join(" ")));
                lines.push("Help OK.".into());
                Reply::multi(214, lines)
            }
        }
    }

    pub(super) fn cmd_stat_server(&self) -> Reply {
        let user = match &self.login {
            LoginState::LoggedIn(l) => format!("Logged in as {}", l.account.name),
            _ => "Not logged in".into(),
        };
        Reply::multi(
            211,
            vec![
                "ferry FTP server status:".into(),
                format!("Connected to {}", self.peer.remote.ip()),
                user,
                format!("TYPE: {}, STRUcture: File, MODE: Stream", self.mode_name()),
                format!("Idle timeout: {} seconds", self.opts.idle_timeout.as_secs()),
                "End of status".into(),
            ],
        )
    }
}
