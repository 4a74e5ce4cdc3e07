//! Requests: a URL, a method, header fields, an optional body and timeouts
//! (urllib's `Request`).

use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use tokio::io::AsyncRead;

use crate::error::{Result, UrlError};
use crate::headers::Headers;

/// A request body.
pub enum Body {
    /// Bytes in memory.
    Bytes(bytes::Bytes),
    /// A local file, read as the request is sent (and again for a redirect
    /// that keeps the body).
    File(PathBuf),
    /// A stream, read once: a redirect or an authentication retry that needs
    /// the body again cannot be followed.
    Reader(sync_wrapper::SyncWrapper<Pin<Box<dyn AsyncRead + Send>>>),
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Body::Bytes(b) => write!(f, "Body::Bytes({} bytes)", b.len()),
            Body::File(p) => write!(f, "Body::File({})", p.display()),
            Body::Reader(_) => f.write_str("Body::Reader"),
        }
    }
}

impl Body {
    /// A copy for a second attempt, when the body can be read again.
    pub(crate) fn replay(&self) -> Option<Body> {
        match self {
            Body::Bytes(b) => Some(Body::Bytes(b.clone())),
            Body::File(p) => Some(Body::File(p.clone())),
            Body::Reader(_) => None,
        }
    }
}

/// Connect and read timeouts; `None` leaves the opener's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// For name resolution, TCP connect and the TLS handshake.
    pub connect: Option<Duration>,
    /// For each read of the response (a stall longer than this fails).
    pub read: Option<Duration>,
}

impl Timeouts {
    /// The same limit for both.
    pub fn both(d: Duration) -> Self {
        Timeouts {
            connect: Some(d),
            read: Some(d),
        }
    }

    /// These, with `fallback`'s where these are unset.
    pub fn or(self, fallback: Timeouts) -> Timeouts {
        Timeouts {
            connect: self.connect.or(fallback.connect),
            read: self.read.or(fallback.read),
        }
    }
}

/// A request to open a URL.
#[derive(Debug)]
pub struct Request {
    url: url::Url,
    method: Option<String>,
    pub headers: Headers,
    body: Option<Body>,
    pub timeouts: Timeouts,
    /// The proxy to go through, set by the proxy handler.
    pub proxy: Option<url::Url>,
    /// How many redirects led here.
    pub(crate) redirects: u32,
    /// An authentication retry was already made for this request.
    pub(crate) auth_retried: bool,
}

