//! Openers built from handlers (urllib's `OpenerDirector`, `build_opener`,
//! `install_opener` and `urlopen`).
//!
//! Opening a request runs three passes over the handlers, in their `order()`:
//! every handler may rewrite the request (`process_request`: proxies,
//! credentials in the URL); the first handler that knows the URL's scheme opens
//! it (`open`); then every handler may look at the response and replace it
//! (`process_response`: follow a redirect, answer a 401, turn an error status
//! into [`UrlError::Status`]). A handler that needs a new request (a redirect, a
//! retry with credentials) calls [`Opener::open`] again.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::auth::{BasicAuthHandler, PasswordManager};
use crate::data::DataHandler;
use crate::error::{Result, UrlError};
use crate::file::FileHandler;
use crate::ftp::FtpHandler;
use crate::headers::Headers;
use crate::http::HttpHandler;
use crate::proxy::{Proxies, ProxyHandler};
use crate::redirect::{ErrorHandler, RedirectHandler};
use crate::request::{IntoRequest, Request, Timeouts};
use crate::response::Response;
use crate::sftp::SftpHandler;
use ferry_client::HostKeyCheck;

/// How a handler opens connections: timeouts (the request's, else the
/// opener's) and TLS trust.
#[derive(Debug, Clone, Default)]
pub struct OpenContext {
    pub timeouts: Timeouts,
}

/// TLS trust for https and FTPS: the system's roots, plus a CA file, or none
/// at all.
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    pub ca_file: Option<PathBuf>,
    pub insecure: bool,
}

/// A link in the chain. Implement it to add a scheme (`schemes` + `open`), to
/// rewrite requests (`process_request`) or to inspect or replace responses
/// (`process_response`).
#[async_trait::async_trait]
pub trait Handler: Send + Sync + std::fmt::Debug {
    /// A name: a handler replaces the one of the same name in an opener.
    fn name(&self) -> &str;

    /// Where it runs in the chain, lowest first (stock: proxy 100, credentials
    /// 400, scheme handlers 500, redirects 600, authentication 700, errors
    /// 1000).
    fn order(&self) -> i32 {
        500
    }

    /// The URL schemes this handler opens.
    fn schemes(&self) -> &[&str] {
        &[]
    }

    /// Rewrites a request before it is opened.
    fn process_request(&self, _request: &mut Request) -> Result<()> {
        Ok(())
    }

    /// Opens a request whose scheme is one of [`Handler::schemes`].
    async fn open(&self, request: Request, _context: &OpenContext) -> Result<Response> {
        Err(UrlError::unsupported(
            request.url(),
            format!("{} opens nothing", self.name()),
        ))
    }

    /// Looks at a response. `sent` is the request as sent (without its body);
    /// `replay` a full copy when its body can be sent again.
    async fn process_response(
        &self,
        _sent: &Request,
        _replay: Option<&Request>,
        response: Response,
        _opener: &Opener,
    ) -> Result<Response> {
        Ok(response)
    }
}

/// Opens URLs through a chain of handlers.
#[derive(Debug, Clone)]
pub struct Opener {
    handlers: Vec<Arc<dyn Handler>>,
    /// Header fields added to every request that lacks them (urllib's
    /// `addheaders`); `User-Agent: ferry/<version>` by default.
    pub add_headers: Headers,
    /// Timeouts for requests that set none.
    pub timeouts: Timeouts,
}

/// The future of [`Opener::open`].
pub type OpenFuture<'a> = Pin<Box<dyn Future<Output = Result<Response>> + Send + 'a>>;

impl Opener {
    /// A builder with the stock handlers.
    pub fn builder() -> OpenerBuilder {
        OpenerBuilder::default()
    }

    /// The handlers, in the order they run.
    pub fn handler_names(&self) -> Vec<&str> {
        self.handlers.iter().map(|h| h.name()).collect()
    }

    /// Opens a URL or a request.
    pub fn open<'a>(&'a self, request: impl IntoRequest) -> OpenFuture<'a> {
        let request = request.into_request();
        Box::pin(async move { self.open_request(request?).await })
    }

    async fn open_request(&self, mut request: Request) -> Result<Response> {
        for (name, value) in self.add_headers.iter() {
            if !request.headers.contains(name) {
                request.headers.set(name, value);
            }
        }
        for h in &self.handlers {
            h.process_request(&mut request)?;
        }
        let scheme = request.url().scheme().to_owned();
        let handler = self
            .handlers
            .iter()
            .find(|h| h.schemes().iter().any(|s| s.eq_ignore_ascii_case(&scheme)))
            .ok_or_else(|| UrlError::UnknownScheme {
                url: crate::error::redacted(request.url()),
                scheme: scheme.clone(),
            })?;
        let replay = request.try_clone();
        let sent = request.shell();
        let context = OpenContext {
            timeouts: request.timeouts.or(self.timeouts),
        };
        let mut response = handler.open(request, &context).await?;
        for h in &self.handlers {
            response = h
                .process_response(&sent, replay.as_ref(), response, self)
                .await?;
        }
        Ok(response)
    }
}

/// Builds an [`Opener`]: the stock handlers, configured, plus your own
/// (urllib's `build_opener`).
#[derive(Debug)]
pub struct OpenerBuilder {
    extra: Vec<Arc<dyn Handler>>,
    removed: Vec<String>,
    proxies: Proxies,
    passwords: PasswordManager,
    tls: TlsSettings,
    timeouts: Timeouts,
    user_agent: String,
    max_redirects: u32,
    netrc: bool,
    host_key_check: Option<HostKeyCheck>,
}

