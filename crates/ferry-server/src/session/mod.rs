//! One control connection's state machine (RFC 959 §5.4 sequencing).
//!
//! A [`Session`] reads a line, parses it into a [`Command`], checks the state
//! (logged in? rename pending?), asks the policy, calls the storage and answers.
//! Each command family lives in its own file:
//!
//! | file | commands |
//! |---|---|
//! | `login.rs` | USER PASS ACCT REIN QUIT |
//! | `navigation.rs` | PWD CWD CDUP |
//! | `params.rs` | TYPE MODE STRU PORT PASV EPRT EPSV REST ALLO |
//! | `transfers.rs` | RETR STOR STOU APPE (and ABOR, handled here while a transfer runs) |
//! | `listing.rs` | LIST NLST MLSD MLST STAT |
//! | `files.rs` | DELE MKD RMD RNFR RNTO SIZE MDTM MFMT SITE |
//! | `info.rs` | SYST NOOP FEAT OPTS HELP |
//! | `security.rs` | AUTH PBSZ PROT CCC |
//! | `checksum.rs` | HASH RANG XCRC XMD5 XSHA1 XSHA256 |
//!
//! The session is generic over its control stream, so it runs over a socket in the
//! server and over an in-memory pipe in tests.

mod checksum;
mod files;
mod info;
pub(crate) mod listing;
mod login;
mod navigation;
mod params;
mod security;
mod transfers;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use ferry_accounts::Permission;
use ferry_proto::Reply;
use ferry_proto::command::{ByteRange, Command, PathArg};
use ferry_proto::listing::MlstFacts;
use ferry_storage::{Metadata, Storage, VirtualPath};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::activity::{AuditRecord, XferRecord, rfc3339};
use crate::control::{ControlConnection, Line};
use crate::data::{CloseAfterReply, DataConnection, DataSetup};
use crate::error::{SessionError, TransferError};
use crate::options::ServerOptions;
use crate::passive::PassivePortPool;
use crate::tls::{DataStream, SessionTls};
use crate::transfer::TransferMeter;
use ferry_config::ExplicitTls;

pub use checksum::HashAlgorithm;

/// Where a session is in the login sequence.
#[derive(Debug)]
enum LoginState {
    AwaitingUser,
    AwaitingPass { user: String },
    LoggedIn(Box<LoggedIn>),
}

/// A logged-in session's account, home and place among the user's sessions.
type LoggedIn = crate::signin::SignedIn;

/// The work of a transfer once its data connection is open (a TLS handshake
/// included, for a protected one).
type TransferWork = Box<
    dyn FnOnce(
            DataConnection,
            Arc<TransferMeter>,
            CloseAfterReply,
        ) -> Pin<Box<dyn Future<Output = Result<u64, TransferError>> + Send>>
        + Send,
>;

/// A transfer about to run: the data connection, the 150 reply, then the
/// work, all raced against the control connection so that ABOR, STAT and NOOP
/// are answered meanwhile (see [`Session::run_transfer`]).
struct TransferStep {
    start: Reply,
    /// Opens the data connection: accepts it (PASV/EPSV) or makes it (PORT/EPRT).
    connect: Pin<Box<dyn Future<Output = Result<DataConnection, TransferError>> + Send>>,
    work: TransferWork,
    /// Whether the data connection is protected with TLS.
    protected: bool,
    meter: Arc<TransferMeter>,
    /// What the transfer is done with, closed after its final reply.
    after_reply: CloseAfterReply,
    what: String,
    /// Filled in by the session loop; written when the transfer ends.
    audit: Option<TransferAudit>,
}

/// What the audit log needs of a command.
struct CommandAudit<'a> {
    verb: &'a str,
    arg: Option<&'a str>,
    path: Option<String>,
    user: Option<String>,
}

/// The same, kept until a transfer ends.
struct TransferAudit {
    verb: &'static str,
    arg: Option<String>,
    path: Option<String>,
    user: Option<String>,
    started: Instant,
}

