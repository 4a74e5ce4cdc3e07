//! S3-compatible object storage ([`ObjectStorage`]): the homes live as keys
//! under a prefix of one bucket, so that any number of ferry servers can serve
//! the same files (docs/storage.md).
//!
//! A bucket has keys, not directories; this backend gives FTP the tree it
//! expects:
//!
//! - A path is a key: the home's prefix, then the path's names joined by `/`
//!   (each name percent-encoded where S3 advises against a character, as
//!   `object_store` does; listings decode them).
//! - A directory is a key prefix. `MKD` stores an empty marker object
//!   [`DIR_MARKER`] in it, so that an empty directory exists; removing the last
//!   file of a directory puts the marker first, so the directory stays.
//!   Listings never show the marker, and no file may take its name.
//! - An upload goes to the bucket as one object, in parts of
//!   [`PART_SIZE`] (multipart upload), and becomes visible whole when it
//!   commits: until then the file it replaces is untouched (S3 completes an
//!   upload atomically). An aborted upload of a new file keeps what arrived,
//!   as on local disk, so that the client can resume it.
//! - S3 cannot write into an object: `APPE` and `REST` + `STOR` upload a new
//!   object that starts with the kept bytes of the old one, read back from the
//!   bucket, then the new bytes. The time this takes grows with the kept part.
//! - A rename is a copy and a delete; a directory's is one per object under it
//!   (not atomic: a failure midway leaves some objects moved, none lost).
//! - Modification times are S3's (the time of the upload); `MFMT` and `SITE
//!   CHMOD` are refused. Directories show the Unix epoch as their time.
//! - A listing holds the whole directory in memory (S3 lists a prefix in pages
//!   of 1,000 that `object_store` gathers), unlike the local backend's.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::path::Path as Key;
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, GetRange, ObjectMeta, ObjectStore, ObjectStoreExt,
    PutPayload, RetryConfig,
};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::{
    DirEntry, DirStream, FileKind, FileReader, Metadata, Storage, StorageBackend, StorageError,
    Upload, VirtualPath, WriteMode,
};

/// The empty object that keeps a directory in existence.
pub const DIR_MARKER: &str = ".ferry-dir";

/// The size of an upload's parts (S3 wants at least 5 MiB but for the last).
pub const PART_SIZE: usize = 8 << 20;

/// How many parts of one upload may be on their way at once: an upload holds
/// up to this many parts in memory (`object_store`'s default is 8, 64 MiB).
pub const PARTS_IN_FLIGHT: usize = 2;

/// How many entries a listing hands out at a time.
const BATCH: usize = 1000;

/// Where a bucket is and how to sign in to it (`[storage]` with `backend = "s3"`).
#[derive(Debug, Clone, Default)]
pub struct S3Settings {
    pub bucket: String,
    /// An S3-compatible server (`http://` allowed); AWS when `None`.
    pub endpoint: Option<String>,
    pub region: String,
    /// The key prefix the homes live under ("" for the bucket's top).
    pub prefix: String,
    /// Access key and secret; `AWS_*` environment variables when `None`.
    pub credentials: Option<(String, String)>,
    /// How long one request may take, retries included.
    pub timeout: Duration,
}

/// What [`ObjectStorage::probe`] found wrong with the bucket.
#[derive(Debug, thiserror::Error)]
pub enum BucketProblem {
    /// The bucket does not exist (S3's `NoSuchBucket`).
    #[error("the bucket does not exist: {0}")]
    Missing(String),
    /// The credentials are refused (`AccessDenied`, `InvalidAccessKeyId`,
    /// `SignatureDoesNotMatch`, or a 401 or 403).
    #[error("the bucket refuses these credentials: {0}")]
    Refused(String),
    /// The storage service could not be reached or failed: perhaps for a
    /// moment, so the server starts and logins are answered 421 meanwhile.
    #[error("the storage service cannot be reached: {0}")]
    Unreachable(String),
}

