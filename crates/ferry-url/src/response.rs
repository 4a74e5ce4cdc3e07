//! Responses: status, reason, header fields, the final URL, and the body as a
//! stream (urllib's `addinfourl`/`HTTPResponse`).

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

use crate::error::{Result, UrlError};
use crate::headers::Headers;

/// The body of a response, read as it arrives.
pub type BodyReader = Pin<Box<dyn AsyncRead + Send>>;

/// A response. Every scheme gives a status: HTTP's own; 200 for `file:`,
/// `data:` and successful FTP transfers. Errors never arrive as a response:
/// they are [`UrlError::Status`].
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Headers,
    /// The URL this came from, after redirects (urllib's `geturl()`).
    pub url: url::Url,
    /// Only ever used through `&mut`, so the response (and errors holding one)
    /// can be shared between threads although the stream is only `Send`.
    body: sync_wrapper::SyncWrapper<BodyReader>,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("reason", &self.reason)
            .field("url", &self.url.as_str())
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

impl Response {
    pub fn new(
        status: u16,
        reason: impl Into<String>,
        headers: Headers,
        url: url::Url,
        body: BodyReader,
    ) -> Self {
        Response {
            status,
            reason: reason.into(),
            headers,
            url,
            body: sync_wrapper::SyncWrapper::new(body),
        }
    }

    /// A response with a body held in memory.
    pub fn from_bytes(
        status: u16,
        reason: &str,
        headers: Headers,
        url: url::Url,
        body: Vec<u8>,
    ) -> Self {
        Response::new(
            status,
            reason,
            headers,
            url,
            Box::pin(std::io::Cursor::new(body)),
        )
    }

    /// The body, read to its end.
    pub async fn bytes(mut self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let url = self.url.to_string();
        self.body
            .get_mut()
            .read_to_end(&mut out)
            .await
            .map_err(|cause| UrlError::Io {
                context: format!("{url}: reading the body"),
                cause,
            })?;
        Ok(out)
    }

    /// The body as text (invalid UTF-8 replaced).
    pub async fn text(self) -> Result<String> {
        Ok(String::from_utf8_lossy(&self.bytes().await?).into_owned())
    }

    /// The length the headers announce, if any.
    pub fn content_length(&self) -> Option<u64> {
        self.headers
            .get("Content-Length")
            .and_then(|v| v.trim().parse().ok())
    }

    /// The body as an async reader.
    pub fn into_body(self) -> BodyReader {
        self.body.into_inner()
    }
}

/// The body can be read directly from the response.
impl AsyncRead for Response {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.body.get_mut().as_mut().poll_read(cx, buf)
    }
}
