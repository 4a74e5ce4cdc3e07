//! One SFTP channel's requests (draft-ietf-secsh-filexfer-02, version 3).
//!
//! [`SftpSession`] answers a channel's requests and keeps its open handles.
//! Requests are read as they come, while replies are on their way (see
//! [`SftpSession::run`]); requests that change nothing (READs and READDIRs
//! on different handles, lookups such as STAT and OPEN to read) and WRITEs
//! to files no other handle is open on run side by side, every other
//! request alone and in order (see `SftpSession::answer_requests`). Each request family lives in its own
//! file:
//!
//! | file | requests |
//! |---|---|
//! | `files.rs` | OPEN, READ, WRITE, CLOSE (§6.3, §6.4) |
//! | `dirs.rs` | OPENDIR, READDIR, REMOVE, MKDIR, RMDIR, RENAME (§6.5–§6.7) |
//! | `attrs.rs` | STAT, LSTAT, FSTAT, SETSTAT, FSETSTAT, REALPATH (§6.8–§6.10) |
//! | `extensions.rs` | EXTENDED (§8): limits@openssh.com, posix-rename@openssh.com, statvfs@openssh.com, fstatvfs@openssh.com, fsync@openssh.com |
//!
//! Every path goes through [`VirtualPath::resolve`] from the home (`/` is the
//! home, as over FTP), every action through the same permission rules, file
//! name rules, quotas and rates as FTP (the [`SignedIn`] of `crate::signin`),
//! and every request but READ, WRITE and READDIR gets an audit record (a
//! file's reads or writes are recorded once, when its handle closes, with the
//! bytes and an xferlog line).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_accounts::Permission;
use ferry_storage::{Metadata, StorageError, VirtualPath};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use russh_sftp::protocol::{Data, Handle, Lstat, Packet, Stat, Status, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::dirs::DirHandle;
use super::files::{FileHandle, Uploads};
use super::status::SftpFailure;
use crate::activity::{AuditRecord, rfc3339};
use crate::error::SessionError;
use crate::options::ServerOptions;
use crate::session::Peer;
use crate::signin::SignedIn;

/// The largest request accepted: a WRITE of 256 KiB and its header. Clients
/// send 32 KiB (OpenSSH) to 256 KiB; a longer length is a broken or hostile
/// peer, and the channel closes.
pub const MAX_PACKET: u32 = 256 * 1024 + 1024;

/// The most a READ answers at once.
pub const MAX_READ: u32 = 256 * 1024;

/// The most request bytes a channel holds read and not yet answered: 160,000
/// READs or 32 WRITEs of 256 KiB. Past it the channel stops reading until
/// requests are answered, which holds the client back through SSH's flow
/// control. OpenSSH keeps 64 requests in flight.
pub(super) const QUEUED_REQUEST_BYTES: usize = 8 << 20;
const _: () = assert!(MAX_PACKET as usize <= QUEUED_REQUEST_BYTES);

/// The most handles one channel keeps open.
pub const MAX_HANDLES: usize = 64;

/// An open handle.
pub(super) enum OpenHandle {
    File(Box<FileHandle>),
    Dir(DirHandle),
}

/// What an SSH connection's SFTP channels share for a graceful stop: how
/// many handles are open (a file being read or written, a listing: work in
/// flight), and whether the server is stopping. When it stops, channels open
/// no new handles, and the connection ends once none is left open (or when
/// `shutdown_grace` runs out), as an FTP session ends after its transfer.
#[derive(Debug)]
pub struct OpenHandles {
    count: tokio::sync::watch::Sender<usize>,
    stopping: CancellationToken,
}

impl OpenHandles {
    /// Handles of one connection; `stopping` is the server's shutdown.
    pub fn new(stopping: CancellationToken) -> Arc<Self> {
        Arc::new(OpenHandles {
            count: tokio::sync::watch::Sender::new(0),
            stopping,
        })
    }

    /// Whether the server is stopping: no new handles.
    pub fn stopping(&self) -> bool {
        self.stopping.is_cancelled()
    }

    /// Returns once the server is stopping and no handle is open.
    pub async fn drained(&self) {
        self.stopping.cancelled().await;
        let mut open = self.count.subscribe();
        // The sender lives in `self`, so this ends only at zero.
        let _ = open.wait_for(|n| *n == 0).await;
    }

    fn opened(&self) {
        self.count.send_modify(|n| *n += 1);
    }

    fn closed(&self, how_many: usize) {
        self.count.send_modify(|n| *n = n.saturating_sub(how_many));
    }
}

/// The open handles by name. Behind a mutex only so that the session is
/// `Sync` (its requests hold it across awaits); a request that owns the
/// session reaches them without locking.
///
/// Every handle counts in the connection's [`OpenHandles`] from its OPEN
/// until the reply to its CLOSE is sent (so a stopping server does not cut
/// the connection before the client hears that its upload was stored),
/// including while a request has it out of the table.
pub(super) struct HandleTable {
    map: std::sync::Mutex<HashMap<String, OpenHandle>>,
    counted: Arc<OpenHandles>,
    /// Handles out of the map: taken by a request in progress, or closed by
    /// one whose reply is not sent yet. Still counted.
    out: usize,
    /// Of `out`, the closed ones.
    closed: usize,
}

impl Drop for HandleTable {
    fn drop(&mut self) {
        let left = self.len() + self.out;
        self.counted.closed(left);
    }
}

impl HandleTable {
    fn new(counted: Arc<OpenHandles>) -> Self {
        HandleTable {
            map: std::sync::Mutex::default(),
            counted,
            out: 0,
            closed: 0,
        }
    }

    fn map(&mut self) -> &mut HashMap<String, OpenHandle> {
        self.map.get_mut().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn len(&mut self) -> usize {
        self.map().len()
    }

    /// A new handle.
    fn add(&mut self, name: String, handle: OpenHandle) {
        if self.map().insert(name, handle).is_none() {
            self.counted.opened();
        }
    }

    /// Takes a handle out for a request, which puts it back or closes it.
    pub(super) fn take(&mut self, name: &str) -> Option<OpenHandle> {
        let taken = self.map().remove(name);
        if taken.is_some() {
            self.out += 1;
        }
        taken
    }

    /// Puts a taken handle back.
    pub(super) fn put_back(&mut self, name: String, handle: OpenHandle) {
        self.out = self.out.saturating_sub(1);
        self.map().insert(name, handle);
    }

    /// A taken handle is closed; it stops counting once the reply is sent.
    pub(super) fn closed(&mut self) {
        self.closed += 1;
    }

    /// The reply to the last request is sent: handles it closed stop counting.
    pub(super) fn reply_sent(&mut self) {
        let closed = std::mem::take(&mut self.closed);
        if closed > 0 {
            self.out = self.out.saturating_sub(closed);
            self.counted.closed(closed);
        }
    }

    pub(super) fn get_mut(&mut self, name: &str) -> Option<&mut OpenHandle> {
        self.map().get_mut(name)
    }

    /// The open files.
    pub(super) fn files(&mut self) -> impl Iterator<Item = &super::files::FileHandle> {
        self.map().values().filter_map(|h| match h {
            OpenHandle::File(f) => Some(&**f),
            OpenHandle::Dir(_) => None,
        })
    }

    /// The handle of an open file holding an upload of `path` in progress.
    pub(super) fn writer_of(&mut self, path: &ferry_storage::VirtualPath) -> Option<String> {
        self.map().iter().find_map(|(name, h)| match h {
            OpenHandle::File(f) if &f.path == path && f.is_uploading() => Some(name.clone()),
            _ => None,
        })
    }

    pub(super) fn names(&mut self) -> Vec<String> {
        self.map().keys().cloned().collect()
    }
}

/// One SFTP channel of a signed-in user.
pub struct SftpSession {
    pub(super) opts: Arc<ServerOptions>,
    pub(super) peer: Peer,
    pub(super) user: Arc<SignedIn>,
    pub(super) handles: HandleTable,
    next_handle: u64,
    initialized: bool,
}

impl std::fmt::Debug for SftpSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SftpSession")
            .field("peer", &self.peer)
            .field("user", &self.user.account.name)
            .field("next_handle", &self.next_handle)
            .finish_non_exhaustive()
    }
}