impl BucketProblem {
    /// Sorts a failed listing. `object_store` hands a listing's failure
    /// over as a generic error whose text holds S3's answer, so the S3 error
    /// code (`<Code>NoSuchBucket</Code>`, a stable part of S3's API) decides,
    /// else the HTTP status.
    fn of(e: object_store::Error) -> Self {
        let text = e.to_string();
        let code = s3_error_code(&text);
        let shown = match code {
            Some((code, message)) => format!("{code}: {message}"),
            None => text.clone(),
        };
        match (&e, code.map(|(c, _)| c)) {
            (object_store::Error::NotFound { .. }, _) | (_, Some("NoSuchBucket")) => {
                BucketProblem::Missing(shown)
            }
            (
                object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. },
                _,
            )
            | (
                _,
                Some(
                    "AccessDenied"
                    | "InvalidAccessKeyId"
                    | "SignatureDoesNotMatch"
                    | "ExpiredToken"
                    | "InvalidToken"
                    | "AllAccessDisabled",
                ),
            ) => BucketProblem::Refused(shown),
            _ if text.contains("status code: 401") || text.contains("status code: 403") => {
                BucketProblem::Refused(shown)
            }
            _ => BucketProblem::Unreachable(shown),
        }
    }
}

/// The `<Code>` and `<Message>` of an S3 error document (REST API, "Error
/// responses") found in `text`.
fn s3_error_code(text: &str) -> Option<(&str, &str)> {
    let between = |open: &str, close: &str| {
        let start = text.find(open)? + open.len();
        let len = text[start..].find(close)?;
        Some(&text[start..start + len])
    };
    let code = between("<Code>", "</Code>")?;
    Some((code, between("<Message>", "</Message>").unwrap_or("")))
}

/// An S3-compatible bucket holding the homes under a key prefix.
#[derive(Debug, Clone)]
pub struct ObjectStorage {
    store: Arc<dyn ObjectStore>,
    prefix: Vec<String>,
}

impl ObjectStorage {
    /// The bucket described by `settings`. Nothing is sent until a home is opened.
    pub fn s3(settings: &S3Settings) -> Result<Self, StorageError> {
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&settings.bucket)
            .with_region(&settings.region)
            // A request that fails is tried again a few times within the
            // timeout, not object_store's ten times over three minutes: an
            // FTP client waits on each.
            .with_retry(RetryConfig {
                backoff: BackoffConfig::default(),
                max_retries: 3,
                retry_timeout: settings.timeout,
            })
            .with_client_options(
                ClientOptions::new()
                    .with_timeout(settings.timeout)
                    .with_connect_timeout(settings.timeout.min(Duration::from_secs(5))),
            );
        if let Some(endpoint) = &settings.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        if let Some((key, secret)) = &settings.credentials {
            builder = builder
                .with_access_key_id(key)
                .with_secret_access_key(secret);
        }
        let store = builder.build().map_err(|e| {
            StorageError::Io(io::Error::other(format!("the S3 bucket's settings: {e}")))
        })?;
        Ok(Self::new(Arc::new(store), &settings.prefix))
    }

    /// Asks the bucket for the first keys under the prefix, as `ferry serve`
    /// does at start: a bucket that does not exist or refuses the
    /// credentials is a mistake in the configuration, told at once rather
    /// than at the first login.
    pub async fn probe(&self) -> Result<(), BucketProblem> {
        let prefix = Key::from_iter(self.prefix.iter().map(String::as_str));
        let first = self
            .store
            .list((!prefix.as_ref().is_empty()).then_some(&prefix))
            .next()
            .await;
        match first {
            None | Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(BucketProblem::of(e)),
        }
    }

    /// Any object store (tests use `object_store`'s in-memory one).
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str) -> Self {
        ObjectStorage {
            store,
            prefix: prefix
                .split('/')
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect(),
        }
    }
}

