//! The same API for programs without an async runtime: [`urlopen`] blocks,
//! and the response body is a `std::io::Read`. A runtime of two worker
//! threads is started on first use and shared. Do not call these from inside
//! an async task (they would block its thread).
//!
//! ```
//! use std::io::Read;
//! let mut response = ferry_url::blocking::urlopen("data:,blocking%20read")?;
//! assert_eq!(response.status, 200);
//! let mut text = String::new();
//! response.read_to_string(&mut text).map_err(|cause| ferry_url::UrlError::Io { context: "body".into(), cause })?;
//! assert_eq!(text, "blocking read");
//! # Ok::<(), ferry_url::UrlError>(())
//! ```

use std::sync::OnceLock;

use tokio_util::io::SyncIoBridge;

use crate::error::{Result, Unreachable, UrlError};
use crate::headers::Headers;
use crate::opener::{Opener, installed_opener};
use crate::request::IntoRequest;
use crate::response::BodyReader;

fn runtime() -> Result<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<std::result::Result<tokio::runtime::Runtime, String>> =
        OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("ferry-url")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| UrlError::Unreachable {
            url: String::new(),
            kind: Unreachable::Other,
            message: format!("cannot start the I/O runtime: {e}"),
        })
}

/// A response whose body is read with `std::io::Read`.
#[derive(Debug)]
pub struct BlockingResponse {
    pub status: u16,
    pub reason: String,
    pub headers: Headers,
    pub url: url::Url,
    body: BlockingBody,
}

struct BlockingBody(SyncIoBridge<BodyReader>);

impl std::fmt::Debug for BlockingBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BlockingBody")
    }
}

impl std::io::Read for BlockingResponse {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.body.0.read(buf)
    }
}

/// Opens a URL with `opener`, blocking.
pub fn open(opener: &Opener, request: impl IntoRequest) -> Result<BlockingResponse> {
    let rt = runtime()?;
    let response = rt.block_on(opener.open(request))?;
    let status = response.status;
    let reason = response.reason.clone();
    let headers = response.headers.clone();
    let url = response.url.clone();
    let body = SyncIoBridge::new_with_handle(response.into_body(), rt.handle().clone());
    Ok(BlockingResponse {
        status,
        reason,
        headers,
        url,
        body: BlockingBody(body),
    })
}

/// Opens a URL with the installed opener, blocking.
pub fn urlopen(request: impl IntoRequest) -> Result<BlockingResponse> {
    open(&installed_opener(), request)
}
