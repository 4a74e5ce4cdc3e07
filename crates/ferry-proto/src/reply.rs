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

/// Why bytes from a server are not a reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// A reply's first line does not start with a code 100-599 and a space or dash.
    #[error("not an FTP reply: {0:?}")]
    NotAReply(String),
    /// A multi-line reply longer than [`MAX_REPLY_LINES`] lines.
    #[error("reply of more than {MAX_REPLY_LINES} lines")]
    TooLong,
}

/// The most lines a reply may have before a client gives up on it.
pub const MAX_REPLY_LINES: usize = 100_000;

/// Reads replies line by line, for clients (RFC 959 §4.2): a multi-line reply
/// starts with `123-` and ends with a line that starts with `123 `.
#[derive(Debug, Default)]
pub struct ReplyParser {
    code: Option<u16>,
    lines: Vec<String>,
}

fn code_of(line: &str) -> Option<(u16, u8)> {
    let bytes = line.as_bytes();
    if bytes.len() < 3 || !bytes[..3].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let code: u16 = line[..3].parse().ok()?;
    if !(100..600).contains(&code) {
        return None;
    }
    Some((code, *bytes.get(3).unwrap_or(&b' ')))
}

impl ReplyParser {
    /// Feeds one line, without its line ending. Returns the reply this line
    /// completes, if any.
    pub fn push_line(&mut self, line: &[u8]) -> Result<Option<Reply>, ReplyError> {
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end_matches(['\r', '\n']);
        match self.code {
            None => {
                let (code, sep) = code_of(line)
                    .ok_or_else(|| ReplyError::NotAReply(line.chars().take(80).collect()))?;
                let text = line.get(4..).unwrap_or("").to_owned();
                match sep {
                    b'-' => {
                        self.code = Some(code);
                        self.lines = vec![text];
                        Ok(None)
                    }
                    b' ' => Ok(Some(Reply::new(code, text))),
                    _ => Err(ReplyError::NotAReply(line.chars().take(80).collect())),
                }
            }
            Some(code) => {
                if let Some((c, b' ')) = code_of(line)
                    && c == code
                {
                    self.lines.push(line.get(4..).unwrap_or("").to_owned());
                    self.code = None;
                    return Ok(Some(Reply::multi(code, std::mem::take(&mut self.lines))));
                }
                if self.lines.len() >= MAX_REPLY_LINES {
                    self.code = None;
                    self.lines.clear();
                    return Err(ReplyError::TooLong);
                }
                // Middle lines are indented by one space when they were sent.
                self.lines
                    .push(line.strip_prefix(' ').unwrap_or(line).to_owned());
                Ok(None)
            }
        }
    }

    /// Parses a whole byte buffer of CRLF-terminated replies.
    pub fn parse_all(bytes: &[u8]) -> Result<Vec<Reply>, ReplyError> {
        let mut parser = ReplyParser::default();
        let mut out = Vec::new();
        for line in bytes.split(|&b| b == b'\n') {
            if line.is_empty() || line == b"\r" {
                continue;
            }
            if let Some(r) = parser.push_line(line)? {
                out.push(r);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod parser_tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn single_and_multi_line() {
        let replies = ReplyParser::parse_all(
            b"220 ready\r\n211-Features:\r\n EPSV\r\n211 tricky\r\n211 End\r\n",
        )
        .expect("parse");
        assert_eq!(replies[0], Reply::new(220, "ready"));
        assert_eq!(
            replies[1],
            Reply::multi(
                211,
                vec!["Features:".into(), "EPSV".into(), "tricky".into()]
            )
        );
        assert_eq!(
            replies.len(),
            3,
            "a line with the code and a space ends a multi-line reply"
        );
        assert!(ReplyParser::parse_all(b"hello\r\n").is_err());
        assert!(ReplyParser::parse_all(b"999 nope\r\n").is_err());
        assert!(ReplyParser::parse_all(b"200x\r\n").is_err());
    }

    proptest! {
        /// What the server encodes, a client parses back.
        #[test]
        fn round_trip(code in 100u16..600, lines in proptest::collection::vec("[ -~]{0,40}", 1..6)) {
            let sent = Reply::multi(code, lines.iter().map(|l| l.trim_start().to_owned()).collect());
            let parsed = ReplyParser::parse_all(&sent.to_bytes()).expect("parses");
            prop_assert_eq!(parsed.len(), 1);
            prop_assert_eq!(parsed[0].code(), code);
            prop_assert_eq!(parsed[0].lines().len(), sent.lines().len());
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = ReplyParser::parse_all(&bytes);
        }
    }
}
