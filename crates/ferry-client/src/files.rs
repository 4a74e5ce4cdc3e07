//! Whole-file transfers on top of sessions: download to a local file and upload
//! from one, with resume you can trust ([`crate::resume`]), verification by size
//! and checksum, rate limits, retries after dropped connections, and downloads
//! split into byte ranges over several connections.
//!
//! A download is written to `DEST.ferry-part` and renamed to `DEST` only when it
//! is complete and checked, so a failed download never leaves a truncated file
//! under the real name, nor destroys a file that was there. Beside the partial
//! file, `DEST.ferry-part.state` records the size and modification time the
//! remote file had when the download began; `--continue` refuses to append to a
//! partial whose source has changed since.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ferry_proto::ascii::{FromWire, ToWire};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::checksum::{Checksum, hash_file_range};
use crate::error::{ClientError, Result};
use crate::remote::{RemoteDownload, RemoteSession, RemoteUpload};
use crate::resume::{FileState, ResumePlan, plan};
use crate::session::ConnectOptions;
use crate::transfer::UploadMode;
use crate::url::FtpUrl;
use crate::zero_copy;
use ferry_rate::RateLimit;

/// The chunk size of file transfers.
const CHUNK: usize = 256 * 1024;

/// How whole-file transfers behave.
#[derive(Debug, Clone, Default)]
pub struct TransferSettings {
    /// Continue a partial file instead of starting again (`-c`).
    pub resume: bool,
    /// After the transfer, compare sizes and, where the server offers one, the
    /// checksum (`--verify`).
    pub verify: bool,
    /// Shared byte-rate limit (`--limit-rate`).
    pub rate: Option<RateLimit>,
    /// TYPE A instead of TYPE I (the shell's `ascii`): sizes are not compared.
    pub ascii: bool,
    /// A batch (`mirror`, `get -r`, `put -r`, several files): files are not
    /// flushed to disk one by one. Its downloads' file systems are flushed
    /// once at its end ([`sync_file_systems`]; each file is still renamed
    /// into place only when complete), and its uploads are not asked to be
    /// flushed. A single download is flushed before its rename, and a
    /// single upload over SFTP asks the server to flush it
    /// (fsync@openssh.com, where offered).
    pub sync_at_end: bool,
    /// Copies take their source's modification time: a download the remote
    /// file's, an upload the local file's (`mirror`, whose next run compares
    /// them).
    pub keep_times: bool,
}

/// Told how a transfer advances; the command line draws progress bars with it.
pub trait Progress: Send + Sync {
    /// A transfer (or a retry of it) begins: `total` bytes in all when known, of
    /// which `already` are already there.
    fn begin(&self, _total: Option<u64>, _already: u64) {}
    /// `bytes` more were transferred.
    fn advance(&self, _bytes: u64) {}
}

/// Progress that nobody watches.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;
impl Progress for NoProgress {}

/// What a verification found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "by")]
pub enum Verification {
    /// Sizes agree; the server offers no checksum.
    Size,
    /// Sizes and checksums agree.
    Checksum { checksum: Checksum },
}

/// The outcome of one file transfer.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TransferReport {
    /// True for an upload, false for a download.
    pub upload: bool,
    pub remote: String,
    pub local: PathBuf,
    /// Bytes moved by this transfer (not counting what was resumed).
    pub bytes: u64,
    /// The size of the file at the end.
    pub size: u64,
    /// Where the transfer continued from (0: from the start).
    pub resumed_from: u64,
    /// Whether the already-present prefix was checked against a server checksum.
    pub prefix_checked: bool,
    pub verified: Option<Verification>,
    pub seconds: f64,
}

/// `DEST.ferry-part`.
pub fn partial_path(dest: &Path) -> PathBuf {
    let mut s = dest.as_os_str().to_owned();
    s.push(".ferry-part");
    PathBuf::from(s)
}

fn segments_path(dest: &Path) -> PathBuf {
    let mut s = dest.as_os_str().to_owned();
    s.push(".ferry-segments");
    PathBuf::from(s)
}

fn state_path(dest: &Path) -> PathBuf {
    let mut s = dest.as_os_str().to_owned();
    s.push(".ferry-part.state");
    PathBuf::from(s)
}