/// Reads a channel's requests (without their lengths) into `queue`, each
/// holding its size of `room`, until the client ends the channel or sends a
/// length out of bounds.
async fn read_requests<R: AsyncRead + Unpin>(
    reader: &mut R,
    queue: mpsc::UnboundedSender<(Bytes, OwnedSemaphorePermit)>,
    room: Arc<Semaphore>,
    session: u64,
) {
    while let Ok(len) = reader.read_u32().await {
        if len == 0 || len > MAX_PACKET {
            warn!(
                session,
                len, "SFTP packet length out of bounds: closing the channel"
            );
            return;
        }
        let Ok(held) = room.clone().acquire_many_owned(len).await else {
            return;
        };
        let mut buf = vec![0u8; len as usize];
        if reader.read_exact(&mut buf).await.is_err()
            || queue.send((Bytes::from(buf), held)).is_err()
        {
            return;
        }
    }
}

/// The most requests one channel runs side by side (READs, READDIRs and
/// lookups: see `SftpSession::answer_requests`); a READ's answer holds up to
/// [`MAX_READ`].
pub(super) const OVERLAPPING_REQUESTS: usize = 8;

/// A packet read from the channel.
enum Incoming {
    /// A request to run; `id` as the packet carried it.
    Request { id: u32, packet: Packet },
    /// Answered already, in reading it.
    Answered(Packet),
}

/// A request read and not yet started: its id, the packet, and its room
/// in the channel's queue ([`QUEUED_REQUEST_BYTES`] bounds them all).
type Waiting = (u32, Packet, OwnedSemaphorePermit);