impl Request {
    /// A GET request for `url`.
    pub fn new(url: &str) -> Result<Self> {
        let parsed = url::Url::parse(url).map_err(|e| UrlError::BadUrl {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(Self::from_url(parsed))
    }

    /// A GET request for a parsed URL.
    pub fn from_url(url: url::Url) -> Self {
        Request {
            url,
            method: None,
            headers: Headers::new(),
            body: None,
            timeouts: Timeouts::default(),
            proxy: None,
            redirects: 0,
            auth_retried: false,
        }
    }

    /// Sets the method (`PUT`, `DELETE`, `HEAD`...).
    pub fn with_method(mut self, method: impl Into<String>) -> Self {
        self.method = Some(method.into().to_ascii_uppercase());
        self
    }

    /// Adds a header field (replacing one of the same name).
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.set(name, value);
        self
    }

    /// Sets the body; a request with a body is a POST unless a method is set
    /// (as in urllib).
    pub fn with_body(mut self, body: Body) -> Self {
        self.body = Some(body);
        self
    }

    /// A body of bytes (such as the output of [`urlencode`]).
    pub fn with_data(self, data: impl Into<bytes::Bytes>) -> Self {
        self.with_body(Body::Bytes(data.into()))
    }

    /// A body read once from a stream (a file being written, a pipe).
    pub fn with_reader(self, reader: impl AsyncRead + Send + 'static) -> Self {
        self.with_body(Body::Reader(sync_wrapper::SyncWrapper::new(Box::pin(
            reader,
        ))))
    }

    /// The same timeout for connecting and for each read.
    pub fn with_timeout(mut self, d: Duration) -> Self {
        self.timeouts = Timeouts::both(d);
        self
    }

    /// The URL.
    pub fn url(&self) -> &url::Url {
        &self.url
    }

    /// Replaces the URL (processors that rewrite requests use this).
    pub fn set_url(&mut self, url: url::Url) {
        self.url = url;
    }

    /// The method: the one set, else POST with a body, else GET.
    pub fn method(&self) -> &str {
        match (&self.method, &self.body) {
            (Some(m), _) => m,
            (None, Some(_)) => "POST",
            (None, None) => "GET",
        }
    }

    /// True when the request carries a body.
    pub fn has_body(&self) -> bool {
        self.body.is_some()
    }

    /// Takes the body out (a handler sending it).
    pub fn take_body(&mut self) -> Option<Body> {
        self.body.take()
    }

    /// A copy for a retry or a redirect: `None` when the body cannot be read
    /// twice.
    pub fn try_clone(&self) -> Option<Request> {
        let body = match &self.body {
            Some(b) => Some(b.replay()?),
            None => None,
        };
        Some(Request {
            url: self.url.clone(),
            method: self.method.clone(),
            headers: self.headers.clone(),
            body,
            timeouts: self.timeouts,
            proxy: self.proxy.clone(),
            redirects: self.redirects,
            auth_retried: self.auth_retried,
        })
    }

    /// A copy without the body, with the method it had (what was sent, for
    /// handlers that look at responses).
    pub(crate) fn shell(&self) -> Request {
        Request {
            url: self.url.clone(),
            method: Some(self.method().to_owned()),
            headers: self.headers.clone(),
            body: None,
            timeouts: self.timeouts,
            proxy: self.proxy.clone(),
            redirects: self.redirects,
            auth_retried: self.auth_retried,
        }
    }

    /// Drops the body and sets the method (a redirect that turns into GET).
    pub(crate) fn into_get(mut self) -> Self {
        self.body = None;
        self.method = if self.method.as_deref() == Some("HEAD") {
            Some("HEAD".to_owned())
        } else {
            None
        };
        self.headers.remove("Content-Type");
        self.headers.remove("Content-Length");
        self
    }
}

/// What [`crate::urlopen`] and [`crate::Opener::open`] accept: a URL as text, a
/// parsed URL, or a [`Request`].
pub trait IntoRequest {
    fn into_request(self) -> Result<Request>;
}

impl IntoRequest for Request {
    fn into_request(self) -> Result<Request> {
        Ok(self)
    }
}

impl IntoRequest for &str {
    fn into_request(self) -> Result<Request> {
        Request::new(self)
    }
}

impl IntoRequest for String {
    fn into_request(self) -> Result<Request> {
        Request::new(&self)
    }
}

impl IntoRequest for url::Url {
    fn into_request(self) -> Result<Request> {
        Ok(Request::from_url(self))
    }
}

/// `application/x-www-form-urlencoded` text of name/value pairs (urllib's
/// `urlencode`): `urlencode(&[("q", "a b"), ("n", "1")])` is `q=a+b&n=1`.
pub fn urlencode<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k.as_ref(), v.as_ref());
    }
    s.finish()
}

/// Percent-encodes one path segment or query value (urllib's `quote` with no
/// safe characters).
pub fn quote(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_follow_urllib() {
        let r = Request::new("http://h/").expect("url");
        assert_eq!(r.method(), "GET");
        let r = r.with_data("x");
        assert_eq!(r.method(), "POST");
        let r = r.with_method("put");
        assert_eq!(r.method(), "PUT");
        assert!(Request::new("not a url").is_err());
    }

    #[test]
    fn encodes_forms() {
        assert_eq!(urlencode(&[("q", "a b&c"), ("n", "1")]), "q=a+b%26c&n=1");
        assert_eq!(quote("a b/c"), "a%20b%2Fc");
    }

    #[test]
    fn readers_cannot_be_replayed() {
        let r = Request::new("http://h/").expect("url").with_data("abc");
        assert!(r.try_clone().is_some());
        let r = Request::new("http://h/")
            .expect("url")
            .with_reader(&b"abc"[..]);
        assert!(r.try_clone().is_none());
    }
}