async fn read_state(dest: &Path) -> Option<FileState> {
    let text = tokio::fs::read_to_string(state_path(dest)).await.ok()?;
    serde_json::from_str(&text).ok()
}

/// Opens the file a download is written into, positioned at `offset`
/// (truncated when it starts from 0), after recording the source's state in
/// the state file `record` names. One trip to the blocking pool: on their
/// own, these steps cost a small file more than its bytes.
async fn open_working(
    working: &Path,
    offset: u64,
    record: Option<(PathBuf, FileState)>,
) -> Result<std::fs::File> {
    let working = working.to_owned();
    blocking(move || {
        use std::io::Seek;
        if let Some((path, state)) = record {
            let text = serde_json::to_string(&state).unwrap_or_default();
            std::fs::write(&path, text).map_err(|e| ClientError::local(path, e))?;
        }
        let local = |e| ClientError::local(&working, e);
        let mut file = std::fs::File::options()
            .create(true)
            .write(true)
            .truncate(offset == 0)
            .open(&working)
            .map_err(local)?;
        file.seek(std::io::SeekFrom::Start(offset)).map_err(local)?;
        Ok(file)
    })
    .await
}

/// Closes the file a download was written into, after giving it `modified`
/// and flushing it to disk if asked: one trip to the blocking pool, none
/// when there is nothing to do.
async fn close_working(
    file: std::fs::File,
    working: &Path,
    modified: Option<time::OffsetDateTime>,
    sync: bool,
) -> Result<()> {
    if modified.is_none() && !sync {
        return Ok(());
    }
    let working = working.to_owned();
    blocking(move || {
        let local = |e| ClientError::local(&working, e);
        if let Some(t) = modified {
            file.set_modified(t.into()).map_err(local)?;
        }
        if sync {
            file.sync_all().map_err(local)?;
        }
        Ok(())
    })
    .await
}

/// Puts a complete download in place: `working` renamed to `dest` (unless
/// it is `dest`, continued with `-c`) and the state file removed. One trip
/// to the blocking pool.
async fn publish(working: &Path, dest: &Path) -> Result<()> {
    let (working, dest) = (working.to_owned(), dest.to_owned());
    blocking(move || {
        if working != dest {
            std::fs::rename(&working, &dest).map_err(|e| ClientError::local(&dest, e))?;
        }
        let _ = std::fs::remove_file(state_path(&dest));
        Ok(())
    })
    .await
}

/// Runs local file work on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ClientError::Io(std::io::Error::other(e)))?
}

async fn local_len(path: &Path) -> Result<Option<u64>> {
    match tokio::fs::metadata(path).await {
        Ok(m) => Ok(Some(m.len())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ClientError::local(path, e)),
    }
}

/// Checks that bytes `0..len` of `local` are those of `remote` on the server, where
/// the server can hash a range. `Ok(false)`: the server cannot tell.
async fn check_prefix(
    session: &mut RemoteSession,
    remote: &str,
    local: &Path,
    len: u64,
) -> Result<bool> {
    let Some(theirs) = session.checksum(remote, Some((0, len))).await? else {
        return Ok(false);
    };
    let ours = hash_file_range(local, theirs.algorithm, 0, len).await?;
    if ours != theirs {
        return Err(ClientError::ResumeRefused {
            path: remote.to_owned(),
            reason: format!(
                "the first {len} bytes differ between here and the server ({} {} here, {} there)",
                ours.algorithm.name(),
                ours.hex,
                theirs.hex
            ),
        });
    }
    Ok(true)
}

/// Compares a finished file with the remote one: size, then checksum if offered.
async fn verify(
    session: &mut RemoteSession,
    remote: &str,
    local: &Path,
    size: u64,
) -> Result<Verification> {
    let failed = |reason: String| ClientError::VerifyFailed {
        path: remote.to_owned(),
        reason,
    };
    if let Some(theirs) = session.size(remote).await?
        && theirs != size
    {
        return Err(failed(format!("{size} bytes here, {theirs} on the server")));
    }
    match session.checksum(remote, None).await? {
        Some(theirs) => {
            let ours = hash_file_range(local, theirs.algorithm, 0, size).await?;
            if ours != theirs {
                return Err(failed(format!(
                    "{} {} here, {} on the server",
                    ours.algorithm.name(),
                    ours.hex,
                    theirs.hex
                )));
            }
            Ok(Verification::Checksum { checksum: ours })
        }
        None => Ok(Verification::Size),
    }
}