/// A channel's requests between reading and answering
/// (`SftpSession::answer_requests`).
#[derive(Default)]
struct Queue {
    /// Read and not yet started, in the order they came. The first may be
    /// waiting for room or, if it runs alone, for those in flight to end.
    waiting: VecDeque<Waiting>,
    /// READs, READDIRs and CLOSEs that came while a request in flight held
    /// their handle, by handle, in the order they came: when the handle
    /// comes back, the next of them starts. Each came before every request in
    /// `waiting` that runs alone.
    behind: HashMap<String, VecDeque<Waiting>>,
    /// Running side by side.
    running: FuturesUnordered<BoxFuture<'static, Overlapped>>,
    /// The handles of the requests in `running` that have one out of the
    /// table.
    busy: Vec<Busy>,
}

/// A handle out of the table for a request in flight.
struct Busy {
    name: String,
    /// The file it is open on; none for a listing.
    path: Option<VirtualPath>,
    /// Whether it writes that file (a WRITE has it out).
    writes: bool,
}

impl Busy {
    fn new(name: &str, handle: &OpenHandle) -> Busy {
        let (path, writes) = match handle {
            OpenHandle::File(f) => (Some(f.path.clone()), f.is_writing()),
            OpenHandle::Dir(_) => (None, false),
        };
        Busy {
            name: name.to_owned(),
            path,
            writes,
        }
    }
}

/// Whether a request in flight has the handle `name` out.
fn is_busy(busy: &[Busy], name: &str) -> bool {
    busy.iter().any(|b| b.name == name)
}

/// When a waiting request may start.
enum Turn {
    /// Now, beside those in flight: a request that changes nothing, with
    /// the handle it reads taken out of the table (a READ or READDIR) or
    /// none (a lookup); or a WRITE to a file no other handle is open on,
    /// with its handle.
    Beside(Option<(String, OpenHandle)>),
    /// Once the request in flight on the handle it names ends, after those
    /// on that handle before it; requests behind it that change nothing
    /// may start before it.
    Behind(String),
    /// Now, answered at once beside those in flight: a CLOSE of a file
    /// opened to read or of a listing, which no request in flight holds
    /// (it ends nothing but its handle).
    Now,
    /// Once nothing is in flight and every request before it is answered;
    /// the requests behind it wait for it.
    Alone,
}

/// A request that ran beside others.
struct Overlapped {
    /// The handle a READ, READDIR or WRITE had out of the table, to put
    /// back.
    lent: Option<(String, OpenHandle)>,
    outcome: Outcome,
    /// The request's room in the channel's queue.
    held: OwnedSemaphorePermit,
}

/// What a request run beside others came to.
enum Outcome {
    /// Its reply.
    Reply(Packet),
    /// An OPEN or OPENDIR: the handle to name and add to the table, which
    /// the reply then carries (the table is the session's, so it is added
    /// once the request is back).
    Opened {
        id: u32,
        audited: Option<Audited>,
        opened: Result<OpenHandle, SftpFailure>,
        started: Instant,
    },
}

/// Runs a request that may run beside others (`SftpSession::turn` picks
/// them): a READ, READDIR or WRITE with its handle `lent` out of the
/// table, or a STAT, LSTAT, REALPATH, OPEN to read or OPENDIR, which need
/// no handle. It needs nothing else of the session than `uploads` (the
/// user, and the options a WRITE's upload needs), so it runs beside others
/// (`SftpSession::answer_requests`). `now` dates a listing's `ls -l` lines.
fn overlapping(
    uploads: Uploads,
    now: std::time::SystemTime,
    packet: Packet,
    mut lent: Option<(String, OpenHandle)>,
    held: OwnedSemaphorePermit,
) -> BoxFuture<'static, Overlapped> {
    Box::pin(async move {
        let user = &uploads.user;
        let id = packet.get_request_id();
        let started = Instant::now();
        let reply = |answer: Answer| {
            Outcome::Reply(answer.unwrap_or_else(|f| status(id, f.code, &f.message)))
        };
        let handle = lent.as_mut().map(|(_, handle)| handle);
        let outcome = match (packet, handle) {
            (Packet::Read(r), Some(OpenHandle::File(file))) => reply(
                file.read(user, r.offset, r.len)
                    .await
                    .map(|data| Packet::Data(Data { id, data })),
            ),
            (Packet::ReadDir(_), Some(OpenHandle::Dir(dir))) => {
                reply(dir.next_names(id, now).await)
            }
            (Packet::Write(w), Some(OpenHandle::File(file))) => reply(
                uploads
                    .write_into(file, w.offset, &w.data)
                    .await
                    .and_then(|()| ok(id)),
            ),
            (Packet::Stat(Stat { path, .. }) | Packet::Lstat(Lstat { path, .. }), None) => {
                reply(async { super::attrs::looked_up(user, id, &resolve(&path)?).await }.await)
            }
            (Packet::RealPath(r), None) => reply(super::attrs::realpath(id, &r.path)),
            (Packet::Open(o), None) => Outcome::Opened {
                id,
                audited: Audited::on("OPEN", &o.filename),
                opened: async {
                    let file = FileHandle::open_to_read(user, resolve(&o.filename)?).await?;
                    Ok(OpenHandle::File(Box::new(file)))
                }
                .await,
                started,
            },
            (Packet::OpenDir(o), None) => Outcome::Opened {
                id,
                audited: Audited::on("OPENDIR", &o.path),
                opened: async {
                    DirHandle::open(user, resolve(&o.path)?)
                        .await
                        .map(OpenHandle::Dir)
                }
                .await,
                started,
            },
            // `turn` starts nothing else beside others.
            _ => reply(Err(SftpFailure::failure(
                "the request cannot run beside others",
            ))),
        };
        Overlapped {
            lent,
            outcome,
            held,
        }
    })
}