/// The argument of a command line for the audit log: PASS is masked.
fn audit_arg(line: &[u8], command: &Command) -> Option<String> {
    if matches!(command, Command::Pass(_)) {
        return Some("****".into());
    }
    let rest = line
        .iter()
        .position(|&b| b == b' ')
        .map(|i| &line[i + 1..])?;
    Some(String::from_utf8_lossy(rest).into_owned())
}

/// What a command leads to.
enum Step {
    Reply(Reply),
    Transfer(TransferStep),
    /// Send the reply and close the connection.
    Close(Reply),
    /// Send the reply (234), then negotiate TLS on the control connection.
    StartTls(Reply, SessionTls),
}

/// The per-connection facts a session starts with.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    /// The client's address.
    pub remote: SocketAddr,
    /// Our address on this connection.
    pub local: SocketAddr,
    /// A number for logs.
    pub id: u64,
}

/// One control connection.
#[derive(Debug)]
pub struct Session<S> {
    control: ControlConnection<S>,
    opts: Arc<ServerOptions>,
    peer: Peer,
    shutdown: CancellationToken,
    login: LoginState,
    cwd: VirtualPath,
    ascii: bool,
    rest: Option<u64>,
    rename_from: Option<VirtualPath>,
    data: DataSetup,
    passive_pool: PassivePortPool,
    epsv_all: bool,
    mlst_facts: MlstFacts,
    hash: HashAlgorithm,
    range: Option<ByteRange>,
    /// Lines that arrived while a transfer ran, answered after it.
    pending: VecDeque<Vec<u8>>,
    /// This control connection's TLS, once it is under TLS.
    tls: Option<SessionTls>,
    /// PBSZ was sent (RFC 4217 §9).
    pbsz: bool,
    /// PROT P: data connections are under TLS.
    protect_data: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    pub fn new(
        stream: S,
        opts: Arc<ServerOptions>,
        peer: Peer,
        shutdown: CancellationToken,
    ) -> Self {
        Self::new_plain_parts(opts, peer, shutdown, ControlConnection::new(stream))
    }

    fn new_plain_parts(
        opts: Arc<ServerOptions>,
        peer: Peer,
        shutdown: CancellationToken,
        control: ControlConnection<S>,
    ) -> Self {
        let passive_pool = PassivePortPool::new(opts.passive_ports)
            .with_loopback_congestion(opts.loopback_congestion.clone());
        Session {
            control,
            opts,
            peer,
            shutdown,
            login: LoginState::AwaitingUser,
            cwd: VirtualPath::root(),
            ascii: false,
            rest: None,
            rename_from: None,
            data: DataSetup::None,
            passive_pool,
            epsv_all: false,
            mlst_facts: MlstFacts::default(),
            hash: HashAlgorithm::Sha256,
            range: None,
            pending: VecDeque::new(),
            tls: None,
            pbsz: false,
            protect_data: false,
        }
    }

    /// A session on a connection that is TLS from the first byte (implicit FTPS):
    /// data connections are protected unless the client says PROT C.
    pub fn new_implicit(
        stream: tokio_rustls::server::TlsStream<S>,
        tls: SessionTls,
        opts: Arc<ServerOptions>,
        peer: Peer,
        shutdown: CancellationToken,
    ) -> Self {
        let mut session =
            Self::new_plain_parts(opts, peer, shutdown, ControlConnection::new_tls(stream));
        session.tls = Some(tls);
        session.pbsz = true;
        session.protect_data = true;
        session
    }

