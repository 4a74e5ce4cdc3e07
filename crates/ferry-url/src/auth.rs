//! Basic authentication (RFC 7617): a password manager keyed by realm and URL
//! prefix (urllib's `HTTPPasswordMgrWithDefaultRealm`), the handler that
//! answers 401 challenges by retrying once with credentials
//! (`HTTPBasicAuthHandler`), and credentials written in the URL.

use base64::Engine;

use crate::error::Result;
use crate::opener::{Handler, Opener};
use crate::request::Request;
use crate::response::Response;

#[derive(Debug, Clone)]
struct Entry {
    realm: Option<String>,
    prefix: url::Url,
    user: String,
    password: String,
}

/// Credentials by realm and URL prefix. An entry added with realm `None` is
/// the default for any realm (the "WithDefaultRealm" behaviour).
#[derive(Debug, Clone, Default)]
pub struct PasswordManager {
    entries: Vec<Entry>,
}

impl PasswordManager {
    pub fn new() -> Self {
        PasswordManager::default()
    }

    /// Adds credentials for `uri` and everything under it. `uri` is a URL
    /// (`https://example.com/private/`) or `host[:port]` (any scheme, any path).
    pub fn add_password(&mut self, realm: Option<&str>, uri: &str, user: &str, password: &str) {
        let prefix = if uri.contains("://") {
            url::Url::parse(uri).ok()
        } else {
            url::Url::parse(&format!("any://{uri}/")).ok()
        };
        if let Some(prefix) = prefix {
            self.entries.push(Entry {
                realm: realm.map(str::to_owned),
                prefix,
                user: user.to_owned(),
                password: password.to_owned(),
            });
        }
    }

    /// The credentials for `url` in `realm`: an entry for that realm first,
    /// then a default-realm entry; the longest matching prefix wins.
    pub fn find_user_password(
        &self,
        realm: Option<&str>,
        url: &url::Url,
    ) -> Option<(String, String)> {
        let best = |want: Option<&str>| {
            self.entries
                .iter()
                .filter(|e| e.realm.as_deref() == want && is_under(url, &e.prefix))
                .max_by_key(|e| e.prefix.path().len())
                .map(|e| (e.user.clone(), e.password.clone()))
        };
        realm.and_then(|r| best(Some(r))).or_else(|| best(None))
    }
}

/// `url` is `prefix` or below it: same host and port (and scheme, unless the
/// prefix was given without one), path under the prefix's path.
fn is_under(url: &url::Url, prefix: &url::Url) -> bool {
    let any_scheme = prefix.scheme() == "any";
    if !any_scheme && prefix.scheme() != url.scheme() {
        return false;
    }
    let port_ok = if any_scheme {
        prefix.port().is_none() || prefix.port() == url.port_or_known_default()
    } else {
        prefix.port_or_known_default() == url.port_or_known_default()
    };
    if !port_ok || prefix.host_str() != url.host_str() {
        return false;
    }
    let base = prefix.path();
    let path = url.path();
    path == base || path.starts_with(&format!("{}/", base.trim_end_matches('/'))) || base == "/"
}

/// `Basic base64(user:password)`.
pub fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// The realm of a `WWW-Authenticate: Basic realm="..."` challenge, or `None`
/// when no challenge is for Basic.
pub fn basic_realm<'a>(challenges: impl Iterator<Item = &'a str>) -> Option<Option<String>> {
    for c in challenges {
        let t = c.trim();
        if t.len() >= 5 && t[..5].eq_ignore_ascii_case("basic") {
            let realm = t.find("realm=").map(|i| {
                let v = &t[i + 6..];
                match v.strip_prefix('"') {
                    Some(q) => q.split('"').next().unwrap_or("").to_owned(),
                    None => v.split([',', ' ']).next().unwrap_or("").to_owned(),
                }
            });
            return Some(realm);
        }
    }
    None
}

/// Credentials in an http(s) URL (`http://user:pass@host/`) become an
/// `Authorization` header sent at once, and leave the URL.
#[derive(Debug)]
pub struct UrlCredentialsHandler;

#[async_trait::async_trait]
impl Handler for UrlCredentialsHandler {
    fn name(&self) -> &str {
        "credentials"
    }

    fn order(&self) -> i32 {
        400
    }