impl Default for OpenerBuilder {
    fn default() -> Self {
        OpenerBuilder {
            extra: Vec::new(),
            removed: Vec::new(),
            proxies: Proxies::from_env(),
            passwords: PasswordManager::default(),
            tls: TlsSettings::default(),
            timeouts: Timeouts::default(),
            user_agent: format!("ferry/{}", env!("CARGO_PKG_VERSION")),
            max_redirects: 10,
            netrc: true,
            host_key_check: None,
        }
    }
}

impl OpenerBuilder {
    /// Adds a handler; it replaces a stock handler of the same name.
    pub fn handler(mut self, handler: impl Handler + 'static) -> Self {
        self.extra.push(Arc::new(handler));
        self
    }

    /// Leaves out the stock handler of this name (`"http"`, `"ftp"`, `"sftp"`, `"file"`,
    /// `"data"`, `"proxy"`, `"credentials"`, `"redirect"`, `"basic-auth"`,
    /// `"errors"`).
    pub fn without(mut self, name: &str) -> Self {
        self.removed.push(name.to_owned());
        self
    }

    /// Proxies: [`Proxies::from_env`] by default, a map, or none.
    pub fn proxies(mut self, proxies: Proxies) -> Self {
        self.proxies = proxies;
        self
    }

    /// Credentials for 401 challenges (and FTP logins).
    pub fn password_manager(mut self, passwords: PasswordManager) -> Self {
        self.passwords = passwords;
        self
    }

    /// Whether ~/.netrc (or $NETRC) supplies credentials nobody else did.
    pub fn netrc(mut self, on: bool) -> Self {
        self.netrc = on;
        self
    }

    /// Trusts the CA certificates in this PEM file (https and FTPS).
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.tls.ca_file = Some(path.into());
        self
    }

    /// Accepts any certificate (and, for `sftp:`, any host key).
    pub fn insecure(mut self, on: bool) -> Self {
        self.tls.insecure = on;
        self
    }

    /// How `sftp:` checks SSH host keys (default: `~/.ssh/known_hosts`, or any
    /// key when [`Self::insecure`]).
    pub fn host_key_check(mut self, check: HostKeyCheck) -> Self {
        self.host_key_check = Some(check);
        self
    }

    /// The default for requests that set no timeout.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeouts = Timeouts::both(d);
        self
    }

    /// Default timeouts, separately.
    pub fn timeouts(mut self, t: Timeouts) -> Self {
        self.timeouts = t;
        self
    }

    /// The User-Agent sent when a request sets none (`ferry/<version>`).
    pub fn user_agent(mut self, ua: impl Into<String>) -> Self {
        self.user_agent = ua.into();
        self
    }

    /// The most redirects followed for one request (10).
    pub fn max_redirects(mut self, n: u32) -> Self {
        self.max_redirects = n;
        self
    }

    pub fn build(self) -> Opener {
        let passwords = Arc::new(self.passwords);
        let stock: Vec<Arc<dyn Handler>> = vec![
            Arc::new(ProxyHandler::new(self.proxies)),
            Arc::new(crate::auth::UrlCredentialsHandler),
            Arc::new(HttpHandler::new(self.tls.clone())),
            Arc::new(SftpHandler::new(
                self.host_key_check.clone().unwrap_or(if self.tls.insecure {
                    HostKeyCheck::Insecure
                } else {
                    HostKeyCheck::default()
                }),
                passwords.clone(),
                self.netrc,
            )),
            Arc::new(FtpHandler::new(self.tls, passwords.clone(), self.netrc)),
            Arc::new(FileHandler),
            Arc::new(DataHandler),
            Arc::new(RedirectHandler::new(self.max_redirects)),
            Arc::new(BasicAuthHandler::new(passwords, self.netrc)),
            Arc::new(ErrorHandler),
        ];
        let mut handlers: Vec<Arc<dyn Handler>> = stock
            .into_iter()
            .filter(|h| !self.removed.iter().any(|r| r == h.name()))
            .filter(|h| !self.extra.iter().any(|e| e.name() == h.name()))
            .collect();
        handlers.extend(self.extra);
        handlers.sort_by_key(|h| h.order());
        let mut add_headers = Headers::new();
        add_headers.set("User-Agent", self.user_agent);
        Opener {
            handlers,
            add_headers,
            timeouts: self.timeouts,
        }
    }
}

/// An opener with the stock handlers and `extra` added (replacing stock ones
/// of the same name): urllib's `build_opener(*handlers)`.
pub fn build_opener(extra: Vec<Arc<dyn Handler>>) -> Opener {
    let mut builder = Opener::builder();
    builder.extra = extra;
    builder.build()
}

static INSTALLED: RwLock<Option<Arc<Opener>>> = RwLock::new(None);

/// Makes `opener` the one [`urlopen`] uses (urllib's `install_opener`).
pub fn install_opener(opener: Opener) {
    if let Ok(mut slot) = INSTALLED.write() {
        *slot = Some(Arc::new(opener));
    }
}

/// The installed opener, or a default one (built once).
pub fn installed_opener() -> Arc<Opener> {
    if let Ok(slot) = INSTALLED.read()
        && let Some(o) = slot.as_ref()
    {
        return o.clone();
    }
    let opener = Arc::new(Opener::builder().build());
    if let Ok(mut slot) = INSTALLED.write() {
        return slot.get_or_insert(opener).clone();
    }
    opener
}

/// Opens a URL or a request with the installed opener.
pub async fn urlopen(request: impl IntoRequest) -> Result<Response> {
    let request = request.into_request()?;
    installed_opener().open(request).await
}