    /// Serves the connection until the client quits, goes silent, or the server
    /// shuts down.
    pub async fn run(mut self) {
        let banner = Reply::new(220, self.opts.banner.clone());
        if self.control.send(&banner).await.is_err() {
            return;
        }
        let login_deadline = Instant::now() + self.opts.login_timeout;
        loop {
            let line = match self.pending.pop_front() {
                Some(l) => l,
                None => match self.next_line(login_deadline).await {
                    Some(l) => l,
                    None => break,
                },
            };
            // Commands and transfers run boxed: the session's future
            // keeps only what an idle session waits with (benchmark (g)).
            let step = Box::pin(self.handle_line(&line)).await;
            let sent = match step {
                Step::Reply(r) => self.control.send(&r).await,
                Step::Close(r) => {
                    let _ = self.control.send(&r).await;
                    break;
                }
                Step::Transfer(t) => match Box::pin(self.run_transfer(t)).await {
                    TransferEnd::Continue => Ok(()),
                    TransferEnd::ControlClosed => break,
                },
                Step::StartTls(r, tls) => {
                    if self.control.send(&r).await.is_err() {
                        break;
                    }
                    match Box::pin(self.control.start_tls(tls.acceptor())).await {
                        Ok(()) => {
                            self.tls = Some(tls);
                            Ok(())
                        }
                        Err(e) => {
                            info!(session = self.peer.id, error = %e, "TLS negotiation failed");
                            break;
                        }
                    }
                }
            };
            if sent.is_err() {
                break;
            }
        }
        self.control.shutdown().await;
        debug!(session = self.peer.id, "session ended");
    }

    /// Waits for the next line, answering timeouts, shutdown and over-long lines.
    /// `None` ends the session.
    async fn next_line(&mut self, login_deadline: Instant) -> Option<Vec<u8>> {
        loop {
            let logged_in = matches!(self.login, LoginState::LoggedIn(_));
            let idle_deadline = Instant::now() + self.opts.idle_timeout;
            let (deadline, why) = if !logged_in && login_deadline < idle_deadline {
                (login_deadline, "Login timeout: closing control connection.")
            } else {
                (idle_deadline, "Idle timeout: closing control connection.")
            };
            let read = tokio::select! {
                _ = self.shutdown.cancelled() => {
                    let _ = self.control.send(&Reply::new(421, "Server shutting down: closing control connection.")).await;
                    return None;
                }
                r = tokio::time::timeout_at(deadline, self.control.read_line()) => r,
            };
            match read {
                Err(_) => {
                    let _ = self.control.send(&Reply::new(421, why)).await;
                    return None;
                }
                Ok(Err(_)) | Ok(Ok(None)) => return None,
                Ok(Ok(Some(Line::TooLong))) => {
                    let r = Reply::new(500, "Command line too long: skipped.");
                    if self.control.send(&r).await.is_err() {
                        return None;
                    }
                }
                Ok(Ok(Some(Line::Text(l)))) => return Some(l),
            }
        }
    }

    async fn handle_line(&mut self, line: &[u8]) -> Step {
        let started = Instant::now();
        let logged = self.opts.activity.is_on();
        let user_before = if logged { self.audit_user() } else { None };
        let command = match Command::parse(line) {
            Ok(c) => c,
            Err(e) => {
                let reply = SessionError::from(e).reply();
                debug!(
                    session = self.peer.id,
                    reply = reply.code(),
                    "unparsable command"
                );
                let verb =
                    String::from_utf8_lossy(line.split(|&b| b == b' ').next().unwrap_or(b""))
                        .chars()
                        .filter(|c| c.is_ascii_alphanumeric())
                        .take(16)
                        .collect::<String>()
                        .to_ascii_uppercase();
                let audit = CommandAudit {
                    verb: &verb,
                    arg: None,
                    path: None,
                    user: user_before,
                };
                self.write_audit(&audit, reply.code(), None);
                return Step::Reply(reply);
            }
        };
        let verb = command.verb();
        let (arg, path) = if logged {
            let path = command
                .path_arg()
                .and_then(|p| self.cwd.resolve(p.as_str()).ok())
                .map(|p| self.full_path(&p));
            (audit_arg(line, &command), path)
        } else {
            (None, None)
        };
        // RNTO must follow RNFR at once; any other command forgets the RNFR.
        let rename_from = self.rename_from.take();
        let mut step = match self.dispatch(command, rename_from).await {
            Ok(step) => step,
            Err(e) => {
                debug!(session = self.peer.id, verb, error = %e, "command refused");
                Step::Reply(e.reply())
            }
        };
        if let Step::Reply(r) | Step::Close(r) | Step::StartTls(r, _) = &step {
            debug!(session = self.peer.id, verb, reply = r.code(), "command");
        }
        if !logged {
            return step;
        }
        let user = self.audit_user().or(user_before);
        match &mut step {
            Step::Reply(r) | Step::Close(r) | Step::StartTls(r, _) => {
                let audit = CommandAudit {
                    verb,
                    arg: arg.as_deref(),
                    path,
                    user,
                };
                self.write_audit(&audit, r.code(), None);
            }
            Step::Transfer(t) => {
                t.audit = Some(TransferAudit {
                    verb,
                    arg,
                    path,
                    user,
                    started,
                });
            }
        }
        step
    }

