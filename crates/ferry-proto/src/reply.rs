//! Replies on the control connection (RFC 959 §4.2).
//!
//! A reply is a three-digit code and one or more lines of text. A multi-line reply
//! is sent as `123-first`, then the middle lines, then `123 last`; middle lines are
//! indented by one space so that none can be mistaken for the final line. CR and LF
//! inside a line (a file name can hold them) are replaced, so no text from a file
//! name can forge a reply.

use std::fmt;

/// One reply: a code in 100..=599 and at least one line of text.
#[derive(Clone, PartialEq, Eq)]
pub struct Reply {
    code: u16,
    lines: Vec<String>,
}

impl Reply {
    /// A single-line reply.
    pub fn new(code: u16, text: impl Into<String>) -> Self {
        debug_assert!((100..600).contains(&code));
        Reply {
            code,
            lines: vec![text.into()],
        }
    }

    /// A multi-line reply. The first and last lines carry the code.
    pub fn multi(code: u16, lines: Vec<String>) -> Self {
        let lines = if lines.is_empty() {
            vec![String::new()]
        } else {
            lines
        };
        Reply { code, lines }
    }

    /// The reply code.
    pub fn code(&self) -> u16 {
        self.code
    }

    /// The lines of text, without codes.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// Appends the wire form of the reply, CRLF-terminated, to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let last = self.lines.len() - 1;
        for (i, line) in self.lines.iter().enumerate() {
            let clean = sanitize(line);
            let prefix = if last == 0 || i == last {
                format!("{} ", self.code)
            } else if i == 0 {
                format!("{}-", self.code)
            } else if clean.starts_with(' ') {
                String::new()
            } else {
                " ".to_string()
            };
            out.extend_from_slice(prefix.as_bytes());
            out.extend_from_slice(clean.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }

    /// The wire form as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reply({} {:?})", self.code, self.lines)
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.lines.join(" / "))
    }
}

fn sanitize(line: &str) -> std::borrow::Cow<'_, str> {
    if line.contains(['\r', '\n']) {
        std::borrow::Cow::Owned(line.replace(['\r', '\n'], " "))
    } else {
        std::borrow::Cow::Borrowed(line)
    }
}

/// Quotes a path for a 257 reply: embedded double quotes are doubled (RFC 959
/// Appendix II).
pub fn quote_path(path: &str) -> String {
    format!("\"{}\"", path.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_line() {
        assert_eq!(Reply::new(200, "OK").to_bytes(), b"200 OK\r\n");
    }

    #[test]
    fn multi_line_indents_middle_lines() {
        let r = Reply::multi(
            211,
            vec![
                "Features:".into(),
                "EPSV".into(),
                "211 trick".into(),
                "End".into(),
            ],
        );
        assert_eq!(
            String::from_utf8(r.to_bytes()).expect("ascii"),
            "211-Features:\r\n EPSV\r\n 211 trick\r\n211 End\r\n"
        );
    }

    #[test]
    fn text_cannot_inject_lines() {
        let r = Reply::new(550, "bad\r\n230 fake");
        assert_eq!(r.to_bytes(), b"550 bad  230 fake\r\n");
    }

    #[test]
    fn quotes_paths() {
        assert_eq!(quote_path("/a \"b\""), "\"/a \"\"b\"\"\"");
    }
}
