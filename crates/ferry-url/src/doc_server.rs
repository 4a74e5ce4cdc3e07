//! A tiny HTTP/1.1 server on loopback for the crate's doc examples, so that
//! they run for real without the network. Not part of the API.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

/// Starts the server on a free loopback port; returns `http://127.0.0.1:PORT`.
/// The server lives as long as the process (doc tests are processes).
pub fn start() -> String {
    let listener = match TcpListener::bind("127.0.0.1:0") {
        Ok(l) => l,
        Err(e) => panic!("doc server: {e}"),
    };
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = serve(stream);
            });
        }
    });
    format!("http://127.0.0.1:{port}")
}

fn serve(stream: TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((n, v)) = line.trim_end().split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let length: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_owned();
    let (status, extra, content) = match path.as_str() {
        "/" => (
            "200 OK",
            "Content-Type: text/html\r\n".to_owned(),
            "<html>hello</html>".to_owned(),
        ),
        "/cgi-bin/register.cgi" => (
            "200 OK",
            String::new(),
            format!("registered: {}", String::from_utf8_lossy(&body)),
        ),
        "/echo-headers" => {
            let lines: Vec<String> = headers.iter().map(|(n, v)| format!("{n}: {v}")).collect();
            ("200 OK", String::new(), lines.join("\n"))
        }
        "/moved" => ("302 Found", "Location: /\r\n".to_owned(), String::new()),
        "/private/" => {
            // "username:password"
            if header("authorization").as_deref() == Some("Basic dXNlcm5hbWU6cGFzc3dvcmQ=") {
                ("200 OK", String::new(), "welcome, username".to_owned())
            } else {
                (
                    "401 Unauthorized",
                    "WWW-Authenticate: Basic realm=\"PDQ Application\"\r\n".to_owned(),
                    "who are you?".to_owned(),
                )
            }
        }
        "/slow" => {
            std::thread::sleep(Duration::from_secs(2));
            ("200 OK", String::new(), "finally".to_owned())
        }
        _ => (
            "404 Not Found",
            String::new(),
            "Nothing matches the given URI".to_owned(),
        ),
    };
    let mut out = stream;
    write!(
        out,
        "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{content}",
        content.len()
    )?;
    out.flush()
}