    /// Who the audit log names: the logged-in user, or the name a login is for.
    fn audit_user(&self) -> Option<String> {
        match &self.login {
            LoginState::LoggedIn(l) => Some(l.account.name.clone()),
            LoginState::AwaitingPass { user } => Some(user.clone()),
            LoginState::AwaitingUser => None,
        }
    }

    /// A path in the user's view as a path from the storage root.
    fn full_path(&self, path: &VirtualPath) -> String {
        match &self.login {
            LoginState::LoggedIn(l) => l.account.home.join(path).to_string(),
            _ => path.to_string(),
        }
    }

    fn write_audit(
        &self,
        a: &CommandAudit<'_>,
        code: u16,
        transfer: Option<(u64, std::time::Duration)>,
    ) {
        if !self.opts.activity.audits() {
            return;
        }
        self.opts.activity.audit(&AuditRecord {
            time: rfc3339((self.opts.clock)()),
            session: self.peer.id,
            user: a.user.as_deref(),
            client: self.peer.remote,
            protocol: None,
            command: a.verb,
            arg: a.arg,
            path: a.path.clone(),
            code,
            bytes: transfer.map(|t| t.0),
            duration_ms: transfer.map(|t| u64::try_from(t.1.as_millis()).unwrap_or(u64::MAX)),
        });
    }