#[async_trait]
impl StorageBackend for ObjectStorage {
    async fn open_home(
        &self,
        home: &VirtualPath,
        create: bool,
    ) -> Result<Arc<dyn Storage>, StorageError> {
        let mut base = self.prefix.clone();
        base.extend(home.components().map(str::to_owned));
        let view = ObjectHome {
            store: self.store.clone(),
            base,
        };
        let root = VirtualPath::root();
        if !view.is_dir(&root).await? {
            if !create {
                return Err(StorageError::NotFound);
            }
            view.put_marker(&root).await?;
        }
        Ok(Arc::new(view))
    }
}

/// One home in the bucket.
#[derive(Debug)]
struct ObjectHome {
    store: Arc<dyn ObjectStore>,
    /// The home's key: the prefix's names, then the home's.
    base: Vec<String>,
}

impl ObjectHome {
    fn key(&self, path: &VirtualPath) -> Key {
        Key::from_iter(
            self.base
                .iter()
                .map(String::as_str)
                .chain(path.components()),
        )
    }

    fn marker(&self, dir: &VirtualPath) -> Key {
        self.key(dir).join(DIR_MARKER)
    }

    /// Whether anything lives under `dir`'s prefix (its marker counts).
    async fn is_dir(&self, dir: &VirtualPath) -> Result<bool, StorageError> {
        let prefix = self.key(dir);
        let prefix = (!prefix.as_ref().is_empty()).then_some(prefix);
        let mut listing = self.store.list(prefix.as_ref());
        match listing.next().await {
            Some(Ok(_)) => Ok(true),
            Some(Err(e)) => Err(map_error(e)),
            None => Ok(false),
        }
    }

    /// The file at `path`, if there is one.
    async fn file(&self, path: &VirtualPath) -> Result<Option<ObjectMeta>, StorageError> {
        if path.is_root() {
            return Ok(None);
        }
        match self.store.head(&self.key(path)).await {
            Ok(meta) => Ok(Some(meta)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(map_error(e)),
        }
    }

    async fn put_marker(&self, dir: &VirtualPath) -> Result<(), StorageError> {
        self.store
            .put(&self.marker(dir), PutPayload::new())
            .await
            .map(drop)
            .map_err(map_error)
    }

    /// Keeps `path`'s parent directory in existence once `path` is gone.
    async fn keep_parent(&self, path: &VirtualPath) -> Result<(), StorageError> {
        match path.parent() {
            Some(parent) if !parent.is_root() => self.put_marker(&parent).await,
            _ => Ok(()),
        }
    }

    /// Fails unless `path`'s parent is a directory.
    async fn parent_must_be_a_dir(&self, path: &VirtualPath) -> Result<(), StorageError> {
        match path.parent() {
            Some(parent) if !parent.is_root() => {
                if self.file(&parent).await?.is_some() {
                    Err(StorageError::NotADirectory)
                } else if self.is_dir(&parent).await? {
                    Ok(())
                } else {
                    Err(StorageError::NotFound)
                }
            }
            _ => Ok(()),
        }
    }
}

fn reserved(path: &VirtualPath) -> Result<(), StorageError> {
    if path.components().any(|name| name == DIR_MARKER) {
        return Err(StorageError::Invalid(
            "the name .ferry-dir is reserved by the storage backend",
        ));
    }
    Ok(())
}

/// What a session is told of a failed request; the cause of anything but a
/// missing or existing object goes to the log (it names the endpoint and the
/// bucket, which clients need not see).
fn map_error(e: object_store::Error) -> StorageError {
    match e {
        object_store::Error::NotFound { .. } => StorageError::NotFound,
        object_store::Error::AlreadyExists { .. } => StorageError::AlreadyExists,
        other => {
            tracing::warn!(error = %other, "the S3 request failed");
            StorageError::Unavailable
        }
    }
}

fn io_error(e: object_store::Error) -> io::Error {
    match e {
        object_store::Error::NotFound { .. } => io::Error::from(io::ErrorKind::NotFound),
        other => io::Error::other(format!("object storage: {other}")),
    }
}

fn unique(key: &Key) -> (u64, u64) {
    let mut h = DefaultHasher::new();
    key.as_ref().hash(&mut h);
    (0, h.finish())
}

fn file_metadata(meta: &ObjectMeta) -> Metadata {
    Metadata {
        kind: FileKind::File,
        size: meta.size,
        modified: meta.last_modified.into(),
        mode: 0o644,
        links: 1,
        unique: unique(&meta.location),
    }
}

fn dir_metadata(key: &Key) -> Metadata {
    Metadata {
        kind: FileKind::Dir,
        size: 0,
        modified: UNIX_EPOCH,
        mode: 0o755,
        links: 2,
        unique: unique(key),
    }
}

/// A name as a listing gives it back (percent-decoded).
fn decoded(key: &Key) -> Option<String> {
    let name = key.filename()?;
    Some(
        percent_encoding::percent_decode_str(name)
            .decode_utf8_lossy()
            .into_owned(),
    )
}

#[async_trait]
impl Storage for ObjectHome {
    async fn metadata(&self, path: &VirtualPath) -> Result<Metadata, StorageError> {
        if let Some(meta) = self.file(path).await? {
            return Ok(file_metadata(&meta));
        }
        if path.is_root() || self.is_dir(path).await? {
            return Ok(dir_metadata(&self.key(path)));
        }
        Err(StorageError::NotFound)
    }