/// What a request's audit record names.
pub(super) struct Audited {
    pub(super) verb: &'static str,
    /// The request's argument as sent.
    pub(super) arg: String,
    /// The path it acted on, as sent.
    pub(super) path: Option<String>,
}

impl Audited {
    /// A request on one path.
    pub(super) fn on(verb: &'static str, path: &str) -> Option<Audited> {
        Some(Audited {
            verb,
            arg: path.to_owned(),
            path: Some(path.to_owned()),
        })
    }
}

/// What a request answers: a packet, or a failure.
pub(super) type Answer = Result<Packet, SftpFailure>;

impl SftpSession {
    /// A channel of the connection whose handles `handles` counts.
    pub fn new(
        opts: Arc<ServerOptions>,
        peer: Peer,
        user: Arc<SignedIn>,
        handles: Arc<OpenHandles>,
    ) -> Self {
        SftpSession {
            opts,
            peer,
            user,
            handles: HandleTable::new(handles),
            next_handle: 1,
            initialized: false,
        }
    }

    /// Serves the channel until the client closes it or breaks the protocol.
    /// Open uploads end as after a failure (see `ferry_storage::Upload`).
    ///
    /// Requests are read as they come, while replies are written: russh
    /// hands a channel's incoming data over through a queue of 100 messages,
    /// which its notices of the client's window adjustments fill too, and
    /// its connection stops reading the socket while that queue is full. A
    /// channel that read only between replies left it full while a reply
    /// waited for the client's window, which the client opens by a message
    /// the connection then never read: with OpenSSH's 64 READs of 255 KiB in
    /// flight, every large download stopped for good. What is read waits
    /// here, up to [`QUEUED_REQUEST_BYTES`].
    pub async fn run<S: AsyncRead + AsyncWrite + Unpin>(mut self, stream: S) {
        let (mut reader, mut writer) = tokio::io::split(stream);
        let room = Arc::new(Semaphore::new(QUEUED_REQUEST_BYTES));
        let (queue, mut requests) = mpsc::unbounded_channel();
        {
            let read = read_requests(&mut reader, queue, room, self.peer.id);
            let answer = self.answer_requests(&mut requests, &mut writer);
            tokio::pin!(read, answer);
            tokio::select! {
                // A reply could not be sent: nothing more will be.
                () = &mut answer => {}
                // The client is done sending (or broke the protocol): what it
                // sent before is answered.
                () = &mut read => answer.await,
            }
        }
        self.close_all().await;
        debug!(session = self.peer.id, "SFTP channel ended");
    }

    /// Answers the channel's requests as they come until the client stops
    /// sending or a reply cannot be written. These run side by side (at
    /// most [`OVERLAPPING_REQUESTS`]): a READ or READDIR on a handle no
    /// request in flight holds, the lookups of `is_lookup` (STAT, LSTAT,
    /// REALPATH, OPEN to read, OPENDIR), and a WRITE to a file no other
    /// handle of the channel is open on (`writing_turn`); a CLOSE of a read
    /// handle or listing is answered at once after the requests on its
    /// handle. Every other request (the CLOSE of an upload, SETSTAT, a
    /// change of names, …) runs alone, once those in flight are answered,
    /// and the requests after it wait for it. So a slow storage read,
    /// write or lookup does not hold the requests on other files, while
    /// requests on one file keep the order the client sent them in, and a
    /// request that changes names or commits a file sees every request
    /// sent before it done and none sent after it started
    /// (draft-ietf-secsh-filexfer-02 §6: requests on one file are
    /// processed in order; replies may come in any order, each carrying
    /// its id).
    async fn answer_requests<W: AsyncWrite + Unpin>(
        &mut self,
        requests: &mut mpsc::UnboundedReceiver<(Bytes, OwnedSemaphorePermit)>,
        writer: &mut W,
    ) {
        let mut queue = Queue::default();
        let mut more = true;
        loop {
            if !self.start_waiting(&mut queue, writer).await {
                break;
            }
            if !more && queue.running.is_empty() && queue.waiting.is_empty() {
                break;
            }
            tokio::select! {
                request = requests.recv(), if more => {
                    match request {
                        None => more = false,
                        Some((raw, held)) => match self.accept(raw) {
                            Incoming::Request { id, packet } => {
                                queue.waiting.push_back((id, packet, held));
                            }
                            Incoming::Answered(reply) => {
                                drop(held);
                                if !self.send(writer, reply).await {
                                    break;
                                }
                            }
                        },
                    }
                }
                Some(done) = queue.running.next(), if !queue.running.is_empty() => {
                    if !self.send_returned(done, &mut queue, writer).await {
                        break;
                    }
                }
                // Cannot be: with nothing in flight, `start_waiting` has
                // started the first waiting request.
                else => break,
            }
        }
        // A reply could not be written: what is in flight still ends, and
        // its handle goes back to be closed with the others.
        while let Some(done) = queue.running.next().await {
            self.returned(done, &mut queue.busy);
        }
    }