    async fn dispatch(
        &mut self,
        command: Command,
        rename_from: Option<VirtualPath>,
    ) -> Result<Step, SessionError> {
        // Commands allowed before login.
        match command {
            Command::User(_)
                if self.opts.explicit_tls == ExplicitTls::Required && self.tls.is_none() =>
            {
                return Ok(Step::Reply(Reply::new(
                    530,
                    "TLS is required: send AUTH TLS first.",
                )));
            }
            Command::User(name) => return self.cmd_user(name).map(Step::Reply),
            Command::Pass(pass) => return self.cmd_pass(pass).await,
            Command::Quit => return Ok(Step::Close(Reply::new(221, "Goodbye."))),
            Command::Rein => return Ok(Step::Reply(self.cmd_rein())),
            Command::Feat => return Ok(Step::Reply(self.cmd_feat())),
            Command::Syst => return Ok(Step::Reply(Reply::new(215, "UNIX Type: L8"))),
            Command::Noop => return Ok(Step::Reply(Reply::new(200, "NOOP ok."))),
            Command::Help(topic) => return Ok(Step::Reply(self.cmd_help(topic))),
            Command::Opts { name, arg } => return self.cmd_opts(&name, &arg).map(Step::Reply),
            Command::Auth(_) | Command::Pbsz(_) | Command::Prot(_) | Command::Ccc => {
                return self.cmd_security(command);
            }
            Command::Abor => return Ok(Step::Reply(Reply::new(226, "No transfer to abort."))),
            Command::Stat(ref args) if args.path.is_none() => {
                return Ok(Step::Reply(self.cmd_stat_server()));
            }
            _ => {}
        }
        if !matches!(self.login, LoginState::LoggedIn(_)) {
            return Err(SessionError::NotLoggedIn);
        }
        let reply = match command {
            Command::Acct(_) => Reply::new(202, "ACCT not needed."),
            Command::Pwd => self.cmd_pwd(),
            Command::Cwd(p) => self.cmd_cwd(&p).await?,
            Command::Cdup => self.cmd_cwd(&PathArg::new("..")?).await?,
            Command::Type(t) => self.cmd_type(t)?,
            Command::Mode(m) => params::cmd_mode(m)?,
            Command::Stru(s) => params::cmd_stru(s)?,
            Command::Allo => Reply::new(202, "ALLO not needed."),
            Command::Rest(n) => self.cmd_rest(n),
            Command::Port(addr) => self.cmd_active(addr.into())?,
            Command::Eprt(addr) => self.cmd_active(addr)?,
            Command::Pasv => self.cmd_pasv()?,
            Command::Epsv(arg) => self.cmd_epsv(arg)?,
            Command::Retr(p) => return self.cmd_retr(&p).await.map(Step::Transfer),
            Command::Stor(p) => {
                return self
                    .cmd_store(&p, transfers::StoreKind::Stor)
                    .await
                    .map(Step::Transfer);
            }
            Command::Appe(p) => {
                return self
                    .cmd_store(&p, transfers::StoreKind::Appe)
                    .await
                    .map(Step::Transfer);
            }
            Command::Stou(p) => return self.cmd_stou(p).await.map(Step::Transfer),
            Command::List(args) => {
                return self
                    .cmd_list(args, listing::ListFormat::Long)
                    .await
                    .map(Step::Transfer);
            }
            Command::Nlst(args) => {
                return self
                    .cmd_list(args, listing::ListFormat::Names)
                    .await
                    .map(Step::Transfer);
            }
            Command::Mlsd(p) => return self.cmd_mlsd(p).await.map(Step::Transfer),
            Command::Mlst(p) => self.cmd_mlst(p).await?,
            Command::Stat(args) => {
                return self
                    .cmd_stat_path(args)
                    .await
                    .map(|()| Step::Reply(Reply::new(213, "End of status.")));
            }
            Command::Dele(p) => self.cmd_dele(&p).await?,
            Command::Mkd(p) => self.cmd_mkd(&p).await?,
            Command::Rmd(p) => self.cmd_rmd(&p).await?,
            Command::Rnfr(p) => self.cmd_rnfr(&p).await?,
            Command::Rnto(p) => self.cmd_rnto(&p, rename_from).await?,
            Command::Size(p) => self.cmd_size(&p).await?,
            Command::Mdtm(p) => self.cmd_mdtm(&p).await?,
            Command::Mfmt { time, path } => self.cmd_mfmt(time, &path).await?,
            Command::Site { sub, arg } => self.cmd_site(&sub, &arg).await?,
            Command::Checksum { kind, path, range } => {
                self.cmd_checksum(kind, &path, range).await?
            }
            Command::Rang(range) => self.cmd_rang(range),
            // Answered above, before the login check.
            Command::User(_)
            | Command::Pass(_)
            | Command::Quit
            | Command::Rein
            | Command::Feat
            | Command::Syst
            | Command::Noop
            | Command::Help(_)
            | Command::Opts { .. }
            | Command::Auth(_)
            | Command::Pbsz(_)
            | Command::Prot(_)
            | Command::Ccc
            | Command::Abor => Reply::new(503, "Bad sequence of commands."),
        };
        Ok(Step::Reply(reply))
    }