    async fn list(&self, path: &VirtualPath) -> Result<Box<dyn DirStream>, StorageError> {
        if self.file(path).await?.is_some() {
            return Err(StorageError::NotADirectory);
        }
        let prefix = self.key(path);
        let listing = self
            .store
            .list_with_delimiter((!prefix.as_ref().is_empty()).then_some(&prefix))
            .await
            .map_err(map_error)?;
        if listing.objects.is_empty() && listing.common_prefixes.is_empty() && !path.is_root() {
            return Err(StorageError::NotFound);
        }
        let mut entries: Vec<DirEntry> = listing
            .common_prefixes
            .iter()
            .filter_map(|key| {
                Some(DirEntry {
                    name: decoded(key)?,
                    metadata: dir_metadata(key),
                })
            })
            .collect();
        entries.extend(listing.objects.iter().filter_map(|meta| {
            let name = decoded(&meta.location)?;
            (name != DIR_MARKER).then(|| DirEntry {
                name,
                metadata: file_metadata(meta),
            })
        }));
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Box::new(Listing(entries.into_iter())))
    }

    async fn read(&self, path: &VirtualPath, offset: u64) -> Result<FileReader, StorageError> {
        let Some(meta) = self.file(path).await? else {
            return Err(if self.is_dir(path).await? {
                StorageError::IsADirectory
            } else {
                StorageError::NotFound
            });
        };
        if offset > meta.size {
            return Err(StorageError::OffsetBeyondEnd {
                offset,
                size: meta.size,
            });
        }
        if offset == meta.size {
            // S3 answers a range that starts at the end with 416.
            return Ok(Box::new(tokio::io::empty()));
        }
        let options = GetOptions {
            range: Some(GetRange::Offset(offset)),
            ..GetOptions::default()
        };
        let result = self
            .store
            .get_opts(&meta.location, options)
            .await
            .map_err(map_error)?;
        let stream = result.into_stream().map_err(io_error);
        Ok(Box::new(tokio_util::io::StreamReader::new(stream)))
    }