/// Downloads `remote` to `dest`, through `DEST.ferry-part`.
pub async fn download_file(
    session: &mut RemoteSession,
    remote: &str,
    dest: &Path,
    settings: &TransferSettings,
    progress: &dyn Progress,
) -> Result<TransferReport> {
    let started = Instant::now();
    session.set_binary(!settings.ascii).await?;
    let state = if settings.ascii {
        None
    } else {
        session.file_state(remote).await?
    };
    let part = partial_path(dest);
    // What is already here: a partial file, or (with -c) a file under the real
    // name left by another program.
    let (working, partial) = if settings.resume {
        match local_len(&part).await? {
            Some(n) => (part.clone(), n),
            None => match local_len(dest).await? {
                Some(n) => (dest.to_owned(), n),
                None => (part.clone(), 0),
            },
        }
    } else {
        (part.clone(), 0)
    };
    let recorded = if working == part && partial > 0 {
        read_state(dest).await
    } else {
        None
    };
    let mut prefix_checked = false;
    let offset = match (partial, state) {
        (0, _) => 0,
        (_, None) => {
            return Err(ClientError::ResumeRefused {
                path: remote.to_owned(),
                reason: "the server does not report the file's size (SIZE), so a partial \
                         file cannot be matched to it"
                    .to_owned(),
            });
        }
        (_, Some(now)) => match plan(partial, now, recorded) {
            ResumePlan::Start => 0,
            ResumePlan::Continue(_) | ResumePlan::Complete => {
                prefix_checked = check_prefix(session, remote, &working, partial).await?;
                partial
            }
            ResumePlan::Refuse(reason) => {
                return Err(ClientError::ResumeRefused {
                    path: remote.to_owned(),
                    reason,
                });
            }
        },
    };
    progress.begin(state.map(|s| s.size), offset);
    let mut bytes = 0u64;
    let complete = state.is_some_and(|s| s.size == offset && offset > 0);
    if !complete {
        // The server accepts the transfer first, so a refusal (no such file)
        // leaves no partial file behind.
        let mut download = session.download(remote, offset).await?;
        if let Some(s) = &state {
            download.stop_at(s.size);
        }
        let record = state.map(|s| (state_path(dest), s));
        let file = match open_working(&working, offset, record).await {
            Ok(f) => f,
            Err(e) => {
                let _ = download.abort().await;
                return Err(e);
            }
        };
        // TYPE I over plain TCP with no rate limit: the kernel moves the
        // bytes on a thread of their own (crate::zero_copy).
        let file = if !settings.ascii
            && settings.rate.is_none()
            && let RemoteDownload::Ftp(plain) = &mut download
            && plain.is_plain()
        {
            let moved =
                zero_copy::receive_into_file(plain, &working, file, offset, None, progress).await;
            bytes = moved.bytes;
            moved.end?
        } else {
            let mut file = tokio::fs::File::from_std(file);
            bytes = receive_through_buffer(&mut download, &mut file, &working, settings, progress)
                .await?;
            file.into_std().await
        };
        let modified = state
            .and_then(|s| s.modified)
            .filter(|_| settings.keep_times);
        close_working(file, &working, modified, !settings.sync_at_end).await?;
        download.finish().await?;
    }
    let size = offset + bytes;
    if let Some(s) = state
        && s.size != size
    {
        return Err(ClientError::VerifyFailed {
            path: remote.to_owned(),
            reason: format!(
                "received {size} bytes of {}; the partial file is kept for --continue",
                s.size
            ),
        });
    }
    let verified = if settings.verify && !settings.ascii {
        Some(verify(session, remote, &working, size).await?)
    } else {
        None
    };
    publish(&working, dest).await?;
    Ok(TransferReport {
        upload: false,
        remote: remote.to_owned(),
        local: dest.to_owned(),
        bytes,
        size,
        resumed_from: offset,
        prefix_checked,
        verified,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The general download loop: each piece read into a buffer on the runtime
/// and written through tokio's file at `offset` on; with TYPE A, CRLF
/// becomes LF; with a rate limit, paced. Returns the bytes stored.
async fn receive_through_buffer(
    download: &mut RemoteDownload<'_>,
    file: &mut tokio::fs::File,
    working: &Path,
    settings: &TransferSettings,
    progress: &dyn Progress,
) -> Result<u64> {
    let local = |e| ClientError::local(working, e);
    let mut bytes = 0u64;
    let mut buf = vec![0u8; CHUNK];
    // TYPE A: CRLF on the wire, LF here (RFC 959 §3.1.1.1).
    let mut text = settings.ascii.then(|| (FromWire::default(), Vec::new()));
    loop {
        let n = download.read_chunk(&mut buf).await?;
        if n == 0 {
            break;
        }
        if let Some(rate) = &settings.rate {
            rate.wait_for(n).await;
        }
        let local_bytes = match &mut text {
            Some((conv, out)) => {
                out.clear();
                conv.convert(&buf[..n], out);
                &out[..]
            }
            None => &buf[..n],
        };
        file.write_all(local_bytes).await.map_err(local)?;
        bytes += local_bytes.len() as u64;
        progress.advance(n as u64);
    }
    if let Some((conv, out)) = &mut text {
        out.clear();
        conv.finish(out);
        file.write_all(out).await.map_err(local)?;
        bytes += out.len() as u64;
    }
    file.flush().await.map_err(local)?;
    Ok(bytes)
}

/// Opens a local file to upload, with its size and modification time: one
/// trip to the blocking pool.
async fn open_source(path: &Path) -> Result<(std::fs::File, FileState)> {
    let path = path.to_owned();
    blocking(move || {
        let local = |e| ClientError::local(&path, e);
        let file = std::fs::File::open(&path).map_err(local)?;
        let state = state_of(&file.metadata().map_err(local)?);
        Ok((file, state))
    })
    .await
}

/// The local file's size and modification time.
pub async fn local_state(path: &Path) -> Result<FileState> {
    let meta = tokio::fs::metadata(path)
        .await
        .map_err(|e| ClientError::local(path, e))?;
    Ok(state_of(&meta))
}

/// A local file's size and modification time, from its metadata.
fn state_of(meta: &std::fs::Metadata) -> FileState {
    FileState {
        size: meta.len(),
        modified: meta.modified().ok().map(time::OffsetDateTime::from),
    }
}

/// Uploads `local` to `remote`. With `settings.resume`, continues a shorter
/// remote file by APPE after checking its bytes where the server can hash a
/// range; `recorded` is the local file as it was when an earlier attempt began,
/// so a source that changed in between is refused.
pub async fn upload_file(
    session: &mut RemoteSession,
    local: &Path,
    remote: &str,
    settings: &TransferSettings,
    recorded: Option<FileState>,
    progress: &dyn Progress,
) -> Result<TransferReport> {
    let started = Instant::now();
    session.set_binary(!settings.ascii).await?;
    let (file, source) = open_source(local).await?;
    let mut prefix_checked = false;
    let offset = if settings.resume && !settings.ascii {
        let there = match session.size(remote).await {
            Ok(n) => n.unwrap_or(0),
            Err(e) if e.is_not_found() => 0,
            Err(e) => return Err(e),
        };
        match plan(there, source, recorded) {
            ResumePlan::Start => 0,
            ResumePlan::Continue(n) => {
                prefix_checked = check_prefix(session, remote, local, n).await?;
                n
            }
            ResumePlan::Complete => {
                prefix_checked = check_prefix(session, remote, local, there).await?;
                there
            }
            ResumePlan::Refuse(reason) => {
                return Err(ClientError::ResumeRefused {
                    path: remote.to_owned(),
                    reason,
                });
            }
        }
    } else {
        0
    };
    progress.begin(Some(source.size), offset);
    let mut bytes = 0u64;
    if offset < source.size || offset == 0 {
        let mut file = file;
        if offset > 0 {
            // Moves the file position only: no disk access to wait for.
            std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(offset))
                .map_err(|e| ClientError::local(local, e))?;
        }
        let mode = if offset > 0 {
            UploadMode::Append
        } else {
            UploadMode::Replace
        };
        let mut upload = session.upload(remote, mode).await?;
        // TYPE I over plain TCP with no rate limit: the kernel moves the
        // bytes on a thread of their own (crate::zero_copy).
        if !settings.ascii
            && settings.rate.is_none()
            && let RemoteUpload::Ftp(plain) = &mut upload
            && plain.is_plain()
        {
            let moved = zero_copy::send_from_file(plain, local, file, offset, progress).await;
            bytes = moved.bytes;
            moved.end?;
        } else {
            let mut file = tokio::fs::File::from_std(file);
            bytes = send_through_buffer(&mut upload, &mut file, local, settings, progress).await?;
        }
        let time = source.modified.filter(|_| settings.keep_times);
        let set_at_close = time.is_some_and(|t| upload.set_time_at_close(t));
        if !settings.sync_at_end {
            upload.ask_durable();
        }
        upload.finish().await?;
        // Over FTP, MFMT once the file is stored. A server that cannot set
        // times leaves the time of the upload.
        if let Some(t) = time
            && !set_at_close
        {
            let _ = session.set_modified(remote, t).await;
        }
    }
    let size = offset + bytes;
    let verified = if settings.verify && !settings.ascii {
        Some(verify(session, remote, local, size).await?)
    } else {
        None
    };
    Ok(TransferReport {
        upload: true,
        remote: remote.to_owned(),
        local: local.to_owned(),
        bytes,
        size,
        resumed_from: offset,
        prefix_checked,
        verified,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The general upload loop: each piece read through tokio's file from
/// `offset` on and written on the runtime; with TYPE A, LF becomes CRLF; with
/// a rate limit, paced. Returns the bytes read from the file.
async fn send_through_buffer(
    upload: &mut RemoteUpload<'_>,
    file: &mut tokio::fs::File,
    local: &Path,
    settings: &TransferSettings,
    progress: &dyn Progress,
) -> Result<u64> {
    let local_err = |e| ClientError::local(local, e);
    let mut bytes = 0u64;
    let mut buf = vec![0u8; CHUNK];
    // TYPE A: LF here, CRLF on the wire.
    let mut text = settings.ascii.then(|| (ToWire::default(), Vec::new()));
    loop {
        let n = file.read(&mut buf).await.map_err(local_err)?;
        if n == 0 {
            break;
        }
        if let Some(rate) = &settings.rate {
            rate.wait_for(n).await;
        }
        match &mut text {
            Some((conv, out)) => {
                out.clear();
                conv.convert(&buf[..n], out);
                upload.write_chunk(out).await?;
            }
            None => upload.write_chunk(&buf[..n]).await?,
        }
        bytes += n as u64;
        progress.advance(n as u64);
    }
    Ok(bytes)
}

/// Where to connect and how: enough to open new sessions for retries and for
/// parallel and segmented transfers.
#[derive(Debug, Clone)]
pub struct Remote {
    /// Server and credentials (the path is not used).
    pub url: FtpUrl,
    pub options: ConnectOptions,
}

/// Flushes the file systems that hold `paths` to disk, each once (syncfs):
/// the end of a batch of downloads made with [`TransferSettings::sync_at_end`],
/// which is one flush where a flush per file costs a small file more than its
/// transfer.
pub async fn sync_file_systems(paths: Vec<PathBuf>) -> Result<()> {
    blocking(move || {
        use std::os::unix::fs::MetadataExt;
        let mut done = std::collections::HashSet::new();
        for path in paths {
            let file = std::fs::File::open(&path).map_err(|e| ClientError::local(&path, e))?;
            let device = file
                .metadata()
                .map_err(|e| ClientError::local(&path, e))?
                .dev();
            if done.insert(device) {
                rustix::fs::syncfs(&file)
                    .map_err(|e| ClientError::local(&path, std::io::Error::from(e)))?;
            }
        }
        Ok(())
    })
    .await
}

impl Remote {
    /// Connects and logs in (FTP or SFTP, by the URL's scheme).
    pub async fn open(&self) -> Result<RemoteSession> {
        RemoteSession::open(&self.url, &self.options).await
    }
}

/// One connection that transfers file after file, reconnecting and resuming
/// after a dropped connection, up to `retries` times per file with doubling
/// waits.
#[derive(Debug)]
pub struct Worker {
    remote: Remote,
    session: Option<RemoteSession>,
    pub retries: u32,
    pub backoff: Duration,
}

impl Worker {
    pub fn new(remote: Remote, retries: u32) -> Self {
        Worker {
            remote,
            session: None,
            retries,
            backoff: Duration::from_millis(500),
        }
    }

    /// A worker that starts with a session already open (no second login).
    pub fn with_session(remote: Remote, session: RemoteSession, retries: u32) -> Self {
        Worker {
            session: Some(session),
            ..Worker::new(remote, retries)
        }
    }

    /// The session, connecting first if there is none.
    pub async fn session(&mut self) -> Result<&mut RemoteSession> {
        if self.session.is_none() {
            self.session = Some(self.remote.open().await?);
        }
        match self.session.as_mut() {
            Some(s) => Ok(s),
            None => Err(ClientError::Closed),
        }
    }

    /// After a failed attempt: when the failure is transient and retries are
    /// left, drops the session, waits (doubling each time) and returns `Ok` so
    /// the caller tries again, resuming; otherwise returns the error.
    async fn retry_after(&mut self, error: ClientError, tries: &mut u32) -> Result<()> {
        if !error.is_transient() || *tries >= self.retries {
            return Err(error);
        }
        *tries += 1;
        tracing::warn!("{error}; retry {tries} of {}", self.retries);
        self.session = None;
        tokio::time::sleep(self.backoff * 2u32.saturating_pow(*tries - 1)).await;
        Ok(())
    }

    /// [`download_file`] with retries that resume.
    pub async fn get(
        &mut self,
        remote: &str,
        dest: &Path,
        settings: &TransferSettings,
        progress: &dyn Progress,
    ) -> Result<TransferReport> {
        let mut tries = 0;
        loop {
            let mut s = settings.clone();
            s.resume |= tries > 0;
            let result = match self.session().await {
                Ok(session) => download_file(session, remote, dest, &s, progress).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(report) => return Ok(report),
                Err(e) => self.retry_after(e, &mut tries).await?,
            }
        }
    }

    /// [`upload_file`] with retries that resume (refused if the local file
    /// changed in between).
    pub async fn put(
        &mut self,
        local: &Path,
        remote: &str,
        settings: &TransferSettings,
        progress: &dyn Progress,
    ) -> Result<TransferReport> {
        // What a retry checks the file against, when there can be one.
        let first = if self.retries > 0 {
            Some(local_state(local).await?)
        } else {
            None
        };
        let mut tries = 0;
        loop {
            let mut s = settings.clone();
            s.resume |= tries > 0;
            let recorded = first.filter(|_| tries > 0);
            let result = match self.session().await {
                Ok(session) => upload_file(session, local, remote, &s, recorded, progress).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(report) => return Ok(report),
                Err(e) => self.retry_after(e, &mut tries).await?,
            }
        }
    }

    /// QUIT, if connected.
    pub async fn quit(mut self) {
        if let Some(s) = self.session.take() {
            let _ = s.quit().await;
        }
    }
}

/// Downloads one file as `segments` byte ranges over as many connections, each
/// written in place in `DEST.ferry-part`, then checked and renamed. Each range
/// is retried on its own after a dropped connection, from where it stopped.
pub async fn download_segmented(
    remote: &Remote,
    path: &str,
    dest: &Path,
    segments: u32,
    retries: u32,
    settings: &TransferSettings,
    progress: &(dyn Progress + 'static),
) -> Result<TransferReport>
where
{
    let started = Instant::now();
    let mut first = remote.open().await?;
    let Some(state) = first.file_state(path).await? else {
        return Err(ClientError::Unsupported(
            "the server does not report file sizes (SIZE), so the file cannot be split".to_owned(),
        ));
    };
    let segments = u64::from(segments.max(1));
    // Ranges under 1 MiB are not worth a connection.
    if segments == 1 || state.size < segments * (1 << 20) {
        let report = download_file(&mut first, path, dest, settings, progress).await;
        let _ = first.quit().await;
        return report;
    }
    // Not NAME.ferry-part: the ranges fill this file in any order, so it has
    // holes until the end and must never be taken for a resumable prefix.
    let part = segments_path(dest);
    {
        let file = tokio::fs::File::create(&part)
            .await
            .map_err(|e| ClientError::local(&part, e))?;
        file.set_len(state.size)
            .await
            .map_err(|e| ClientError::local(&part, e))?;
    }

    progress.begin(Some(state.size), 0);
    let per = state.size.div_ceil(segments);
    let ranges: Vec<(u64, u64)> = (0..segments)
        .map(|i| (i * per, ((i + 1) * per).min(state.size)))
        .filter(|(a, b)| a < b)
        .collect();
    let mut sessions = vec![Some(first)];
    sessions.resize_with(ranges.len(), || None);
    let results = futures_util::future::join_all(ranges.into_iter().zip(sessions).map(
        |((start, end), session)| {
            let remote = remote.clone();
            let part = part.clone();
            let rate = settings.rate.clone();
            let path = path.to_owned();
            async move {
                fetch_range(
                    &remote,
                    session,
                    &path,
                    &part,
                    start,
                    end,
                    retries,
                    rate.as_ref(),
                    progress,
                )
                .await
            }
        },
    ))
    .await;
    if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
        let _ = tokio::fs::remove_file(&part).await;
        return Err(e);
    }

    let mut checker = remote.open().await?;
    let verified = if settings.verify {
        Some(verify(&mut checker, path, &part, state.size).await?)
    } else {
        None
    };
    let _ = checker.quit().await;
    tokio::fs::rename(&part, dest)
        .await
        .map_err(|e| ClientError::local(dest, e))?;

    Ok(TransferReport {
        upload: false,
        remote: path.to_owned(),
        local: dest.to_owned(),
        bytes: state.size,
        size: state.size,
        resumed_from: 0,
        prefix_checked: false,
        verified,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Downloads bytes `start..end` of `path` into the same range of `part`.
#[allow(clippy::too_many_arguments)]
async fn fetch_range(
    remote: &Remote,
    mut session: Option<RemoteSession>,
    path: &str,
    part: &Path,
    start: u64,
    end: u64,
    retries: u32,
    rate: Option<&RateLimit>,
    progress: &dyn Progress,
) -> Result<()> {
    let mut done = 0u64;
    let mut tries = 0u32;
    loop {
        let result = async {
            let s = match session.as_mut() {
                Some(s) => s,
                None => session.insert(remote.open().await?),
            };
            let local = |e| ClientError::local(part, e);
            let mut file = tokio::fs::OpenOptions::new()
                .write(true)
                .open(part)
                .await
                .map_err(local)?;
            file.seek(std::io::SeekFrom::Start(start + done))
                .await
                .map_err(local)?;
            let mut download = s.download(path, start + done).await?;
            if rate.is_none()
                && let RemoteDownload::Ftp(plain) = &mut download
                && plain.is_plain()
            {
                let into = file.into_std().await;
                let moved = zero_copy::receive_into_file(
                    plain,
                    part,
                    into,
                    start + done,
                    Some(end - start - done),
                    progress,
                )
                .await;
                // Counted before the error, if any: a retry goes on from there.
                done += moved.bytes;
                file = tokio::fs::File::from_std(moved.end?);
            }
            let mut buf = vec![0u8; CHUNK];
            while start + done < end {
                let want = usize::try_from(end - start - done)
                    .unwrap_or(CHUNK)
                    .min(CHUNK);
                let n = download.read_chunk(&mut buf[..want]).await?;
                if n == 0 {
                    break;
                }
                if let Some(rate) = rate {
                    rate.wait_for(n).await;
                }
                file.write_all(&buf[..n]).await.map_err(local)?;
                done += n as u64;
                progress.advance(n as u64);
            }
            file.flush().await.map_err(local)?;
            if start + done < end {
                download.finish().await?;
                return Err(ClientError::VerifyFailed {
                    path: path.to_owned(),
                    reason: format!("the range {start}-{end} ended early at {}", start + done),
                });
            }
            // This range is done; the server may still be sending the rest of the
            // file, so the transfer is aborted unless this was the last range.
            download.abort().await
        }
        .await;
        match result {
            Ok(()) => {
                if let Some(s) = session.take() {
                    let _ = s.quit().await;
                }
                return Ok(());
            }
            Err(e) if e.is_transient() && tries < retries => {
                tries += 1;
                tracing::warn!("range {start}-{end}: {e}; retry {tries} of {retries}");
                session = None;
                tokio::time::sleep(Duration::from_millis(500) * 2u32.saturating_pow(tries - 1))
                    .await;
            }
            Err(e) => return Err(e),
        }
    }
}