    fn process_request(&self, request: &mut Request) -> Result<()> {
        let url = request.url();
        if !matches!(url.scheme(), "http" | "https") || url.username().is_empty() {
            return Ok(());
        }
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let user = decode(url.username());
        let password = decode(url.password().unwrap_or(""));
        let mut clean = url.clone();
        let _ = clean.set_username("");
        let _ = clean.set_password(None);
        if !request.headers.contains("Authorization") {
            request
                .headers
                .set("Authorization", basic(&user, &password));
        }
        request.set_url(clean);
        Ok(())
    }
}

/// Answers a 401 with `Basic` credentials from the password manager (or
/// ~/.netrc), retrying the request once.
#[derive(Debug)]
pub struct BasicAuthHandler {
    passwords: std::sync::Arc<PasswordManager>,
    netrc: bool,
}

impl BasicAuthHandler {
    pub fn new(passwords: std::sync::Arc<PasswordManager>, netrc: bool) -> Self {
        BasicAuthHandler { passwords, netrc }
    }
}

#[async_trait::async_trait]
impl Handler for BasicAuthHandler {
    fn name(&self) -> &str {
        "basic-auth"
    }

    fn order(&self) -> i32 {
        700
    }

    async fn process_response(
        &self,
        sent: &Request,
        replay: Option<&Request>,
        response: Response,
        opener: &Opener,
    ) -> Result<Response> {
        if response.status != 401 || sent.auth_retried {
            return Ok(response);
        }
        let Some(realm) = basic_realm(response.headers.get_all("WWW-Authenticate")) else {
            return Ok(response);
        };
        let url = sent.url();
        let found = self
            .passwords
            .find_user_password(realm.as_deref(), url)
            .or_else(|| {
                if !self.netrc {
                    return None;
                }
                let netrc = ferry_client::netrc::Netrc::load_default();
                let entry = netrc.lookup(url.host_str()?)?;
                Some((
                    entry.login.clone()?,
                    entry.password.clone().unwrap_or_default(),
                ))
            });
        let (Some((user, password)), Some(replay)) = (found, replay) else {
            return Ok(response);
        };
        let Some(mut retry) = replay.try_clone() else {
            return Ok(response);
        };
        let header = basic(&user, &password);
        if sent.headers.get("Authorization") == Some(header.as_str()) {
            // These very credentials were refused.
            return Ok(response);
        }
        retry.headers.set("Authorization", header);
        retry.auth_retried = true;
        drop(response);
        opener.open(retry).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> url::Url {
        url::Url::parse(s).expect("url")
    }

    #[test]
    fn realms_default_realm_and_prefixes() {
        let mut pm = PasswordManager::new();
        pm.add_password(Some("Admin"), "https://h/admin/", "root", "r");
        pm.add_password(None, "https://h/", "anyone", "a");
        pm.add_password(None, "h:8080", "port", "p");
        assert_eq!(
            pm.find_user_password(Some("Admin"), &u("https://h/admin/x")),
            Some(("root".into(), "r".into()))
        );
        // Another realm falls back to the default-realm entry.
        assert_eq!(
            pm.find_user_password(Some("Other"), &u("https://h/admin/x")),
            Some(("anyone".into(), "a".into()))
        );
        // Not under the prefix, another scheme, another port.
        assert_eq!(
            pm.find_user_password(Some("Admin"), &u("https://h/administrator")),
            Some(("anyone".into(), "a".into()))
        );
        assert_eq!(pm.find_user_password(None, &u("http://h/")), None);
        assert_eq!(
            pm.find_user_password(None, &u("http://h:8080/x")),
            Some(("port".into(), "p".into()))
        );
        assert_eq!(pm.find_user_password(None, &u("https://other/")), None);
    }

    #[test]
    fn challenges() {
        assert_eq!(
            basic_realm(["Basic realm=\"ferry test\""].into_iter()),
            Some(Some("ferry test".into()))
        );
        assert_eq!(
            basic_realm(["Digest realm=\"x\"", "basic realm=y, charset=\"UTF-8\""].into_iter()),
            Some(Some("y".into()))
        );
        assert_eq!(basic_realm(["Bearer"].into_iter()), None);
        assert_eq!(
            basic("Aladdin", "open sesame"),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
    }
}