    async fn write(
        &self,
        path: &VirtualPath,
        mode: WriteMode,
    ) -> Result<Box<dyn Upload>, StorageError> {
        reserved(path)?;
        if path.is_root() {
            return Err(StorageError::IsADirectory);
        }
        let existing = self.file(path).await?;
        if existing.is_none() && self.is_dir(path).await? {
            return Err(StorageError::IsADirectory);
        }
        self.parent_must_be_a_dir(path).await?;
        let keep = match (mode, &existing) {
            (WriteMode::Replace, _) => 0,
            (WriteMode::CreateNew, Some(_)) => return Err(StorageError::AlreadyExists),
            (WriteMode::CreateNew, None) => 0,
            (WriteMode::Append, Some(meta)) => meta.size,
            (WriteMode::Append, None) => 0,
            (WriteMode::Resume { offset }, Some(meta)) if offset <= meta.size => offset,
            (WriteMode::Resume { offset }, meta) => {
                return Err(StorageError::OffsetBeyondEnd {
                    offset,
                    size: meta.as_ref().map_or(0, |m| m.size),
                });
            }
            (WriteMode::InPlace, _) => {
                return Err(StorageError::Unsupported(
                    "S3 cannot write into an object, only replace or append to it",
                ));
            }
        };
        let key = self.key(path);
        let mut writer = BufWriter::with_capacity(self.store.clone(), key.clone(), PART_SIZE)
            .with_max_concurrency(PARTS_IN_FLIGHT);
        if keep > 0 {
            // The kept bytes of the old object first (S3 cannot write into one).
            let options = GetOptions {
                range: Some(GetRange::Bounded(0..keep)),
                ..GetOptions::default()
            };
            let mut old = self
                .store
                .get_opts(&key, options)
                .await
                .map_err(map_error)?
                .into_stream();
            while let Some(chunk) = old.next().await {
                let chunk = chunk.map_err(map_error)?;
                if let Err(e) = writer.write_all(&chunk).await {
                    let _ = writer.abort().await;
                    return Err(StorageError::Io(e));
                }
            }
        }
        Ok(Box::new(ObjectUpload {
            writer: Some(writer),
            written: keep,
            // What a failure keeps: an upload that replaces a file whole
            // leaves the old one; anything else keeps what arrived.
            replaces: mode == WriteMode::Replace && existing.is_some(),
            in_place: keep > 0 || matches!(mode, WriteMode::Append | WriteMode::Resume { .. }),
        }))
    }

    async fn create_dir(&self, path: &VirtualPath) -> Result<(), StorageError> {
        reserved(path)?;
        if path.is_root() || self.file(path).await?.is_some() || self.is_dir(path).await? {
            return Err(StorageError::AlreadyExists);
        }
        self.parent_must_be_a_dir(path).await?;
        self.put_marker(path).await
    }

    async fn remove_file(&self, path: &VirtualPath) -> Result<(), StorageError> {
        reserved(path)?;
        if path.is_root() {
            return Err(StorageError::Invalid(
                "the home directory cannot be removed",
            ));
        }
        let Some(meta) = self.file(path).await? else {
            return Err(if self.is_dir(path).await? {
                StorageError::IsADirectory
            } else {
                StorageError::NotFound
            });
        };
        self.keep_parent(path).await?;
        self.store.delete(&meta.location).await.map_err(map_error)
    }

    async fn remove_dir(&self, path: &VirtualPath) -> Result<(), StorageError> {
        if path.is_root() {
            return Err(StorageError::Invalid(
                "the home directory cannot be removed",
            ));
        }
        if self.file(path).await?.is_some() {
            return Err(StorageError::NotADirectory);
        }
        let marker = self.marker(path);
        let under: Vec<ObjectMeta> = self
            .store
            .list(Some(&self.key(path)))
            .take(2)
            .try_collect()
            .await
            .map_err(map_error)?;
        if under.is_empty() {
            return Err(StorageError::NotFound);
        }
        if under.iter().any(|m| m.location != marker) {
            return Err(StorageError::DirectoryNotEmpty);
        }
        self.keep_parent(path).await?;
        self.store.delete(&marker).await.map_err(map_error)
    }

