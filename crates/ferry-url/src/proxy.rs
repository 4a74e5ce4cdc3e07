//! Proxies (urllib's `ProxyHandler` and `getproxies`): from the environment
//! (`http_proxy`, `https_proxy`, `all_proxy`, `no_proxy`, in lower or upper
//! case), from an explicit map, or none. HTTP goes through the proxy as an
//! absolute-URI request; HTTPS through a CONNECT tunnel; credentials in the
//! proxy URL (`http://user:pass@proxy:3128`) answer the proxy's challenge.
//!
//! `ftp:` goes through `ftp_proxy` (or `all_proxy`) as a GET of the `ftp://`
//! URL, which the proxy carries out in FTP (crate::ftp_proxy); `ftpes:` and
//! `ftps:` connect directly, as TLS to the FTP server cannot pass an HTTP proxy
//! that speaks FTP for us.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::error::{Result, UrlError};
use crate::opener::Handler;
use crate::request::Request;

/// Which proxy serves which scheme, and which hosts go direct.
#[derive(Debug, Clone, Default)]
pub struct Proxies {
    by_scheme: HashMap<String, url::Url>,
    all: Option<url::Url>,
    no_proxy: Vec<String>,
}

impl Proxies {
    /// No proxy at all.
    pub fn none() -> Self {
        Proxies::default()
    }

    /// From the environment. The upper-case `HTTP_PROXY` is ignored when
    /// `REQUEST_METHOD` is set (a CGI program, where it could come from a
    /// request header: "httpoxy").
    pub fn from_env() -> Self {
        let get = |name: &str| {
            std::env::var(name.to_ascii_lowercase())
                .ok()
                .or_else(|| {
                    let cgi = std::env::var_os("REQUEST_METHOD").is_some();
                    if cgi && name.eq_ignore_ascii_case("http_proxy") {
                        None
                    } else {
                        std::env::var(name.to_ascii_uppercase()).ok()
                    }
                })
                .filter(|v| !v.trim().is_empty())
        };
        let mut p = Proxies::default();
        for scheme in ["http", "https", "ftp"] {
            if let Some(v) = get(&format!("{scheme}_proxy")) {
                let _ = p.set(scheme, &v);
            }
        }
        if let Some(v) = get("all_proxy").and_then(|v| parse_proxy(&v)) {
            p.all = Some(v);
        }
        if let Some(v) = get("no_proxy") {
            p.no_proxy = v
                .split(',')
                .map(|s| s.trim().to_ascii_lowercase())
                .filter(|s| !s.is_empty())
                .collect();
        }
        p
    }

    /// Sets the proxy for a scheme (`"http"`, `"https"`, or `"all"`). A proxy
    /// given without a scheme is `http://`.
    pub fn set(&mut self, scheme: &str, proxy: &str) -> Result<()> {
        let url = parse_proxy(proxy).ok_or_else(|| UrlError::BadUrl {
            url: proxy.to_owned(),
            reason: "not a proxy URL".to_owned(),
        })?;
        if scheme == "all" {
            self.all = Some(url);
        } else {
            self.by_scheme.insert(scheme.to_ascii_lowercase(), url);
        }
        Ok(())
    }

    /// Hosts that go direct: `example.com` (and its subdomains), `.example.com`,
    /// an address, a CIDR block, or `*` for all.
    pub fn set_no_proxy(&mut self, list: &str) {
        self.no_proxy = list
            .split(',')
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect();
    }

    /// The proxy for a URL, if any.
    pub fn for_url(&self, url: &url::Url) -> Option<&url::Url> {
        let host = url
            .host_str()?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        if self.bypass(&host, url.port_or_known_default()) {
            return None;
        }
        self.by_scheme.get(url.scheme()).or(self.all.as_ref())
    }

    fn bypass(&self, host: &str, port: Option<u16>) -> bool {
        let ip: Option<IpAddr> = host.parse().ok();
        self.no_proxy.iter().any(|entry| {
            if entry == "*" {
                return true;
            }
            // An entry may carry a port: it then matches that port only.
            let (name, entry_port) = match entry.rsplit_once(':') {
                Some((n, p)) if !n.contains(':') || n.ends_with(']') => (n, p.parse::<u16>().ok()),
                _ => (entry.as_str(), None),
            };
            if entry_port.is_some() && entry_port != port {
                return false;
            }
            let name = name.trim_start_matches('[').trim_end_matches(']');
            if let Some(ip) = ip {
                if let Ok(net) = name.parse::<ipnet::IpNet>() {
                    return net.contains(&ip);
                }
                return name.parse::<IpAddr>().is_ok_and(|n| n == ip);
            }
            let name = name.trim_start_matches('.');
            host == name || host.ends_with(&format!(".{name}"))
        })
    }
}

fn parse_proxy(text: &str) -> Option<url::Url> {
    let text = text.trim();
    let with_scheme = if text.contains("://") {
        text.to_owned()
    } else {
        format!("http://{text}")
    };
    url::Url::parse(&with_scheme)
        .ok()
        .filter(|u| u.host_str().is_some())
}

/// Sets [`Request::proxy`] for http, https and ftp requests.
#[derive(Debug)]
pub struct ProxyHandler {
    proxies: Proxies,
}

impl ProxyHandler {
    pub fn new(proxies: Proxies) -> Self {
        ProxyHandler { proxies }
    }
}

#[async_trait::async_trait]
impl Handler for ProxyHandler {
    fn name(&self) -> &str {
        "proxy"
    }

    fn order(&self) -> i32 {
        100
    }

    fn process_request(&self, request: &mut Request) -> Result<()> {
        if request.proxy.is_none() && matches!(request.url().scheme(), "http" | "https" | "ftp") {
            request.proxy = self.proxies.for_url(request.url()).cloned();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> url::Url {
        url::Url::parse(s).expect("url")
    }

    #[test]
    fn schemes_all_and_no_proxy() {
        let mut p = Proxies::none();
        p.set("http", "proxy:3128").expect("set");
        p.set("all", "socks5://s:1080").expect("set");
        p.set_no_proxy("example.com, .internal, 10.0.0.0/8, ::1, localhost:8080");
        assert_eq!(
            p.for_url(&u("http://a.org/")).map(url::Url::as_str),
            Some("http://proxy:3128/")
        );
        assert_eq!(
            p.for_url(&u("https://a.org/")).map(url::Url::as_str),
            Some("socks5://s:1080")
        );
        for direct in [
            "http://example.com/",
            "http://www.example.com/",
            "http://x.internal/",
            "http://10.1.2.3/",
            "http://[::1]/",
            "http://localhost:8080/",
        ] {
            assert!(p.for_url(&u(direct)).is_none(), "{direct}");
        }
        assert!(p.for_url(&u("http://notexample.com/")).is_some());
        assert!(p.for_url(&u("http://localhost:9090/")).is_some());
        p.set_no_proxy("*");
        assert!(p.for_url(&u("http://a.org/")).is_none());
    }
}
