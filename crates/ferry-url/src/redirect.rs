//! Redirects (RFC 9110 §15.4) and error statuses (urllib's
//! `HTTPRedirectHandler` and `HTTPErrorProcessor`).
//!
//! 301 and 302 turn a POST into a GET (as browsers and urllib do), 303 turns
//! anything but HEAD into a GET, 307 and 308 repeat the method and the body.
//! Redirects are followed to http, https and the FTP schemes only, never to
//! `file:` or `data:`; credentials (`Authorization`, `Cookie`,
//! `Proxy-Authorization`) are dropped when the redirect leaves the origin.

use crate::error::{Result, StatusError, UrlError};
use crate::opener::{Handler, Opener};
use crate::request::Request;
use crate::response::Response;

/// Follows redirects, up to a limit.
#[derive(Debug)]
pub struct RedirectHandler {
    max: u32,
}

impl RedirectHandler {
    pub fn new(max: u32) -> Self {
        RedirectHandler { max }
    }
}

fn origin(u: &url::Url) -> (String, Option<String>, Option<u16>) {
    (
        u.scheme().to_owned(),
        u.host_str().map(str::to_owned),
        u.port_or_known_default(),
    )
}

#[async_trait::async_trait]
impl Handler for RedirectHandler {
    fn name(&self) -> &str {
        "redirect"
    }

    fn order(&self) -> i32 {
        600
    }

    async fn process_response(
        &self,
        sent: &Request,
        replay: Option<&Request>,
        response: Response,
        opener: &Opener,
    ) -> Result<Response> {
        let status = response.status;
        if !matches!(status, 301 | 302 | 303 | 307 | 308) {
            return Ok(response);
        }
        let Some(location) = response.headers.get("Location").map(str::to_owned) else {
            return Ok(response);
        };
        let target = sent
            .url()
            .join(location.trim())
            .map_err(|e| UrlError::BadUrl {
                url: location.clone(),
                reason: format!("redirect target: {e}"),
            })?;
        if !matches!(target.scheme(), "http" | "https" | "ftp" | "ftpes" | "ftps") {
            return Err(UrlError::unsupported(
                sent.url(),
                format!("redirect to {}: is never followed", target.scheme()),
            ));
        }
        if sent.redirects >= self.max {
            return Err(UrlError::TooManyRedirects {
                url: crate::error::redacted(sent.url()),
                max: self.max,
            });
        }
        let method = sent.method().to_owned();
        let keep_method = matches!(status, 307 | 308)
            || (matches!(status, 301 | 302)
                && method != "POST"
                && method != "GET"
                && method != "HEAD");
        let mut next = if keep_method {
            let replayed = if method == "GET" || method == "HEAD" {
                Some(sent.shell())
            } else {
                replay.and_then(Request::try_clone)
            };
            match replayed {
                Some(r) => r,
                None => {
                    return Err(UrlError::unsupported(
                        sent.url(),
                        format!(
                            "{status} redirect to {target} needs the body again, which was a one-time stream"
                        ),
                    ));
                }
            }
        } else {
            sent.shell().into_get()
        };
        if origin(&target) != origin(sent.url()) {
            for h in ["Authorization", "Cookie", "Proxy-Authorization"] {
                next.headers.remove(h);
            }
        }
        next.set_url(target);
        next.redirects = sent.redirects + 1;
        next.auth_retried = false;
        next.proxy = None;
        drop(response);
        opener.open(next).await
    }
}

/// Turns a status of 400 or more into [`UrlError::Status`].
#[derive(Debug)]
pub struct ErrorHandler;

#[async_trait::async_trait]
impl Handler for ErrorHandler {
    fn name(&self) -> &str {
        "errors"
    }

    fn order(&self) -> i32 {
        1000
    }

    async fn process_response(
        &self,
        _sent: &Request,
        _replay: Option<&Request>,
        response: Response,
        _opener: &Opener,
    ) -> Result<Response> {
        if response.status < 400 {
            return Ok(response);
        }
        Err(UrlError::Status(Box::new(StatusError {
            url: response.url.clone(),
            code: response.status,
            reason: response.reason.clone(),
            headers: response.headers.clone(),
            body: response,
        })))
    }
}
