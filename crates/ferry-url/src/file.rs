//! `file:` URLs: local files (streamed) and directories (a listing of names).

use crate::error::{Result, Unreachable, UrlError};
use crate::headers::Headers;
use crate::opener::{Handler, OpenContext};
use crate::request::Request;
use crate::response::Response;

/// Opens `file:` URLs on this host (`file:///path` or `file://localhost/path`).
#[derive(Debug)]
pub struct FileHandler;

/// An HTTP date (RFC 9110 §5.6.7) for `Last-Modified`.
pub fn http_date(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[usize::from(t.weekday().number_days_from_monday())],
        t.day(),
        MONTHS[usize::from(u8::from(t.month())) - 1],
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// A content type from a file name's extension.
pub fn guess_type(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "txt" | "text" | "log" | "md" => "text/plain",
        "html" | "htm" => "text/html",
        "css" => "text/css",
        "csv" => "text/csv",
        "json" => "application/json",
        "xml" => "application/xml",
        "js" => "text/javascript",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" | "tgz" => "application/gzip",
        "tar" => "application/x-tar",
        _ => "application/octet-stream",
    }
}

#[async_trait::async_trait]
impl Handler for FileHandler {
    fn name(&self) -> &str {
        "file"
    }

    fn schemes(&self) -> &[&str] {
        &["file"]
    }

    async fn open(&self, request: Request, _context: &OpenContext) -> Result<Response> {
        let url = request.url().clone();
        if request.has_body() {
            return Err(UrlError::unsupported(&url, "file URLs are read-only here"));
        }
        match url.host_str() {
            None | Some("") | Some("localhost") => {}
            Some(other) => {
                return Err(UrlError::unsupported(
                    &url,
                    format!("file URL on another host ({other})"),
                ));
            }
        }
        let path = url
            .to_file_path()
            .map_err(|()| UrlError::unsupported(&url, "not a local path"))?;
        let not_found = |e: std::io::Error| {
            UrlError::unreachable_at(&url, Unreachable::NotFound, e.to_string())
        };
        let meta = tokio::fs::metadata(&path).await.map_err(not_found)?;
        let mut headers = Headers::new();
        if let Ok(m) = meta.modified() {
            headers.set("Last-Modified", http_date(m.into()));
        }
        if meta.is_dir() {
            let mut names = Vec::new();
            let mut dir = tokio::fs::read_dir(&path).await.map_err(not_found)?;
            while let Some(e) = dir.next_entry().await.map_err(not_found)? {
                let mut name = e.file_name().to_string_lossy().into_owned();
                if e.file_type().await.is_ok_and(|t| t.is_dir()) {
                    name.push('/');
                }
                names.push(name);
            }
            names.sort();
            let mut body = names.join("\n");
            if !body.is_empty() {
                body.push('\n');
            }
            headers.set("Content-Type", "text/plain");
            headers.set("Content-Length", body.len().to_string());
            return Ok(Response::from_bytes(
                200,
                "OK",
                headers,
                url,
                body.into_bytes(),
            ));
        }
        let file = tokio::fs::File::open(&path).await.map_err(not_found)?;
        headers.set("Content-Type", guess_type(&path.to_string_lossy()));
        headers.set("Content-Length", meta.len().to_string());
        Ok(Response::new(200, "OK", headers, url, Box::pin(file)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn dates_and_types() {
        assert_eq!(
            http_date(datetime!(1994-11-06 08:49:37 UTC)),
            "Sun, 06 Nov 1994 08:49:37 GMT"
        );
        assert_eq!(guess_type("a/B.JSON"), "application/json");
        assert_eq!(guess_type("noext"), "application/octet-stream");
    }
}
