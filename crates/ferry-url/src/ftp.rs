//! `ftp:`, `ftpes:` and `ftps:` through ferry-client (and, through [`serve`],
//! the requests of `sftp:` too, crate::sftp): a file URL downloads
//! (streamed), a URL ending in `/` lists the directory (the server's LIST
//! lines), a request with a body uploads. Credentials: the URL's, else the
//! password manager's, else ~/.netrc, else anonymous. FTP error replies are
//! [`UrlError::Status`] with the reply code (550 for a missing file). With a
//! proxy for `ftp` (`ftp_proxy`), an `ftp:` GET goes through it instead
//! (crate::ftp_proxy).

use std::sync::Arc;
use std::time::Duration;

use ferry_client::{
    CertificateCheck, ClientError, ConnectOptions, FtpUrl, RemoteSession, UploadMode,
};
use tokio::io::AsyncReadExt;
use tokio_util::io::StreamReader;

use crate::auth::PasswordManager;
use crate::error::{Result, StatusError, Unreachable, UrlError};
use crate::file::{guess_type, http_date};
use crate::headers::Headers;
use crate::opener::{Handler, OpenContext, TlsSettings};
use crate::request::{Body, Request};
use crate::response::Response;

/// Opens the FTP schemes.
#[derive(Debug)]
pub struct FtpHandler {
    tls: TlsSettings,
    passwords: Arc<PasswordManager>,
    netrc: bool,
}

impl FtpHandler {
    pub fn new(tls: TlsSettings, passwords: Arc<PasswordManager>, netrc: bool) -> Self {
        FtpHandler {
            tls,
            passwords,
            netrc,
        }
    }
}

/// A refusal as [`UrlError::Status`] with the server's code and text.
fn status(url: &url::Url, code: u16, text: &str) -> UrlError {
    UrlError::Status(Box::new(StatusError {
        url: url.clone(),
        code,
        reason: text.to_owned(),
        headers: Headers::new(),
        body: Response::from_bytes(
            code,
            text,
            Headers::new(),
            url.clone(),
            text.to_owned().into_bytes(),
        ),
    }))
}

/// A client error as a URL error: refusals keep their code (the FTP reply
/// code, or the SFTP status code: 2 no such file, 3 permission denied).
pub(crate) fn convert(url: &url::Url, e: ClientError) -> UrlError {
    let kind = match &e {
        ClientError::Reply { code, text, .. } => return status(url, *code, text),
        ClientError::Sftp {
            code: Some(code),
            message,
            ..
        } => {
            let code = u16::try_from(*code).unwrap_or(u16::MAX);
            return status(url, code, message);
        }
        ClientError::Resolve { .. } => Unreachable::Resolve,
        ClientError::Connect { cause, .. }
            if cause.kind() == std::io::ErrorKind::ConnectionRefused =>
        {
            Unreachable::Refused
        }
        ClientError::Timeout { .. } => Unreachable::Timeout,
        ClientError::Tls { .. } | ClientError::TlsSetup(_) => Unreachable::Tls,
        ClientError::HostKey { .. } => Unreachable::HostKey,
        _ => Unreachable::Other,
    };
    UrlError::unreachable_at(url, kind, e.to_string())
}

#[async_trait::async_trait]
impl Handler for FtpHandler {
    fn name(&self) -> &str {
        "ftp"
    }

    fn schemes(&self) -> &[&str] {
        &["ftp", "ftpes", "ftps"]
    }

    async fn open(&self, request: Request, context: &OpenContext) -> Result<Response> {
        let url = request.url().clone();
        let mut ftp = FtpUrl::parse(url.as_str()).map_err(|e| convert(&url, e))?;
        if ftp.user.is_none() {
            if let Some((u, p)) = self.passwords.find_user_password(None, &url) {
                ftp.user = Some(u);
                ftp.password = Some(p);
            } else if self.netrc {
                let netrc = ferry_client::netrc::Netrc::load_default();
                if let Some(entry) = netrc.lookup(&ftp.host) {
                    ftp.user = entry.login.clone();
                    ftp.password = entry.password.clone();
                }
            }
        }
        if let Some(proxy) = request.proxy.clone()
            && url.scheme() == "ftp"
            && proxy.scheme() == "http"
        {
            // The proxy logs in: credentials found here ride in the URL.
            let mut target = url.clone();
            if url.username().is_empty()
                && let Some(user) = &ftp.user
            {
                let _ = target.set_username(user);
                let _ = target.set_password(ftp.password.as_deref());
            }
            return crate::ftp_proxy::open(&request, &target, &proxy, context).await;
        }
        let options = ConnectOptions {
            certificate_check: match (&self.tls.ca_file, self.tls.insecure) {
                (_, true) => CertificateCheck::Insecure,
                (Some(ca), false) => CertificateCheck::CaFile(ca.clone()),
                (None, false) => CertificateCheck::SystemRoots,
            },
            connect_timeout: context.timeouts.connect.unwrap_or(Duration::from_secs(30)),
            io_timeout: context.timeouts.read.unwrap_or(Duration::from_secs(120)),
            ..ConnectOptions::default()
        };
        let session = RemoteSession::open(&ftp, &options)
            .await
            .map_err(|e| convert(&url, e))?;
        serve(session, &ftp, request).await
    }
}