    /// Runs a transfer while answering the control connection.
    ///
    /// The order on the wire, like vsftpd's and Pure-FTPd's: first the data
    /// connection (a client that cannot open one gets 425 alone), then 150,
    /// then the data, then 226. A plain transfer that finishes at once (a small
    /// file goes out in one `sendfile` into the socket buffer) sends its 150 and
    /// 226 in one write: one packet and one wake-up of the client fewer per
    /// file. Over TLS the 150 always comes first, because clients wait for it
    /// before they start the handshake on the data connection.
    async fn run_transfer(&mut self, t: TransferStep) -> TransferEnd {
        let TransferStep {
            start,
            mut connect,
            work,
            protected,
            meter,
            after_reply,
            what,
            audit,
        } = t;
        let mut control_open = true;
        let connected = self
            .race_control(&mut connect, &mut control_open, &what, &meter)
            .await;
        drop(connect);
        let mut start_sent = false;
        let opened = matches!(connected, Some(Ok(_)));
        let result: Option<Result<u64, TransferError>> = match connected {
            None => None,
            Some(Err(e)) => Some(Err(e)),
            Some(Ok(stream)) => {
                let mut job = work(stream, meter.clone(), after_reply.clone());
                // A plain transfer is polled once before its 150 goes out.
                let first = if protected {
                    None
                } else {
                    match std::future::poll_fn(|cx| Poll::Ready(job.as_mut().poll(cx))).await {
                        Poll::Ready(r) => Some(r),
                        Poll::Pending => None,
                    }
                };
                match first {
                    Some(r) => Some(r),
                    None => {
                        // A transfer that takes a while does not hold its
                        // passive port meanwhile: what is kept so far (the
                        // listener) is closed now, so that a narrow passive
                        // range serves as many transfers at once as it has
                        // connections, not listeners.
                        after_reply.close_now();
                        if control_open && self.control.send(&start).await.is_err() {
                            control_open = false;
                        }
                        start_sent = true;
                        self.race_control(&mut job, &mut control_open, &what, &meter)
                            .await
                    }
                }
            }
        };
        let mut replies = match &result {
            Some(Ok(bytes)) => vec![Reply::new(
                226,
                format!("Transfer complete ({bytes} bytes)."),
            )],
            Some(Err(e)) => vec![e.reply()],
            None => vec![
                Reply::new(426, "Connection closed; transfer aborted."),
                Reply::new(226, "ABOR successful."),
            ],
        };
        // A transfer that ran without its 150 having gone out yet announces it
        // now, before the result; one that never got a data connection does not.
        if opened && !start_sent {
            replies.insert(0, start);
        }
        if let Some(a) = &audit {
            let code = replies
                .iter()
                .map(Reply::code)
                .find(|&c| c >= 200)
                .unwrap_or(0);
            let elapsed = a.started.elapsed();
            let bytes = meter.bytes();
            let record = CommandAudit {
                verb: a.verb,
                arg: a.arg.as_deref(),
                path: a.path.clone(),
                user: a.user.clone(),
            };
            self.write_audit(&record, code, Some((bytes, elapsed)));
            let direction = match a.verb {
                "RETR" => Some('o'),
                "STOR" | "APPE" | "STOU" => Some('i'),
                _ => None,
            };
            if let (Some(direction), Some(path)) = (direction, &a.path) {
                let anonymous = matches!(&self.login, LoginState::LoggedIn(l) if l.account.kind == ferry_accounts::AccountKind::Anonymous);
                self.opts.activity.xfer(&XferRecord {
                    end: (self.opts.clock)(),
                    duration: elapsed,
                    client: self.peer.remote,
                    bytes,
                    path,
                    ascii: self.ascii,
                    direction,
                    anonymous,
                    user: a.user.as_deref().unwrap_or("-"),
                    complete: code == 226,
                });
            }
        }
        let sent = control_open && self.control.send_all(&replies).await.is_ok();
        after_reply.close_now();
        if sent {
            self.passive_pool.prepare();
        }
        // Logged after the reply is out: the client need not wait for the log.
        // A completed transfer is a debug line only: the xferlog has it, and a
        // line per file on the server's log costs a small-file transfer 5%.
        match &result {
            Some(Ok(bytes)) => {
                debug!(session = self.peer.id, what = %what, bytes, "transfer complete");
            }
            Some(Err(e)) => {
                info!(session = self.peer.id, what = %what, error = %e, bytes = meter.bytes(), "transfer failed");
            }
            None => {
                info!(session = self.peer.id, what = %what, bytes = meter.bytes(), "transfer aborted by client");
            }
        }
        if sent {
            TransferEnd::Continue
        } else {
            TransferEnd::ControlClosed
        }
    }

