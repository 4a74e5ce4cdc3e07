//! `ftp:` URLs through an HTTP proxy (`ftp_proxy`, as urllib's `ProxyHandler`
//! sends them): a GET whose request target is the `ftp://` URL itself, which
//! the proxy (Squid, Apache's mod_proxy_ftp, …) answers by speaking FTP to the
//! server and HTTP back. Downloads and directory listings only; the reply is
//! the proxy's HTTP response, its status and headers as the proxy sent them
//! (Squid names the FTP reply behind an error in `X-Squid-Error`).
//!
//! hyper's HTTP/1.1 client connection is used directly: reqwest, which serves
//! `http:` and `https:`, refuses a request target that is not an http URL.

use std::time::Duration;

use base64::Engine as _;
use futures_util::StreamExt;
use http_body_util::BodyExt;
use tokio_util::io::StreamReader;

use crate::error::{Result, Unreachable, UrlError};
use crate::headers::Headers;
use crate::opener::OpenContext;
use crate::request::Request;
use crate::response::Response;

/// Opens `request` (whose URL, `target`, may carry the credentials to log in
/// with) through the HTTP proxy `proxy`.
pub(crate) async fn open(
    request: &Request,
    target: &url::Url,
    proxy: &url::Url,
    context: &OpenContext,
) -> Result<Response> {
    let url = request.url();
    if request.method() != "GET" {
        return Err(UrlError::unsupported(
            url,
            format!(
                "{} through an HTTP proxy: only downloads and listings go through one (set no_proxy for this host to upload directly)",
                request.method()
            ),
        ));
    }
    let unreachable = |kind, reason: String| {
        UrlError::unreachable_at(url, kind, format!("proxy {}: {reason}", shown(proxy)))
    };
    let host = proxy
        .host_str()
        .ok_or_else(|| unreachable(Unreachable::Other, "no host".into()))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = proxy.port_or_known_default().unwrap_or(80);
    let connect_timeout = context.timeouts.connect.unwrap_or(Duration::from_secs(30));
    let read_timeout = context.timeouts.read.unwrap_or(Duration::from_secs(120));
    let tcp = tokio::time::timeout(
        connect_timeout,
        tokio::net::TcpStream::connect((host, port)),
    )
    .await
    .map_err(|_| unreachable(Unreachable::Timeout, "connecting timed out".into()))?
    .map_err(|e| {
        let kind = if e.kind() == std::io::ErrorKind::ConnectionRefused {
            Unreachable::Refused
        } else {
            Unreachable::Other
        };
        unreachable(kind, e.to_string())
    })?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .map_err(|e| unreachable(Unreachable::Other, e.to_string()))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });

    let mut head = ::http::Request::get(target.as_str());
    let authority = match url.port() {
        Some(p) => format!("{}:{p}", url.host_str().unwrap_or("")),
        None => url.host_str().unwrap_or("").to_owned(),
    };
    head = head.header(::http::header::HOST, authority);
    for (name, value) in request.headers.iter() {
        head = head.header(name, value);
    }
    if !proxy.username().is_empty() {
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let pair = format!(
            "{}:{}",
            decode(proxy.username()),
            decode(proxy.password().unwrap_or(""))
        );
        head = head.header(
            ::http::header::PROXY_AUTHORIZATION,
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            ),
        );
    }
    let sent = head
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| UrlError::BadUrl {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
    let response = tokio::time::timeout(read_timeout, sender.send_request(sent))
        .await
        .map_err(|_| unreachable(Unreachable::Timeout, "no response in time".into()))?
        .map_err(|e| unreachable(Unreachable::Other, e.to_string()))?;

    let status = response.status();
    let headers = Headers::from_http(response.headers());
    // The body as a stream of byte chunks, each awaited at most the read timeout.
    let frames = response.into_body().into_data_stream();
    let body = futures_util::stream::unfold(frames, move |mut frames| async move {
        match tokio::time::timeout(read_timeout, frames.next()).await {
            Err(_) => Some((
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the proxy sent nothing in time",
                )),
                frames,
            )),
            Ok(None) => None,
            Ok(Some(chunk)) => Some((chunk.map_err(std::io::Error::other), frames)),
        }
    });
    Ok(Response::new(
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        headers,
        url.clone(),
        Box::pin(StreamReader::new(body)),
    ))
}

/// The proxy's URL without its password, for messages.
fn shown(proxy: &url::Url) -> String {
    let mut p = proxy.clone();
    if p.password().is_some() {
        let _ = p.set_password(Some("****"));
    }
    p.to_string()
}