    async fn rename(&self, from: &VirtualPath, to: &VirtualPath) -> Result<(), StorageError> {
        reserved(to)?;
        if from.is_root() || to.is_root() {
            return Err(StorageError::Invalid(
                "the home directory cannot be renamed",
            ));
        }
        if from == to {
            return Ok(());
        }
        self.parent_must_be_a_dir(to).await?;
        if let Some(meta) = self.file(from).await? {
            if self.is_dir(to).await? {
                return Err(StorageError::IsADirectory);
            }
            self.keep_parent(from).await?;
            return self
                .store
                .rename(&meta.location, &self.key(to))
                .await
                .map_err(map_error);
        }
        if !self.is_dir(from).await? {
            return Err(StorageError::NotFound);
        }
        if to.starts_with(from) {
            return Err(StorageError::Invalid("a directory cannot move into itself"));
        }
        if self.file(to).await?.is_some() || self.is_dir(to).await? {
            return Err(StorageError::AlreadyExists);
        }
        // Every object under the directory, one copy and delete each.
        let (old, new) = (self.key(from), self.key(to));
        let objects: Vec<ObjectMeta> = self
            .store
            .list(Some(&old))
            .try_collect()
            .await
            .map_err(map_error)?;
        self.keep_parent(from).await?;
        for meta in objects {
            let Some(rest) = meta.location.prefix_match(&old) else {
                continue;
            };
            let target = rest.fold(new.clone(), |key, part| key.join(part));
            self.store
                .rename(&meta.location, &target)
                .await
                .map_err(map_error)?;
        }
        Ok(())
    }

    async fn set_modified(&self, path: &VirtualPath, time: SystemTime) -> Result<(), StorageError> {
        let _ = (path, time);
        Err(StorageError::Unsupported(
            "S3 keeps the time of the upload; it cannot be set",
        ))
    }

    async fn set_mode(&self, path: &VirtualPath, mode: u32) -> Result<(), StorageError> {
        let _ = (path, mode);
        Err(StorageError::Unsupported("objects have no permission bits"))
    }
}

/// A listing, already fetched whole.
struct Listing(std::vec::IntoIter<DirEntry>);

#[async_trait]
impl DirStream for Listing {
    async fn next_batch(&mut self) -> Result<Option<Vec<DirEntry>>, StorageError> {
        let batch: Vec<DirEntry> = self.0.by_ref().take(BATCH).collect();
        Ok((!batch.is_empty()).then_some(batch))
    }
}

/// An upload in progress: a multipart upload of the whole new object.
struct ObjectUpload {
    /// `None` once finished.
    writer: Option<BufWriter>,
    written: u64,
    /// It replaces an existing file whole: a failure leaves the old one.
    replaces: bool,
    /// It rewrites an existing file's start (APPE, REST + STOR).
    in_place: bool,
}

impl ObjectUpload {
    fn writer(&mut self) -> io::Result<&mut BufWriter> {
        self.writer
            .as_mut()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "the upload is finished"))
    }

    /// Completes the upload: the object becomes visible.
    async fn complete(&mut self) -> Result<u64, StorageError> {
        let mut writer = self
            .writer
            .take()
            .ok_or(StorageError::Invalid("the upload is finished"))?;
        writer.shutdown().await.map_err(StorageError::Io)?;
        Ok(self.written)
    }

    /// Drops the upload: no object is made or changed.
    async fn cancel(&mut self) {
        if let Some(mut writer) = self.writer.take()
            && let Err(e) = writer.abort().await
        {
            tracing::warn!(error = %e, "an S3 multipart upload was not aborted; the bucket keeps its parts until a lifecycle rule removes them");
        }
    }
}

impl AsyncWrite for ObjectUpload {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = std::task::ready!(Pin::new(this.writer()?).poll_write(cx, buf))?;
        this.written += n as u64;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.get_mut().writer()?).poll_flush(cx)
    }

    /// The object is completed by [`Upload::commit`], not here.
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[async_trait]
impl Upload for ObjectUpload {
    async fn commit(mut self: Box<Self>) -> Result<u64, StorageError> {
        self.complete().await
    }

    async fn abort(mut self: Box<Self>) {
        // A new file that received nothing is not made (as on local disk).
        if self.replaces || (self.written == 0 && !self.in_place) {
            self.cancel().await;
        } else if let Err(e) = self.complete().await {
            tracing::warn!(error = %e, "the bytes of an interrupted upload were not kept");
        }
    }