    /// Awaits `step` (the data connection, or the transfer over it) while
    /// answering the control connection; `None` when the client sent ABOR.
    /// Once the control connection is closed, `step` runs to its end alone.
    async fn race_control<T>(
        &mut self,
        step: &mut Pin<Box<dyn Future<Output = T> + Send>>,
        control_open: &mut bool,
        what: &str,
        meter: &TransferMeter,
    ) -> Option<T> {
        loop {
            let event = if *control_open {
                tokio::select! {
                    r = &mut *step => Raced::Done(r),
                    line = self.control.read_line() => Raced::Line(line),
                }
            } else {
                Raced::Done(step.as_mut().await)
            };
            match event {
                Raced::Done(r) => return Some(r),
                Raced::Line(line) => match self.control_during_transfer(line, what, meter).await {
                    DuringTransfer::Continue => {}
                    DuringTransfer::Abort => return None,
                    DuringTransfer::ControlClosed => *control_open = false,
                },
            }
        }
    }

    /// Answers a control line that arrives while a transfer runs: ABOR ends it,
    /// STAT and NOOP are answered, anything else waits for the transfer's end.
    async fn control_during_transfer(
        &mut self,
        line: std::io::Result<Option<Line>>,
        what: &str,
        meter: &TransferMeter,
    ) -> DuringTransfer {
        match line {
            Ok(Some(Line::Text(l))) => match Command::parse(&l) {
                Ok(Command::Abor) => return DuringTransfer::Abort,
                Ok(Command::Stat(args)) if args.path.is_none() => {
                    let r = Reply::new(
                        213,
                        format!(
                            "Status: {} {} bytes transferred so far.",
                            what,
                            meter.bytes()
                        ),
                    );
                    let _ = self.control.send(&r).await;
                }
                Ok(Command::Noop) => {
                    let _ = self.control.send(&Reply::new(200, "NOOP ok.")).await;
                }
                _ => self.pending.push_back(l),
            },
            Ok(Some(Line::TooLong)) => {
                let _ = self
                    .control
                    .send(&Reply::new(500, "Command line too long: skipped."))
                    .await;
            }
            // The client closed the control connection: let the transfer
            // finish (an upload is kept whole), then end the session.
            Ok(None) | Err(_) => return DuringTransfer::ControlClosed,
        }
        DuringTransfer::Continue
    }

    // Helpers shared by the command families.

    /// A transfer: after the `start` reply, open the data connection set up by
    /// PORT/PASV, then run `work` over it with a meter that STAT reads.
    fn transfer_step<F, Fut>(
        &mut self,
        start: Reply,
        what: String,
        work: F,
    ) -> Result<TransferStep, SessionError>
    where
        F: FnOnce(DataStream, Arc<TransferMeter>, CloseAfterReply) -> Fut + Send + 'static,
        Fut: Future<Output = Result<u64, TransferError>> + Send + 'static,
    {
        if self.opts.explicit_tls == ExplicitTls::Required && !self.protect_data {
            return Err(SessionError::ProtectionRequired);
        }
        let protect = match (&self.tls, self.protect_data) {
            (Some(tls), true) => Some((tls.data_acceptor().clone(), self.reuse_required())),
            _ => None,
        };
        let setup = match std::mem::take(&mut self.data) {
            DataSetup::None => {
                return Err(SessionError::DataConnection(
                    "use PORT, PASV, EPRT or EPSV first".into(),
                ));
            }
            setup => setup,
        };
        let timeout = self.opts.data_timeout;
        let (peer_ip, local_ip) = (self.peer.remote.ip(), self.peer.local.ip());
        let protected = protect.is_some();
        let after_reply = CloseAfterReply::default();
        let connect = crate::data::open(
            setup,
            peer_ip,
            local_ip,
            timeout,
            after_reply.clone(),
            self.opts.loopback_congestion.clone(),
        );
        let work: TransferWork = Box::new(move |stream, meter, after_reply| {
            Box::pin(async move {
                let stream = match protect {
                    None => DataStream::Plain(stream),
                    Some((acceptor, reuse_required)) => {
                        let stream = stream.into_registered().map_err(|e| {
                            TransferError::Connection(format!("data connection: {e}"))
                        })?;
                        let tls = tokio::time::timeout(timeout, acceptor.accept(stream))
                            .await
                            .map_err(|_| {
                                TransferError::Tls(
                                    "TLS negotiation on the data connection timed out".into(),
                                )
                            })?
                            .map_err(|e| {
                                TransferError::Tls(format!(
                                    "TLS negotiation on the data connection failed: {e}"
                                ))
                            })?;
                        if reuse_required && !crate::tls::resumed(tls.get_ref().1) {
                            return Err(TransferError::Tls(
                                "the data connection must reuse the control connection's TLS session"
                                    .into(),
                            ));
                        }
                        DataStream::Tls(Box::new(tls))
                    }
                };
                work(stream, meter, after_reply).await
            })
        });
        Ok(TransferStep {
            start,
            connect: Box::pin(connect),
            work,
            protected,
            meter: TransferMeter::new(),
            after_reply,
            what,
            audit: None,
        })
    }