    /// Starts the waiting requests whose turn it is, in the order they
    /// came (see [`Turn`]): one that changes nothing starts beside those in
    /// flight while there is room; one whose handle a request in flight
    /// holds goes behind that handle, so that those after it may pass it;
    /// one that runs alone starts once nothing is in flight, and holds
    /// every request after it until it is answered. False when a reply
    /// could not be written.
    async fn start_waiting<W: AsyncWrite + Unpin>(
        &mut self,
        queue: &mut Queue,
        writer: &mut W,
    ) -> bool {
        while queue.running.len() < OVERLAPPING_REQUESTS {
            let Some((_, packet, _)) = queue.waiting.front() else {
                break;
            };
            let turn = self.turn(packet, &queue.busy);
            if matches!(turn, Turn::Alone) && !queue.running.is_empty() {
                break;
            }
            let Some(request) = queue.waiting.pop_front() else {
                break;
            };
            if !self.start(request, turn, queue, writer).await {
                return false;
            }
        }
        true
    }

    /// Starts `request`, whose turn `turn` is: beside those in flight,
    /// behind its handle, or alone (answered now). False when a reply
    /// could not be written.
    async fn start<W: AsyncWrite + Unpin>(
        &mut self,
        request: Waiting,
        turn: Turn,
        queue: &mut Queue,
        writer: &mut W,
    ) -> bool {
        let (id, packet, held) = request;
        match turn {
            Turn::Behind(name) => {
                queue
                    .behind
                    .entry(name)
                    .or_default()
                    .push_back((id, packet, held));
                true
            }
            Turn::Now | Turn::Alone => {
                let reply = self.answer(id, packet).await;
                drop(held);
                self.send(writer, reply).await
            }
            Turn::Beside(lent) => {
                if let Some((name, handle)) = &lent {
                    queue.busy.push(Busy::new(name, handle));
                }
                queue.running.push(overlapping(
                    self.uploads(),
                    (self.opts.clock)(),
                    packet,
                    lent,
                    held,
                ));
                true
            }
        }
    }

    /// Whose turn `packet` is, with the handles `busy` out of the table for
    /// requests in flight; a READ, READDIR or WRITE that starts now has its
    /// handle taken out of the table.
    fn turn(&mut self, packet: &Packet, busy: &[Busy]) -> Turn {
        let (name, file) = match packet {
            Packet::Read(r) => (&r.handle, true),
            Packet::ReadDir(r) => (&r.handle, false),
            Packet::Write(w) => return self.writing_turn(&w.handle, busy),
            Packet::Close(c) => return self.closing_turn(&c.handle, busy),
            _ if self.is_lookup(packet, busy) => return Turn::Beside(None),
            _ => return Turn::Alone,
        };
        if is_busy(busy, name) {
            return Turn::Behind(name.clone());
        }
        // A handle of the other kind, a file opened to write, or no handle
        // is answered alone (an error, as it always was).
        let fits = match (self.handles.get_mut(name), file) {
            (Some(OpenHandle::File(f)), true) => !f.is_writing(),
            (Some(OpenHandle::Dir(_)), false) => true,
            _ => false,
        };
        if !fits {
            return Turn::Alone;
        }
        match self.handles.take(name) {
            Some(handle) => Turn::Beside(Some((name.clone(), handle))),
            None => Turn::Alone,
        }
    }

    /// Whose turn a WRITE on `name` is: after the requests on it; beside
    /// others for a file opened to write that no other handle of this
    /// channel is open on (its WRITEs are the only requests that reach the
    /// file until its CLOSE: a lookup or OPEN of it waits, `writes`); alone
    /// otherwise, so that requests on two handles of one file keep the
    /// order they came in, and a WRITE on a handle of the wrong kind or on
    /// none is answered (an error) in its place.
    fn writing_turn(&mut self, name: &str, busy: &[Busy]) -> Turn {
        if is_busy(busy, name) {
            return Turn::Behind(name.to_owned());
        }
        let path = match self.handles.get_mut(name) {
            Some(OpenHandle::File(f)) if f.is_writing() => f.path.clone(),
            _ => return Turn::Alone,
        };
        let others_in_table = self.handles.files().filter(|f| f.path == path).count() > 1;
        let others_out = busy.iter().any(|b| b.path.as_ref() == Some(&path));
        if others_in_table || others_out {
            return Turn::Alone;
        }
        match self.handles.take(name) {
            Some(handle) => Turn::Beside(Some((name.to_owned(), handle))),
            None => Turn::Alone,
        }
    }

