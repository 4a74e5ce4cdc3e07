//! Transfer parameters: TYPE, MODE, STRU, REST, PORT, PASV (RFC 959 §4.1.2), EPRT
//! and EPSV (RFC 2428), REST STREAM (RFC 3659 §5).

use std::net::{IpAddr, SocketAddr};

use ferry_proto::Reply;
use ferry_proto::command::TypeCode;
use ferry_proto::host_port::{self, EpsvArg};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::warn;

use super::Session;
use crate::data::{DataSetup, same_host};
use crate::error::SessionError;
use crate::passive::PassiveListener;

pub(super) fn cmd_mode(mode: char) -> Result<Reply, SessionError> {
    match mode {
        'S' => Ok(Reply::new(200, "Mode set to S.")),
        _ => Err(SessionError::Unsupported("only MODE S (stream) is offered")),
    }
}

pub(super) fn cmd_stru(stru: char) -> Result<Reply, SessionError> {
    match stru {
        'F' => Ok(Reply::new(200, "Structure set to F.")),
        _ => Err(SessionError::Unsupported("only STRU F (file) is offered")),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    pub(super) fn cmd_type(&mut self, t: TypeCode) -> Result<Reply, SessionError> {
        match t {
            TypeCode::Ascii => {
                self.ascii = true;
                Ok(Reply::new(200, "Type set to A."))
            }
            TypeCode::Image => {
                self.ascii = false;
                Ok(Reply::new(200, "Type set to I."))
            }
            TypeCode::Unsupported => {
                Err(SessionError::Unsupported("TYPE A, I and L 8 are offered"))
            }
        }
    }

    pub(super) fn cmd_rest(&mut self, offset: u64) -> Reply {
        self.rest = Some(offset);
        Reply::new(
            350,
            format!("Restarting at {offset}. Send STOR or RETR to start the transfer."),
        )
    }

    /// PORT and EPRT: the server will connect to `addr`.
    pub(super) fn cmd_active(&mut self, addr: SocketAddr) -> Result<Reply, SessionError> {
        if self.epsv_all {
            return Err(SessionError::BadSequence(
                "only EPSV is allowed after EPSV ALL",
            ));
        }
        if !self.opts.allow_active_mode {
            return Err(SessionError::NotImplemented(
                "active mode is disabled on this server; use PASV or EPSV",
            ));
        }
        if !self.opts.allow_foreign_data_address && !same_host(addr.ip(), self.peer.remote.ip()) {
            warn!(session = self.peer.id, target = %addr, "refused PORT/EPRT to a foreign address");
            return Err(SessionError::DataAddressRefused(
                "the address must be your own",
            ));
        }
        if addr.port() < 1024 {
            warn!(session = self.peer.id, target = %addr, "refused PORT/EPRT to a privileged port");
            return Err(SessionError::DataAddressRefused(
                "ports below 1024 are not allowed",
            ));
        }
        self.data = DataSetup::Active(addr);
        Ok(Reply::new(
            200,
            "PORT command successful. Consider using PASV.",
        ))
    }

    pub(super) fn cmd_pasv(&mut self) -> Result<Reply, SessionError> {
        if self.epsv_all {
            return Err(SessionError::BadSequence(
                "only EPSV is allowed after EPSV ALL",
            ));
        }
        let local = self.peer.local.ip().to_canonical();
        let IpAddr::V4(local_v4) = local else {
            return Err(SessionError::Unsupported("PASV needs IPv4; use EPSV"));
        };
        let listener = self.bind_passive(local)?;
        let port = listener.local_addr().port();
        let announced = match self.opts.public_address {
            Some(IpAddr::V4(public)) => public,
            _ => local_v4,
        };
        self.data = DataSetup::Passive(listener);
        Ok(Reply::new(
            227,
            format!(
                "Entering Passive Mode ({}).",
                host_port::format_pasv(std::net::SocketAddrV4::new(announced, port))
            ),
        ))
    }

    pub(super) fn cmd_epsv(&mut self, arg: EpsvArg) -> Result<Reply, SessionError> {
        let local = self.peer.local.ip();
        let family = if local.to_canonical().is_ipv4() { 1 } else { 2 };
        match arg {
            EpsvArg::All => {
                self.epsv_all = true;
                return Ok(Reply::new(200, "EPSV ALL ok."));
            }
            EpsvArg::Protocol(p) if p != family => {
                return Ok(Reply::new(
                    522,
                    format!("Network protocol not supported, use ({family})."),
                ));
            }
            _ => {}
        }
        let listener = self.bind_passive(local)?;
        let port = listener.local_addr().port();
        self.data = DataSetup::Passive(listener);
        Ok(Reply::new(
            229,
            format!("Entering Extended Passive Mode (|||{port}|)."),
        ))
    }

    fn bind_passive(&mut self, ip: IpAddr) -> Result<PassiveListener, SessionError> {
        // A new PASV replaces the previous listener, so a session holds at most one.
        self.data = DataSetup::None;
        self.passive_pool
            .bind(ip)
            .map_err(|e| SessionError::DataConnection(format!("no passive port free: {e}")))
    }
}
