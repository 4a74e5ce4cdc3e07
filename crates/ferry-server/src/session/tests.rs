//! The session state machine over an in-memory pipe: no sockets, no data
//! connections, just command lines in and replies out.

use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, ReadHalf, WriteHalf};
use tokio_util::sync::CancellationToken;

use super::{Peer, Session};

struct Client {
    reader: BufReader<ReadHalf<DuplexStream>>,
    writer: WriteHalf<DuplexStream>,
    _dir: tempfile::TempDir,
}

impl Client {
    async fn start() -> Client {
        let dir = tempfile::tempdir().expect("tmp");
        let opts = crate::test_support::options_with_alice(dir.path(), "");
        let (client, server) = tokio::io::duplex(64 * 1024);
        let peer = Peer {
            remote: "127.0.0.1:40000".parse().expect("addr"),
            local: "127.0.0.1:2121".parse().expect("addr"),
            id: 1,
        };
        tokio::spawn(Session::new(server, Arc::new(opts), peer, CancellationToken::new()).run());
        let (r, w) = tokio::io::split(client);
        let mut c = Client {
            reader: BufReader::new(r),
            writer: w,
            _dir: dir,
        };
        assert!(c.reply().await.starts_with("220"));
        c
    }

    /// One reply; multi-line replies are returned whole.
    async fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let n = self.reader.read_line(&mut line).await.expect("read");
            if n == 0 {
                return all;
            }
            all.push_str(&line);
            let b = all.as_bytes();
            if b.len() >= 4 && b[3] == b'-' {
                let code = &all[..3];
                if line.starts_with(code) && line.as_bytes().get(3) == Some(&b' ') {
                    return all;
                }
                continue;
            }
            return all;
        }
    }

    async fn cmd(&mut self, line: &str) -> String {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .expect("write");
        self.reply().await
    }
}

fn code(r: &str) -> &str {
    r.get(..3).unwrap_or("")
}

#[tokio::test]
async fn login_sequence() {
    let mut c = Client::start().await;
    assert_eq!(code(&c.cmd("PWD").await), "530");
    assert_eq!(code(&c.cmd("PASS pw").await), "503");
    assert_eq!(code(&c.cmd("USER alice").await), "331");
    assert_eq!(code(&c.cmd("PASS wrong").await), "530");
    // After a failed PASS the USER must be sent again.
    assert_eq!(code(&c.cmd("PASS pw").await), "503");
    assert_eq!(code(&c.cmd("USER alice").await), "331");
    assert_eq!(code(&c.cmd("PASS pw").await), "230");
    assert_eq!(code(&c.cmd("PASS pw").await), "230");
    assert_eq!(
        c.cmd("PWD").await,
        "257 \"/\" is the current directory.\r\n"
    );
    assert_eq!(code(&c.cmd("REIN").await), "220");
    assert_eq!(code(&c.cmd("PWD").await), "530");
    assert_eq!(code(&c.cmd("QUIT").await), "221");
    assert_eq!(c.reply().await, "", "QUIT closes the connection");
}

#[tokio::test]
async fn directories_and_rename_sequence() {
    let mut c = Client::start().await;
    c.cmd("USER alice").await;
    c.cmd("PASS pw").await;
    assert_eq!(
        c.cmd("MKD a \"q\"").await,
        "257 \"/a \"\"q\"\"\" created.\r\n"
    );
    assert_eq!(code(&c.cmd("CWD a \"q\"").await), "250");
    assert!(c.cmd("PWD").await.starts_with("257 \"/a \"\"q\"\"\""));
    assert_eq!(code(&c.cmd("CDUP").await), "250");
    assert_eq!(code(&c.cmd("RNFR a \"q\"").await), "350");
    // Anything between RNFR and RNTO forgets the RNFR.
    assert_eq!(code(&c.cmd("NOOP").await), "200");
    assert_eq!(code(&c.cmd("RNTO b").await), "503");
    assert_eq!(code(&c.cmd("RNFR a \"q\"").await), "350");
    assert_eq!(code(&c.cmd("RNTO b").await), "250");
    assert_eq!(code(&c.cmd("RMD /").await), "550");
    assert_eq!(code(&c.cmd("RMD b").await), "250");
    assert_eq!(code(&c.cmd("CWD b").await), "550");
}

#[tokio::test]
async fn transfers_need_a_data_connection_and_feat_lists_extensions() {
    let mut c = Client::start().await;
    let feat = c.cmd("FEAT").await;
    assert!(
        feat.starts_with("211-") && feat.ends_with("211 End\r\n"),
        "{feat}"
    );
    assert!(feat.contains("\r\n EPSV\r\n") && feat.contains("\r\n UTF8\r\n"));
    c.cmd("USER alice").await;
    c.cmd("PASS pw").await;
    assert_eq!(code(&c.cmd("LIST").await), "425");
    assert_eq!(code(&c.cmd("STOR x").await), "425");
    assert_eq!(code(&c.cmd("RETR x").await), "550");
    assert_eq!(code(&c.cmd("ABOR").await), "226");
    assert_eq!(code(&c.cmd("EPSV 1").await), "229");
    assert_eq!(code(&c.cmd("EPSV 2").await), "522");
}