/// Answers a request on an open session (FTP or SFTP): an upload for a body,
/// a listing for a directory URL, else a streamed download.
pub(crate) async fn serve(
    mut session: RemoteSession,
    ftp: &FtpUrl,
    mut request: Request,
) -> Result<Response> {
    let url = request.url().clone();
    let path = ftp.path.clone();
    let mut headers = Headers::new();

    if let Some(body) = request.take_body() {
        let result = upload(&mut session, &path, body).await;
        let _ = session.quit().await;
        let bytes = result.map_err(|e| match e {
            Ok(client) => convert(&url, client),
            Err(io) => io,
        })?;
        headers.set("Content-Length", "0");
        headers.set("X-Ftp-Uploaded-Bytes", bytes.to_string());
        return Ok(Response::from_bytes(200, "OK", headers, url, Vec::new()));
    }

    if ftp.names_directory() {
        let lines = session
            .list_lines(&path)
            .await
            .map_err(|e| convert(&url, e));
        let _ = session.quit().await;
        let mut text = lines?.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        headers.set("Content-Type", "text/plain");
        headers.set("Content-Length", text.len().to_string());
        return Ok(Response::from_bytes(
            200,
            "OK",
            headers,
            url,
            text.into_bytes(),
        ));
    }

    if let Ok(Some(size)) = session.size(&path).await {
        headers.set("Content-Length", size.to_string());
    }
    if let Ok(Some(t)) = session.modified(&path).await {
        headers.set("Last-Modified", http_date(t));
    }
    headers.set("Content-Type", guess_type(&path));
    // The transfer runs in a task that owns the session; the body is fed
    // through a small channel, so reading is streamed and errors arrive.
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(8);
    let (ready_tx, ready_rx) =
        tokio::sync::oneshot::channel::<std::result::Result<(), ClientError>>();
    tokio::spawn(async move {
        stream_download(&mut session, &path, tx, ready_tx).await;
        let _ = session.quit().await;
    });
    match ready_rx.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(convert(&url, e)),
        Err(_) => {
            return Err(UrlError::unreachable_at(
                &url,
                Unreachable::Other,
                "the transfer task ended",
            ));
        }
    }
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Ok(Response::new(
        200,
        "OK",
        headers,
        url,
        Box::pin(StreamReader::new(stream)),
    ))
}

async fn stream_download(
    session: &mut RemoteSession,
    path: &str,
    tx: tokio::sync::mpsc::Sender<std::io::Result<bytes::Bytes>>,
    ready: tokio::sync::oneshot::Sender<std::result::Result<(), ClientError>>,
) {
    let mut download = match session.download(path, 0).await {
        Ok(d) => {
            let _ = ready.send(Ok(()));
            d
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match download.read_chunk(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                if tx
                    .send(Ok(bytes::Bytes::copy_from_slice(&buf[..n])))
                    .await
                    .is_err()
                {
                    // Nobody reads any more: stop the transfer.
                    let _ = download.abort().await;
                    return;
                }
            }
            Err(e) => {
                let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                return;
            }
        }
    }
    if let Err(e) = download.finish().await {
        let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
    }
}

/// Sends a request body as STOR; the number of bytes sent.
async fn upload(
    session: &mut RemoteSession,
    path: &str,
    body: Body,
) -> std::result::Result<u64, std::result::Result<ClientError, UrlError>> {
    let mut reader: std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>> = match body {
        Body::Bytes(b) => Box::pin(std::io::Cursor::new(b)),
        Body::File(p) => Box::pin(tokio::fs::File::open(&p).await.map_err(|cause| {
            Err(UrlError::Io {
                context: p.display().to_string(),
                cause,
            })
        })?),
        Body::Reader(r) => r.into_inner(),
    };
    let mut upload = session
        .upload(path, UploadMode::Replace)
        .await
        .map_err(Ok)?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf).await.map_err(|cause| {
            Err(UrlError::Io {
                context: "reading the request body".to_owned(),
                cause,
            })
        })?;
        if n == 0 {
            break;
        }
        upload.write_chunk(&buf[..n]).await.map_err(Ok)?;
        total += n as u64;
    }
    upload.finish().await.map_err(Ok)?;
    Ok(total)
}