    /// Whose turn a CLOSE of `name` is: alone after a WRITE in flight on
    /// it (its upload is committed once every WRITE sent before is done);
    /// after the requests on it otherwise; at once for a file opened to
    /// read or a listing; alone for a file opened to write (its upload is
    /// committed: what comes after must see it).
    fn closing_turn(&mut self, name: &str, busy: &[Busy]) -> Turn {
        if let Some(b) = busy.iter().find(|b| b.name == name) {
            return if b.writes {
                Turn::Alone
            } else {
                Turn::Behind(name.to_owned())
            };
        }
        match self.handles.get_mut(name) {
            Some(OpenHandle::File(f)) if !f.is_writing() => Turn::Now,
            Some(OpenHandle::Dir(_)) => Turn::Now,
            _ => Turn::Alone,
        }
    }

    /// Whether `packet` looks names up, changes nothing and needs no
    /// handle, so that it may run beside others: STAT and LSTAT of a file
    /// this channel is not writing (one it writes answers from its handle,
    /// `attrs.rs`), REALPATH, OPEN to read of a file this channel is not
    /// writing (one it writes waits for the WRITEs before it) and OPENDIR
    /// (but while the server stops, when they are refused).
    fn is_lookup(&mut self, packet: &Packet, busy: &[Busy]) -> bool {
        match packet {
            Packet::Stat(Stat { path, .. }) | Packet::Lstat(Lstat { path, .. }) => {
                !self.writes(path, busy)
            }
            Packet::RealPath(_) => true,
            Packet::Open(o) => {
                !super::files::opens_to_write(o.pflags)
                    && !self.handles.counted.stopping()
                    && !self.writes(&o.filename, busy)
            }
            Packet::OpenDir(_) => !self.handles.counted.stopping(),
            _ => false,
        }
    }

    /// Whether a handle of this channel, in the table or out of it for a
    /// WRITE in flight, writes the file at `text`.
    fn writes(&mut self, text: &str, busy: &[Busy]) -> bool {
        let Ok(path) = resolve(text) else {
            return false;
        };
        busy.iter()
            .any(|b| b.writes && b.path.as_ref() == Some(&path))
            || self
                .handles
                .files()
                .any(|f| f.path == path && f.is_writing())
    }

    /// A request run beside others has ended: a handle it had out goes
    /// back into the table, one it opened is added; answers its reply.
    fn returned(&mut self, done: Overlapped, busy: &mut Vec<Busy>) -> Packet {
        if let Some((name, handle)) = done.lent {
            busy.retain(|b| b.name != name);
            self.handles.put_back(name, handle);
        }
        drop(done.held);
        match done.outcome {
            Outcome::Reply(reply) => reply,
            Outcome::Opened {
                id,
                audited,
                opened,
                started,
            } => {
                let answer = opened
                    .and_then(|h| self.add_handle(h))
                    .map(|handle| Packet::Handle(Handle { id, handle }));
                self.answered(id, audited, answer, started)
            }
        }
    }

    /// [`returned`](Self::returned), and its reply written; the next
    /// request behind the handle it gave back starts. False when a reply
    /// could not be written.
    async fn send_returned<W: AsyncWrite + Unpin>(
        &mut self,
        done: Overlapped,
        queue: &mut Queue,
        writer: &mut W,
    ) -> bool {
        let name = done.lent.as_ref().map(|(name, _)| name.clone());
        let reply = self.returned(done, &mut queue.busy);
        if !self.send(writer, reply).await {
            return false;
        }
        let Some(name) = name else {
            return true;
        };
        // One request in flight ended, so there is room for the next.
        while let Some(next) = queue.behind.get_mut(&name).and_then(VecDeque::pop_front) {
            let turn = self.turn(&next.1, &queue.busy);
            // A CLOSE is answered, and so is a READ of a directory, a
            // READDIR of a file or a request on a closed handle (an error,
            // changing nothing); then the next one is looked at.
            let started = matches!(turn, Turn::Beside(_) | Turn::Behind(_));
            if !self.start(next, turn, queue, writer).await {
                return false;
            }
            if started {
                break;
            }
        }
        if queue.behind.get(&name).is_some_and(VecDeque::is_empty) {
            queue.behind.remove(&name);
        }
        true
    }

    /// Writes one reply. False when it could not be.
    async fn send<W: AsyncWrite + Unpin>(&mut self, writer: &mut W, reply: Packet) -> bool {
        let bytes = match Bytes::try_from(reply) {
            Ok(b) => b,
            Err(e) => {
                warn!(session = self.peer.id, error = %e, "cannot encode an SFTP reply");
                return false;
            }
        };
        if writer.write_all(&bytes).await.is_err() || writer.flush().await.is_err() {
            return false;
        }
        self.handles.reply_sent();
        true
    }

    /// Answers one packet (without its length).
    pub async fn handle_packet(&mut self, raw: Bytes) -> Packet {
        match self.accept(raw) {
            Incoming::Request { id, packet } => self.answer(id, packet).await,
            Incoming::Answered(reply) => reply,
        }
    }

