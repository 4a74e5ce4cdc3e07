//! `http:` and `https:` through reqwest (HTTP/1.1 and HTTP/2, rustls), with
//! its own redirects and proxy discovery switched off: this crate's handlers
//! own those. One client per proxy and timeout setting is kept and reused, so
//! connections are pooled.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::TryStreamExt;
use tokio_util::io::{ReaderStream, StreamReader};

use crate::error::{Result, Unreachable, UrlError};
use crate::headers::Headers;
use crate::opener::{Handler, OpenContext, TlsSettings};
use crate::request::{Body, Request};
use crate::response::Response;

type ClientKey = (Option<String>, Option<Duration>, Option<Duration>);

/// Opens http and https URLs.
#[derive(Debug)]
pub struct HttpHandler {
    tls: TlsSettings,
    clients: Mutex<HashMap<ClientKey, reqwest::Client>>,
}

impl HttpHandler {
    pub fn new(tls: TlsSettings) -> Self {
        HttpHandler {
            tls,
            clients: Mutex::new(HashMap::new()),
        }
    }

    fn client(
        &self,
        url: &url::Url,
        proxy: Option<&url::Url>,
        context: &OpenContext,
    ) -> Result<reqwest::Client> {
        let key = (
            proxy.map(|p| p.to_string()),
            context.timeouts.connect,
            context.timeouts.read,
        );
        if let Ok(clients) = self.clients.lock()
            && let Some(c) = clients.get(&key)
        {
            return Ok(c.clone());
        }
        let setup = |reason: String| UrlError::unreachable_at(url, Unreachable::Other, reason);
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy();
        if let Some(p) = proxy {
            let mut px =
                reqwest::Proxy::all(p.as_str()).map_err(|e| setup(format!("proxy {p}: {e}")))?;
            if !p.username().is_empty() {
                let decode = |s: &str| {
                    percent_encoding::percent_decode_str(s)
                        .decode_utf8_lossy()
                        .into_owned()
                };
                px = px.basic_auth(&decode(p.username()), &decode(p.password().unwrap_or("")));
            }
            builder = builder.proxy(px);
        }
        if let Some(ca) = &self.tls.ca_file {
            let pem = std::fs::read(ca).map_err(|e| setup(format!("{}: {e}", ca.display())))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| setup(format!("{}: {e}", ca.display())))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        if self.tls.insecure {
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        if let Some(t) = context.timeouts.connect {
            builder = builder.connect_timeout(t);
        }
        if let Some(t) = context.timeouts.read {
            builder = builder.read_timeout(t);
        }
        let client = builder.build().map_err(|e| setup(chain(&e)))?;
        if let Ok(mut clients) = self.clients.lock() {
            clients.insert(key, client.clone());
        }
        Ok(client)
    }
}

/// The error and its causes, as one line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = c.source();
    }
    parts.join(": ")
}

/// Why reqwest could not get a response.
fn classify(url: &url::Url, e: &reqwest::Error) -> UrlError {
    let text = chain(e);
    let lower = text.to_ascii_lowercase();
    let mut refused = false;
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(io) = c.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            refused = true;
        }
        cur = c.source();
    }
    let kind = if e.is_timeout() || lower.contains("timed out") {
        Unreachable::Timeout
    } else if refused || lower.contains("connection refused") {
        Unreachable::Refused
    } else if lower.contains("dns error")
        || lower.contains("failed to lookup")
        || lower.contains("name or service")
    {
        Unreachable::Resolve
    } else if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake")
    {
        Unreachable::Tls
    } else {
        Unreachable::Other
    };
    UrlError::unreachable_at(url, kind, text)
}

#[async_trait::async_trait]
impl Handler for HttpHandler {
    fn name(&self) -> &str {
        "http"
    }

    fn schemes(&self) -> &[&str] {
        &["http", "https"]
    }

    async fn open(&self, mut request: Request, context: &OpenContext) -> Result<Response> {
        let url = request.url().clone();
        let client = self.client(&url, request.proxy.as_ref(), context)?;
        let method = reqwest::Method::from_bytes(request.method().as_bytes()).map_err(|_| {
            UrlError::unsupported(
                &url,
                format!("{:?} is not an HTTP method", request.method()),
            )
        })?;
        let mut builder = client.request(method, url.clone());
        for (name, value) in request.headers.iter() {
            builder = builder.header(name, value);
        }
        match request.take_body() {
            None => {}
            Some(Body::Bytes(b)) => builder = builder.body(b),
            Some(Body::File(path)) => {
                let file = tokio::fs::File::open(&path)
                    .await
                    .map_err(|cause| UrlError::Io {
                        context: path.display().to_string(),
                        cause,
                    })?;
                if let Ok(meta) = file.metadata().await {
                    builder = builder.header("Content-Length", meta.len().to_string());
                }
                builder = builder.body(reqwest::Body::wrap_stream(ReaderStream::new(file)));
            }
            Some(Body::Reader(reader)) => {
                builder = builder.body(reqwest::Body::wrap_stream(ReaderStream::new(
                    reader.into_inner(),
                )));
            }
        }
        let response = builder.send().await.map_err(|e| classify(&url, &e))?;
        let status = response.status();
        let headers = Headers::from_http(response.headers());
        let final_url = response.url().clone();
        let stream = response.bytes_stream().map_err(std::io::Error::other);
        Ok(Response::new(
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            headers,
            final_url,
            Box::pin(StreamReader::new(stream)),
        ))
    }
}