    async fn discard(mut self: Box<Self>) {
        if self.in_place {
            // As on local disk, bytes written in place stay.
            if let Err(e) = self.complete().await {
                tracing::warn!(error = %e, "the bytes of an interrupted upload were not kept");
            }
        } else {
            self.cancel().await;
        }
    }

    /// An object exists only once completed, and the store answers the
    /// completion once the object is stored durably (S3: across devices):
    /// the commit is durable by itself. Parts already sent are waited for,
    /// so that their failure shows here.
    async fn sync(&mut self) -> Result<(), StorageError> {
        self.writer()?.flush().await.map_err(StorageError::Io)
    }
}

impl Drop for ObjectUpload {
    /// Dropped unfinished: as an abort, in a task of its own.
    fn drop(&mut self) {
        let Some(writer) = self.writer.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let upload = ObjectUpload {
            writer: Some(writer),
            written: self.written,
            replaces: self.replaces,
            in_place: self.in_place,
        };
        runtime.spawn(async move { Upload::abort(Box::new(upload)).await });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::{self, names, put, read_all as get, vp as p};
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn a_bucket_probe_tells_mistakes_from_outages() {
        // As object_store hands over a failed listing: S3's answer in the text.
        let listing = |answer: &str| object_store::Error::Generic {
            store: "S3",
            source: Box::new(io::Error::other(format!(
                "Error performing list request: Server returned non-2xx status code: {answer}"
            ))),
        };
        let missing = BucketProblem::of(listing(
            "404 Not Found: <?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message></Error>",
        ));
        assert!(
            matches!(&missing, BucketProblem::Missing(m) if m == "NoSuchBucket: The specified bucket does not exist"),
            "{missing:?}"
        );
        for answer in [
            "403 Forbidden: <Error><Code>InvalidAccessKeyId</Code><Message>no such key</Message></Error>",
            "403 Forbidden: ",
        ] {
            let refused = BucketProblem::of(listing(answer));
            assert!(matches!(refused, BucketProblem::Refused(_)), "{refused:?}");
        }
        for answer in [
            "503 Service Unavailable: <Error><Code>SlowDown</Code><Message>later</Message></Error>",
            "error sending request: connection refused",
        ] {
            let away = BucketProblem::of(listing(answer));
            assert!(matches!(away, BucketProblem::Unreachable(_)), "{away:?}");
        }
        // A bucket that answers: nothing to say.
        let storage = ObjectStorage::new(Arc::new(InMemory::new()), "site");
        assert!(storage.probe().await.is_ok());
    }

    async fn home() -> (Arc<InMemory>, Arc<dyn Storage>) {
        let memory = Arc::new(InMemory::new());
        let backend = ObjectStorage::new(memory.clone(), "ftp/");
        let home = backend.open_home(&p("/alice"), true).await.expect("home");
        (memory, home)
    }

    #[tokio::test]
    async fn write_read_resume_append() {
        conformance::write_read_resume_append(&*home().await.1).await;
    }

    #[tokio::test]
    async fn writes_anywhere_or_refuses() {
        conformance::writes_anywhere_or_refuses(&*home().await.1).await;
    }

    #[tokio::test]
    async fn failed_uploads_lose_nothing_stored() {
        conformance::failed_uploads_lose_nothing_stored(&*home().await.1).await;
    }

    #[tokio::test]
    async fn directories_and_renames() {
        conformance::directories_and_renames(&*home().await.1).await;
    }

    #[tokio::test]
    async fn synced_uploads_commit_whole() {
        conformance::synced_uploads_commit_whole(&*home().await.1).await;
    }

    #[tokio::test]
    async fn files_live_as_keys_under_the_prefix_and_the_home() {
        let (memory, home) = home().await;
        assert_eq!(
            put(&*home, "/a b%.txt", WriteMode::Replace, b"hello").await,
            5
        );
        let keys: Vec<String> = memory
            .list(None)
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .expect("keys");
        assert!(
            keys.contains(&"ftp/alice/a b%25.txt".to_owned()),
            "{keys:?}"
        );
        assert_eq!(get(&*home, "/a b%.txt", 0).await, b"hello");
        assert_eq!(get(&*home, "/a b%.txt", 3).await, b"lo");
        assert_eq!(get(&*home, "/a b%.txt", 5).await, b"");
        assert!(matches!(
            home.read(&p("/a b%.txt"), 6).await.err(),
            Some(StorageError::OffsetBeyondEnd { offset: 6, size: 5 })
        ));
        assert_eq!(
            names(&*home, "/").await,
            vec![("a b%.txt".to_owned(), FileKind::File)]
        );
        let meta = home.metadata(&p("/a b%.txt")).await.expect("meta");
        assert_eq!((meta.kind, meta.size), (FileKind::File, 5));
    }

    #[tokio::test]
    async fn directories_are_kept_by_markers_that_no_listing_shows() {
        let (memory, home) = home().await;
        // A directory another program made by storing a key under it (no
        // marker) stays when FTP deletes its last file.
        memory
            .put(
                &Key::from("ftp/alice/implicit/f"),
                PutPayload::from_static(b"x"),
            )
            .await
            .expect("put");
        assert!(home.metadata(&p("/implicit")).await.expect("dir").is_dir());
        home.remove_file(&p("/implicit/f")).await.expect("rm");
        assert!(
            home.metadata(&p("/implicit"))
                .await
                .expect("stays")
                .is_dir()
        );
        home.create_dir(&p("/d")).await.expect("mkdir");
        assert!(
            memory
                .head(&Key::from("ftp/alice/d/.ferry-dir"))
                .await
                .is_ok()
        );
        assert_eq!(
            names(&*home, "/").await,
            vec![
                ("d".to_owned(), FileKind::Dir),
                ("implicit".to_owned(), FileKind::Dir)
            ]
        );
        assert_eq!(names(&*home, "/d").await, vec![]);
        assert!(matches!(
            home.write(&p("/x/.ferry-dir"), WriteMode::Replace)
                .await
                .err(),
            Some(StorageError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn renames_move_files_and_whole_directories() {
        let (_memory, home) = home().await;
        home.create_dir(&p("/d")).await.expect("mkdir");
        home.create_dir(&p("/d/e")).await.expect("mkdir");
        put(&*home, "/d/e/f", WriteMode::Replace, b"deep").await;
        put(&*home, "/d/g", WriteMode::Replace, b"g").await;
        assert!(matches!(
            home.rename(&p("/d"), &p("/d/e/x")).await,
            Err(StorageError::Invalid(_))
        ));
        home.rename(&p("/d"), &p("/moved")).await.expect("mv dir");
        assert_eq!(get(&*home, "/moved/e/f", 0).await, b"deep");
        assert_eq!(
            names(&*home, "/moved").await,
            vec![
                ("e".to_owned(), FileKind::Dir),
                ("g".to_owned(), FileKind::File)
            ]
        );
        assert!(matches!(
            home.metadata(&p("/d")).await,
            Err(StorageError::NotFound)
        ));
        home.rename(&p("/moved/g"), &p("/g2"))
            .await
            .expect("mv file");
        assert_eq!(get(&*home, "/g2", 0).await, b"g");
        assert!(home.metadata(&p("/moved")).await.expect("stays").is_dir());
        assert!(matches!(
            home.rename(&p("/nothing"), &p("/x")).await,
            Err(StorageError::NotFound)
        ));
    }

    #[tokio::test]
    async fn a_home_is_made_only_when_asked() {
        let memory = Arc::new(InMemory::new());
        let backend = ObjectStorage::new(memory, "");
        assert!(matches!(
            backend.open_home(&p("/bob"), false).await.err(),
            Some(StorageError::NotFound)
        ));
        let home = backend.open_home(&p("/bob"), true).await.expect("made");
        assert_eq!(names(&*home, "/").await, vec![]);
        assert!(backend.open_home(&p("/bob"), false).await.is_ok());
        assert!(matches!(
            home.set_modified(&p("/"), SystemTime::now()).await,
            Err(StorageError::Unsupported(_))
        ));
    }
}