    /// Whether data connections must resume this control connection's TLS session.
    fn reuse_required(&self) -> bool {
        self.opts.require_session_reuse
            && !self
                .opts
                .session_reuse_exempt
                .iter()
                .any(|net| net.contains(self.peer.remote.ip()))
    }

    /// Fails early (425, before any file is opened) when no data connection is set up.
    fn require_data_setup(&self) -> Result<(), SessionError> {
        match self.data {
            DataSetup::None => Err(SessionError::DataConnection(
                "use PORT, PASV, EPRT or EPSV first".into(),
            )),
            _ => Ok(()),
        }
    }

    fn logged_in(&self) -> Result<&LoggedIn, SessionError> {
        match &self.login {
            LoginState::LoggedIn(l) => Ok(l),
            _ => Err(SessionError::NotLoggedIn),
        }
    }

    fn storage(&self) -> Result<Arc<dyn Storage>, SessionError> {
        Ok(self.logged_in()?.storage.clone())
    }

    fn resolve(&self, arg: &PathArg) -> Result<VirtualPath, SessionError> {
        Ok(self.cwd.resolve(arg.as_str())?)
    }

    /// Asks the policy whether `action` on `path` is allowed.
    fn check(&self, action: Permission, path: &VirtualPath) -> Result<(), SessionError> {
        self.logged_in()?.check(action, path)
    }

    async fn metadata(&self, path: &VirtualPath) -> Result<Metadata, SessionError> {
        self.storage()?
            .metadata(path)
            .await
            .map_err(|e| SessionError::storage(path, e))
    }

    /// Whether a path exists (errors other than "not found" are failures).
    /// Records a change of stored bytes and files for quota usage.
    async fn record_usage(&self, bytes: i64, files: i64) {
        if let Ok(l) = self.logged_in() {
            l.record_usage(&self.opts, bytes, files).await;
        }
    }

    async fn exists(&self, path: &VirtualPath) -> Result<Option<Metadata>, SessionError> {
        match self.storage()?.metadata(path).await {
            Ok(m) => Ok(Some(m)),
            Err(ferry_storage::StorageError::NotFound) => Ok(None),
            Err(e) => Err(SessionError::storage(path, e)),
        }
    }
}

/// What came first while racing a transfer's step against the control connection.
enum Raced<T> {
    Done(T),
    Line(std::io::Result<Option<Line>>),
}

/// What a control line read during a transfer leads to.
enum DuringTransfer {
    Continue,
    Abort,
    ControlClosed,
}

enum TransferEnd {
    Continue,
    ControlClosed,
}

#[cfg(test)]
mod tests;
