//! `data:` URLs (RFC 2397): `data:[<mediatype>][;base64],<data>`.

use base64::Engine;

use crate::error::{Result, UrlError};
use crate::headers::Headers;
use crate::opener::{Handler, OpenContext};
use crate::request::Request;
use crate::response::Response;

/// Opens `data:` URLs.
#[derive(Debug)]
pub struct DataHandler;

/// The media type and the bytes of a data URL.
pub fn parse_data_url(url: &url::Url) -> Result<(String, Vec<u8>)> {
    let bad = |reason: &str| UrlError::unsupported(url, reason);
    let rest = &url.as_str()["data:".len()..];
    let (meta, data) = rest
        .split_once(',')
        .ok_or_else(|| bad("a data URL needs a comma before its data"))?;
    let (media, is_base64) = match meta.strip_suffix(";base64") {
        Some(m) => (m, true),
        None => (meta, false),
    };
    let media = if media.is_empty() {
        "text/plain;charset=US-ASCII".to_owned()
    } else if media.starts_with(';') {
        format!("text/plain{media}")
    } else {
        percent_encoding::percent_decode_str(media)
            .decode_utf8_lossy()
            .into_owned()
    };
    let raw: Vec<u8> = percent_encoding::percent_decode_str(data).collect();
    let bytes = if is_base64 {
        let compact: Vec<u8> = raw
            .into_iter()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        base64::engine::general_purpose::STANDARD
            .decode(&compact)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(&compact))
            .map_err(|e| bad(&format!("bad base64 data: {e}")))?
    } else {
        raw
    };
    Ok((media, bytes))
}

#[async_trait::async_trait]
impl Handler for DataHandler {
    fn name(&self) -> &str {
        "data"
    }

    fn schemes(&self) -> &[&str] {
        &["data"]
    }

    async fn open(&self, request: Request, _context: &OpenContext) -> Result<Response> {
        if request.has_body() {
            return Err(UrlError::unsupported(
                request.url(),
                "a data URL takes no body",
            ));
        }
        let (media, bytes) = parse_data_url(request.url())?;
        let mut headers = Headers::new();
        headers.set("Content-Type", media);
        headers.set("Content-Length", bytes.len().to_string());
        Ok(Response::from_bytes(
            200,
            "OK",
            headers,
            request.url().clone(),
            bytes,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<(String, Vec<u8>)> {
        parse_data_url(&url::Url::parse(s).expect("url"))
    }

    #[test]
    fn rfc_2397_examples() {
        assert_eq!(
            parse("data:,A%20brief%20note").expect("ok"),
            (
                "text/plain;charset=US-ASCII".into(),
                b"A brief note".to_vec()
            )
        );
        let (m, b) = parse("data:text/plain;charset=utf-8;base64,aGVsbG8gd29ybGQ=").expect("ok");
        assert_eq!(
            (m.as_str(), b.as_slice()),
            ("text/plain;charset=utf-8", &b"hello world"[..])
        );
        let (m, _) = parse("data:;charset=utf-8,x").expect("ok");
        assert_eq!(m, "text/plain;charset=utf-8");
        let (_, b) = parse("data:;base64,aGk").expect("unpadded");
        assert_eq!(b, b"hi");
        assert!(parse("data:text/plain").is_err());
        assert!(parse("data:;base64,!!!").is_err());
    }
}