    /// Decodes one packet (without its length): a request to answer, or
    /// the answer already (INIT, a packet that does not decode, a request
    /// before INIT).
    fn accept(&mut self, mut raw: Bytes) -> Incoming {
        // The request id, for an answer to a packet that does not decode.
        let id = raw
            .get(1..5)
            .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        let packet = match Packet::try_from(&mut raw) {
            Ok(p) => p,
            Err(e) => {
                debug!(session = self.peer.id, error = %e, "undecodable SFTP packet");
                return Incoming::Answered(status(
                    id,
                    StatusCode::BadMessage,
                    "malformed request (file names must be UTF-8)",
                ));
            }
        };
        if let Packet::Init(init) = &packet {
            if self.initialized {
                return Incoming::Answered(status(
                    0,
                    StatusCode::BadMessage,
                    "SSH_FXP_INIT sent twice",
                ));
            }
            self.initialized = true;
            debug!(
                session = self.peer.id,
                client_version = init.version,
                "SFTP started"
            );
            return Incoming::Answered(Packet::Version(super::extensions::version()));
        }
        if !self.initialized {
            return Incoming::Answered(status(
                id,
                StatusCode::BadMessage,
                "send SSH_FXP_INIT first",
            ));
        }
        Incoming::Request { id, packet }
    }

    /// Answers a decoded request (`id` as the packet carried it).
    async fn answer(&mut self, id: u32, packet: Packet) -> Packet {
        let started = Instant::now();
        let (audited, answer) = self.dispatch(packet).await;
        self.answered(id, audited, answer, started)
    }

    /// The reply to request `id` started at `started`, with its audit
    /// record.
    fn answered(
        &self,
        id: u32,
        audited: Option<Audited>,
        answer: Answer,
        started: Instant,
    ) -> Packet {
        let answer = answer.unwrap_or_else(|f| status(id, f.code, &f.message));
        if let Some(a) = audited {
            let code = match &answer {
                Packet::Status(s) => s.status_code,
                _ => StatusCode::Ok,
            };
            let took = started.elapsed();
            self.audit(a.verb, Some(&a.arg), a.path.as_deref(), code, None, took);
        }
        answer
    }

    /// Runs a request; answers what its audit record names (nothing for
    /// the requests recorded elsewhere or not at all).
    async fn dispatch(&mut self, packet: Packet) -> (Option<Audited>, Answer) {
        match packet {
            // Stopping: what is open finishes, nothing new starts.
            Packet::Open(o) if self.handles.counted.stopping() => {
                (Audited::on("OPEN", &o.filename), Err(stopping()))
            }
            Packet::OpenDir(o) if self.handles.counted.stopping() => {
                (Audited::on("OPENDIR", &o.path), Err(stopping()))
            }
            Packet::Open(o) => (Audited::on("OPEN", &o.filename), self.open(o).await),
            Packet::Close(c) => (None, self.close(c.id, &c.handle).await),
            Packet::Read(r) => (None, self.read(r).await),
            Packet::Write(w) => (None, self.write(w).await),
            Packet::OpenDir(o) => (
                Audited::on("OPENDIR", &o.path),
                self.opendir(o.id, &o.path).await,
            ),
            Packet::ReadDir(r) => (None, self.readdir(r.id, &r.handle).await),
            Packet::Remove(r) => (
                Audited::on("REMOVE", &r.filename),
                self.remove(r.id, &r.filename).await,
            ),
            Packet::MkDir(m) => (
                Audited::on("MKDIR", &m.path),
                self.mkdir(m.id, &m.path).await,
            ),
            Packet::RmDir(r) => (
                Audited::on("RMDIR", &r.path),
                self.rmdir(r.id, &r.path).await,
            ),
            Packet::Rename(r) => {
                // The record names the source as its path, both in its arg.
                let audited = Audited {
                    verb: "RENAME",
                    arg: format!("{} {}", r.oldpath, r.newpath),
                    path: Some(r.oldpath.clone()),
                };
                let answer = self.rename(r.id, &r.oldpath, &r.newpath, false).await;
                (Some(audited), answer)
            }
            Packet::Stat(s) => (None, self.stat(s.id, &s.path).await),
            Packet::Lstat(s) => (None, self.stat(s.id, &s.path).await),
            Packet::Fstat(s) => (None, self.fstat(s.id, &s.handle).await),
            Packet::SetStat(s) => (
                Audited::on("SETSTAT", &s.path),
                self.setstat(s.id, &s.path, s.attrs).await,
            ),
            Packet::FSetStat(s) => (
                Audited::on("FSETSTAT", &s.handle).map(|a| Audited { path: None, ..a }),
                self.fsetstat(s.id, &s.handle, s.attrs).await,
            ),
            Packet::RealPath(r) => (None, super::attrs::realpath(r.id, &r.path)),
            Packet::ReadLink(r) => (
                None,
                Err(SftpFailure::unsupported(format!(
                    "{}: symbolic links are not offered",
                    r.path
                ))),
            ),
            Packet::Symlink(s) => (
                Audited::on("SYMLINK", &s.linkpath),
                Err(SftpFailure::unsupported("symbolic links are not offered")),
            ),
            Packet::Extended(e) => self.extended(e).await,
            _ => (
                None,
                Err(SftpFailure::new(
                    StatusCode::BadMessage,
                    "not a request a client sends",
                )),
            ),
        }
    }

