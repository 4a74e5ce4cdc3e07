//! ferry-url: open URLs the way Python's urllib does.
//!
//! One interface for `http`, `https`, `ftp`, `ftpes`, `ftps`, `sftp`, `file` and `data`
//! URLs: [`Request`]s with header fields and bodies, [`Response`]s with a status,
//! header fields, the final URL and a streamed body, and [`UrlError`], which
//! tells a URL that could not be reached from a server that answered with an
//! error. An [`Opener`] is a chain of [`Handler`]s (proxies, credentials, one
//! handler per scheme, redirects, Basic authentication, error statuses); you
//! can add your own, replace or remove the stock ones, and install an opener
//! for [`urlopen`]. The API is async; [`blocking`] has the same for programs
//! without a runtime. The guide is docs/url.md.
//!
//! The examples below are those of the urllib HOWTO, run against a small
//! server on loopback (`ferry_url::doc_server`, hidden from these docs).
//!
//! Fetching a URL (`urllib.request.urlopen`):
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! # let base = ferry_url::doc_server::start();
//! let response = ferry_url::urlopen(format!("{base}/")).await?;
//! assert_eq!(response.status, 200);
//! let html = response.text().await?;
//! assert!(html.contains("<html>"));
//! # Ok::<(), ferry_url::UrlError>(())
//! # }).unwrap();
//! ```
//!
//! Any scheme, the same way (here an RFC 2397 `data:` URL):
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let body = ferry_url::urlopen("data:,Hello%2C%20World!").await?.text().await?;
//! assert_eq!(body, "Hello, World!");
//! # Ok::<(), ferry_url::UrlError>(())
//! # }).unwrap();
//! ```
//!
//! Data: a POST of form fields (`urllib.parse.urlencode` and `Request(url, data)`):
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! # let base = ferry_url::doc_server::start();
//! use ferry_url::{Request, urlencode, urlopen};
//! let data = urlencode(&[("name", "Michael Foord"), ("location", "Northampton"), ("language", "Python")]);
//! let request = Request::new(&format!("{base}/cgi-bin/register.cgi"))?.with_data(data);
//! assert_eq!(request.method(), "POST");
//! let page = urlopen(request).await?.text().await?;
//! assert!(page.contains("name=Michael+Foord"));
//! # Ok::<(), ferry_url::UrlError>(())
//! # }).unwrap();
//! ```
//!
//! Headers: a User-Agent of your own (the default is `ferry/<version>`):
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! # let base = ferry_url::doc_server::start();
//! use ferry_url::{Request, urlopen};
//! let request = Request::new(&format!("{base}/echo-headers"))?
//!     .with_header("User-Agent", "Mozilla/5.0 (Windows NT 6.1; Win64; x64)");
//! let seen = urlopen(request).await?.text().await?;
//! assert!(seen.contains("user-agent: Mozilla/5.0 (Windows NT 6.1; Win64; x64)"));
//! # Ok::<(), ferry_url::UrlError>(())
//! # }).unwrap();
//! ```
//!
//! Handling exceptions: `URLError` (could not reach) and `HTTPError` (an error
//! status, whose body can still be read):
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! # let base = ferry_url::doc_server::start();
//! use ferry_url::{Unreachable, UrlError, urlopen};
//! match urlopen("http://127.0.0.1:1/").await {
//!     Err(UrlError::Unreachable { kind, .. }) => assert_eq!(kind, Unreachable::Refused),
//!     other => panic!("{other:?}"),
//! }
//! match urlopen(format!("{base}/missing")).await {
//!     Err(UrlError::Status(e)) => {
//!         assert_eq!((e.code, e.reason.as_str()), (404, "Not Found"));
//!         assert!(e.body.text().await?.contains("Nothing matches"));
//!     }
//!     other => panic!("{other:?}"),
//! }
//! # Ok::<(), ferry_url::UrlError>(())
//! # }).unwrap();
//! ```
//!
//! info and geturl: the header fields and the URL after redirects:
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! # let base = ferry_url::doc_server::start();
//! let response = ferry_url::urlopen(format!("{base}/moved")).await?;
//! assert_eq!(response.url.path(), "/");
//! assert_eq!(response.headers.get("content-type"), Some("text/html"));
//! # Ok::<(), ferry_url::UrlError>(())
//! # }).unwrap();
//! ```
//!
//! Openers and handlers, and Basic authentication with a password manager
//! (`HTTPPasswordMgrWithDefaultRealm`, `HTTPBasicAuthHandler`, `build_opener`,
//! `install_opener`):
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! # let base = ferry_url::doc_server::start();
//! use ferry_url::{Opener, PasswordManager, install_opener, urlopen};
//! let mut passwords = PasswordManager::new();
//! // None: the default realm, for whatever realm the server names.
//! passwords.add_password(None, &base, "username", "password");
//! let opener = Opener::builder().password_manager(passwords).netrc(false).build();
//! let page = opener.open(format!("{base}/private/")).await?.text().await?;
//! assert!(page.contains("welcome, username"));
//! install_opener(opener);
//! assert_eq!(urlopen(format!("{base}/private/")).await?.status, 200);
//! # Ok::<(), ferry_url::UrlError>(())
//! # }).unwrap();
//! ```
//!
//! Proxies: from `http_proxy` and friends by default; none, or a map, on request:
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! # let base = ferry_url::doc_server::start();
//! use ferry_url::{Opener, Proxies};
//! let direct = Opener::builder().proxies(Proxies::none()).build();
//! assert_eq!(direct.open(format!("{base}/")).await?.status, 200);
//! let mut proxies = Proxies::none();
//! proxies.set("http", "http://127.0.0.1:1")?;
//! proxies.set_no_proxy("localhost");
//! let through = Opener::builder().proxies(proxies).build();
//! assert!(through.open(format!("{base}/")).await.is_err()); // no proxy listens there
//! # Ok::<(), ferry_url::UrlError>(())
//! # }).unwrap();
//! ```
//!
//! Sockets and layers: timeouts, per request or as the opener's default:
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! # let base = ferry_url::doc_server::start();
//! use std::time::Duration;
//! use ferry_url::{Request, Unreachable, urlopen};
//! let request = Request::new(&format!("{base}/slow"))?.with_timeout(Duration::from_millis(300));
//! let e = urlopen(request).await.expect_err("the server takes 2 s");
//! assert_eq!(e.unreachable(), Some(Unreachable::Timeout));
//! # Ok::<(), ferry_url::UrlError>(())
//! # }).unwrap();
//! ```

pub mod auth;
pub mod blocking;
pub mod data;
#[doc(hidden)]
pub mod doc_server;
pub mod error;
pub mod file;
pub mod ftp;
mod ftp_proxy;
pub mod headers;
pub mod http;
pub mod opener;
pub mod proxy;
pub mod redirect;
pub mod request;
pub mod response;
pub mod sftp;

pub use auth::PasswordManager;
pub use error::{Result, StatusError, Unreachable, UrlError};
pub use headers::Headers;
pub use opener::{
    Handler, OpenContext, Opener, OpenerBuilder, build_opener, install_opener, urlopen,
};
pub use proxy::Proxies;
pub use request::{Body, IntoRequest, Request, Timeouts, quote, urlencode};
pub use response::Response;