    /// Ends every open handle: uploads end as after a failure.
    async fn close_all(&mut self) {
        let open = self.handles.names();
        for h in open {
            if let Some(handle) = self.handles.take(&h) {
                if let OpenHandle::File(file) = handle {
                    let _ = self.end_file(*file, false).await;
                }
                self.handles.closed();
            }
        }
    }

    /// A new handle's name, once there is room for one.
    pub(super) fn add_handle(&mut self, handle: OpenHandle) -> Result<String, SftpFailure> {
        // Handles out of the table count too: a READ's, while an OPEN that
        // ran beside it adds its own.
        if self.handles.len() + self.handles.out >= MAX_HANDLES {
            return Err(SftpFailure::failure(format!(
                "too many open handles (at most {MAX_HANDLES}); close some first"
            )));
        }
        let name = self.next_handle.to_string();
        self.next_handle += 1;
        self.handles.add(name.clone(), handle);
        Ok(name)
    }

    /// Whether the rules allow `action` on `path`.
    pub(super) fn check(&self, action: Permission, path: &VirtualPath) -> Result<(), SftpFailure> {
        Ok(self.user.check(action, path)?)
    }

    pub(super) async fn metadata(&self, path: &VirtualPath) -> Result<Metadata, SftpFailure> {
        metadata_of(&self.user, path).await
    }

    /// The entry at `path`, or `None` when there is none.
    pub(super) async fn existing(
        &self,
        path: &VirtualPath,
    ) -> Result<Option<Metadata>, SftpFailure> {
        match self.user.storage.metadata(path).await {
            Ok(m) => Ok(Some(m)),
            Err(StorageError::NotFound) => Ok(None),
            Err(e) => Err(SessionError::storage(path, e).into()),
        }
    }

    /// Records a change of stored bytes and files for quota usage.
    pub(super) async fn record_usage(&self, bytes: i64, files: i64) {
        self.user.record_usage(&self.opts, bytes, files).await;
    }

    /// A path in the user's view as a path from the storage root.
    pub(super) fn full_path(&self, path: &VirtualPath) -> String {
        self.user.account.home.join(path).to_string()
    }

    /// One audit record; `path` is the path text the request named,
    /// `transfer` the bytes moved through a handle.
    pub(super) fn audit(
        &self,
        verb: &str,
        arg: Option<&str>,
        path: Option<&str>,
        code: StatusCode,
        transfer: Option<u64>,
        took: Duration,
    ) {
        if !self.opts.activity.audits() {
            return;
        }
        self.opts.activity.audit(&AuditRecord {
            time: rfc3339((self.opts.clock)()),
            session: self.peer.id,
            user: Some(&self.user.account.name),
            client: self.peer.remote,
            protocol: Some("sftp"),
            command: verb,
            arg,
            path: path
                .and_then(|p| VirtualPath::root().resolve(p).ok())
                .map(|p| self.full_path(&p)),
            code: code as u16,
            bytes: transfer,
            duration_ms: transfer.map(|_| u64::try_from(took.as_millis()).unwrap_or(u64::MAX)),
        });
    }
}

/// `text` resolved from the home. The packet decoder replaces bytes that
/// are not UTF-8 with U+FFFD; such a name is refused rather than stored
/// under a name the client did not send.
pub(super) fn resolve(text: &str) -> Result<VirtualPath, SftpFailure> {
    if text.contains('\u{FFFD}') {
        return Err(SftpFailure::new(
            StatusCode::BadMessage,
            "file names must be UTF-8",
        ));
    }
    VirtualPath::root()
        .resolve(text)
        .map_err(|e| SessionError::Path(e).into())
}

/// What is stored at `path` for `user` (needs nothing of a session, so
/// that requests running side by side use it too).
pub(super) async fn metadata_of(
    user: &SignedIn,
    path: &VirtualPath,
) -> Result<Metadata, SftpFailure> {
    user.storage
        .metadata(path)
        .await
        .map_err(|e| SessionError::storage(path, e).into())
}

/// The answer to an OPEN or OPENDIR while the server stops.
fn stopping() -> SftpFailure {
    SftpFailure::failure("the server is shutting down: files open now finish, no new ones open")
}

/// A status packet.
pub(super) fn status(id: u32, code: StatusCode, message: &str) -> Packet {
    Packet::Status(Status {
        id,
        status_code: code,
        error_message: message.to_owned(),
        language_tag: "en".to_owned(),
    })
}

/// `SSH_FX_OK`.
pub(super) fn ok(id: u32) -> Answer {
    Ok(status(id, StatusCode::Ok, "OK"))
}
