//! A TLS 1.2 data-connection reader that decrypts each record where it lies in
//! its own 1 MiB read buffer: the receiving half of a kernel-TLS client, in
//! user space.
//!
//! Why: rustls's buffered reader copies every decrypted record into a fresh
//! `Vec` (`take_received_plaintext`) and then again into the caller's buffer.
//! On the 2-core host of session 23 those two copies were 40% of the reader's
//! core, and the reader, not the server, set the pace of an FTPS download
//! (docs/benchmarks.md, "(c): the reader was the limit"). This reader leaves
//! the plaintext in the buffer it read into, as a client writing it to disk
//! from there would, so that the figure is the server's.
//!
//! What is ours and what is rustls's: the handshake is rustls's unbuffered
//! client (with session resumption, as vsftpd's `require_ssl_reuse` asks);
//! the record keys come from rustls's secret extraction (made for kernel TLS);
//! the decryption and the closing alert's encryption are the negotiated cipher
//! suite's own `MessageDecrypter` and `MessageEncrypter`. This module only
//! frames records (a 5-byte header and a length) and counts sequence numbers.
//! TLS 1.3 is refused: the benchmark speaks TLS 1.2, as the ferry client does.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use anyhow::{Context, bail};
use rustls::client::UnbufferedClientConnection;
use rustls::crypto::cipher::{
    InboundOpaqueMessage, MessageDecrypter, MessageEncrypter, OutboundChunks, OutboundPlainMessage,
};
use rustls::unbuffered::{ConnectionState, EncodeError, UnbufferedStatus};
use rustls::{ConnectionTrafficSecrets, ContentType, ProtocolVersion, SupportedCipherSuite};
use rustls_pki_types::ServerName;

/// What one read may bring: 1 MiB, as the plain reader reads.
const READ_SIZE: usize = 1 << 20;
/// The largest TLS 1.2 record: a 5-byte header and up to 2^14 + 2048 bytes.
const MAX_RECORD: usize = 5 + (1 << 14) + 2048;
/// TLS's close_notify alert (level warning, description 0).
const CLOSE_NOTIFY: [u8; 2] = [1, 0];

/// A data connection after its TLS handshake, reading records in place.
pub struct InPlaceTlsReader {
    tcp: TcpStream,
    buf: Vec<u8>,
    /// The first byte of `buf` not yet decrypted.
    start: usize,
    /// The end of what was read into `buf`.
    filled: usize,
    decrypter: Box<dyn MessageDecrypter>,
    rx_seq: u64,
    encrypter: Box<dyn MessageEncrypter>,
    tx_seq: u64,
    /// Application data that arrived in the same reads as the handshake's
    /// last records, which rustls decrypted itself (in a full handshake the
    /// server's first data can follow its Finished; a resumed one ends with
    /// the client's Finished, so nothing can).
    early: Vec<u8>,
}

impl InPlaceTlsReader {
    /// Runs the client handshake on `tcp` (`config` must allow secret
    /// extraction and TLS 1.2), then takes the record keys from rustls.
    pub fn handshake(
        mut tcp: TcpStream,
        config: Arc<rustls::ClientConfig>,
        name: ServerName<'static>,
    ) -> anyhow::Result<Self> {
        let mut conn = UnbufferedClientConnection::new(config, name)?;
        let mut buf = vec![0u8; READ_SIZE + MAX_RECORD];
        let mut filled = 0usize;
        let mut outgoing = vec![0u8; 4096];
        let mut queued = 0usize;
        let mut early = Vec::new();
        loop {
            let UnbufferedStatus { mut discard, state } =
                conn.process_tls_records(&mut buf[..filled]);
            let mut done = false;
            match state.context("TLS handshake")? {
                ConnectionState::EncodeTlsData(mut encode) => loop {
                    match encode.encode(&mut outgoing[queued..]) {
                        Ok(n) => {
                            queued += n;
                            break;
                        }
                        Err(EncodeError::InsufficientSize(need)) => {
                            outgoing.resize(queued + need.required_size, 0);
                        }
                        Err(e) => return Err(e).context("TLS handshake"),
                    }
                },
                ConnectionState::TransmitTlsData(transmit) => {
                    tcp.write_all(&outgoing[..queued])?;
                    queued = 0;
                    transmit.done();
                }
                ConnectionState::BlockedHandshake => {
                    if filled == buf.len() {
                        bail!("a TLS handshake message larger than {} bytes", buf.len());
                    }
                    let n = tcp.read(&mut buf[filled..])?;
                    if n == 0 {
                        bail!("the server closed the connection during the TLS handshake");
                    }
                    filled += n;
                }
                ConnectionState::ReadTraffic(mut read) => {
                    while let Some(record) = read.next_record() {
                        let record = record?;
                        discard += record.discard;
                        early.extend_from_slice(record.payload);
                    }
                }
                ConnectionState::WriteTraffic(_) => done = true,
                other => bail!("TLS handshake: unexpected state {other:?}"),
            }
            if discard > 0 {
                buf.copy_within(discard..filled, 0);
                filled -= discard;
            }
            if done {
                break;
            }
        }
        if conn.protocol_version() != Some(ProtocolVersion::TLSv1_2) {
            bail!("the in-place reader speaks TLS 1.2 only");
        }
        let Some(SupportedCipherSuite::Tls12(suite)) = conn.negotiated_cipher_suite() else {
            bail!("no TLS 1.2 cipher suite was negotiated");
        };
        // The kernel connection is what rustls keeps for TLS 1.3's
        // post-handshake messages; under TLS 1.2 there are none.
        let (secrets, _kernel) = conn
            .dangerous_into_kernel_connection()
            .context("extracting the record keys (enable_secret_extraction)")?;
        let shape = suite.aead_alg.key_block_shape();
        let (rx_seq, rx) = secrets.rx;
        let (tx_seq, tx) = secrets.tx;
        let (rx_key, rx_iv) = key_and_iv(rx)?;
        let (tx_key, tx_iv) = key_and_iv(tx)?;
        let fixed = shape.fixed_iv_len;
        let explicit = fixed + shape.explicit_nonce_len;
        let (Some(rx_fixed), Some(tx_fixed), Some(tx_explicit)) = (
            rx_iv.as_ref().get(..fixed),
            tx_iv.as_ref().get(..fixed),
            tx_iv.as_ref().get(fixed..explicit),
        ) else {
            bail!("the cipher suite's IV is shorter than its key block says");
        };
        Ok(InPlaceTlsReader {
            tcp,
            buf,
            start: 0,
            filled,
            decrypter: suite.aead_alg.decrypter(rx_key, rx_fixed),
            rx_seq,
            encrypter: suite.aead_alg.encrypter(tx_key, tx_fixed, tx_explicit),
            tx_seq,
            early,
        })
    }

    /// Reads and decrypts records until the server's close_notify, handing
    /// each record's plaintext to `each` where it lies; returns the bytes of
    /// application data. A connection closed without close_notify is an error
    /// (a truncated download), as for rustls's reader.
    pub fn drain(&mut self, mut each: impl FnMut(&[u8])) -> anyhow::Result<u64> {
        let early = std::mem::take(&mut self.early);
        each(&early);
        let mut total = early.len() as u64;
        loop {
            while let Some((typ, version, len)) = self.complete_record() {
                let body = self.start + 5..self.start + 5 + len;
                let message = InboundOpaqueMessage::new(typ, version, &mut self.buf[body]);
                let plain = self
                    .decrypter
                    .decrypt(message, self.rx_seq)
                    .context("decrypting a record")?;
                self.rx_seq += 1;
                self.start += 5 + len;
                match plain.typ {
                    ContentType::ApplicationData => {
                        each(plain.payload);
                        total += plain.payload.len() as u64;
                    }
                    ContentType::Alert if plain.payload == CLOSE_NOTIFY => return Ok(total),
                    ContentType::Alert => bail!("the server sent TLS alert {:?}", plain.payload),
                    other => bail!("a {other:?} record in the data stream"),
                }
            }
            // What is left is at most one partial record: move it to the front.
            self.buf.copy_within(self.start..self.filled, 0);
            self.filled -= self.start;
            self.start = 0;
            let n = self.tcp.read(&mut self.buf[self.filled..])?;
            if n == 0 {
                bail!("the server closed the data connection without close_notify");
            }
            self.filled += n;
        }
    }

    /// The header of the record at `start`, if all of it has been read.
    fn complete_record(&self) -> Option<(ContentType, ProtocolVersion, usize)> {
        let header = self.buf.get(self.start..self.start + 5)?;
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        // A record over TLS's limit is taken whole only to fail its
        // decryption, with a clear error (it fits in the buffer).
        if self.filled - self.start < 5 + len {
            return None;
        }
        Some((
            ContentType::from(header[0]),
            ProtocolVersion::from(u16::from_be_bytes([header[1], header[2]])),
            len,
        ))
    }

    /// Sends our close_notify and closes the connection. vsftpd sends its 226
    /// only once the client has closed its side.
    pub fn close(mut self) -> anyhow::Result<()> {
        let alert = OutboundPlainMessage {
            typ: ContentType::Alert,
            version: ProtocolVersion::TLSv1_2,
            payload: OutboundChunks::Single(&CLOSE_NOTIFY),
        };
        let record = self
            .encrypter
            .encrypt(alert, self.tx_seq)
            .context("encrypting close_notify")?;
        self.tx_seq += 1;
        self.tcp.write_all(&record.encode())?;
        // The server may have closed its end already.
        let _ = self.tcp.shutdown(std::net::Shutdown::Write);
        Ok(())
    }
}

/// The key and IV of an AEAD cipher suite's traffic secrets.
fn key_and_iv(
    secrets: ConnectionTrafficSecrets,
) -> anyhow::Result<(rustls::crypto::cipher::AeadKey, rustls::crypto::cipher::Iv)> {
    match secrets {
        ConnectionTrafficSecrets::Aes128Gcm { key, iv }
        | ConnectionTrafficSecrets::Aes256Gcm { key, iv }
        | ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => Ok((key, iv)),
        _ => bail!("a cipher suite the in-place reader does not know"),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::sync::Arc;

    use super::InPlaceTlsReader;

    /// A rustls TLS 1.2 server on loopback: one connection, which gets
    /// `body` in writes of varied sizes, then close_notify unless `truncate`.
    /// The thread's result: whether the client's close_notify came back.
    fn serve(body: Vec<u8>, truncate: bool) -> (u16, std::thread::JoinHandle<bool>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let cert =
            rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
        let key = rustls_pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der())
            .expect("key");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS12])
            .expect("TLS 1.2")
            .with_no_client_auth()
            .with_single_cert(vec![cert.cert.der().clone()], key)
            .expect("server config");
        let server = std::thread::spawn(move || {
            let (mut tcp, _) = listener.accept().expect("accept");
            let mut conn = rustls::ServerConnection::new(Arc::new(config)).expect("connection");
            let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
            // Writes of odd sizes, so that records are of every length and
            // reads end in the middle of records.
            let mut rest = &body[..];
            let mut size = 1;
            while !rest.is_empty() {
                let (now, later) = rest.split_at(size.min(rest.len()));
                tls.write_all(now).expect("write");
                rest = later;
                size = size * 7 % 70_001 + 1;
            }
            tls.flush().expect("flush");
            if truncate {
                return false;
            }
            tls.conn.send_close_notify();
            tls.flush().expect("close_notify");
            // rustls's reader ends cleanly only at a valid close_notify.
            let mut after = Vec::new();
            std::io::Read::read_to_end(&mut tls, &mut after).is_ok() && after.is_empty()
        });
        (port, server)
    }

    fn reader(port: u16) -> InPlaceTlsReader {
        let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let mut config = (*ferry_client::tls::client_config(
            &ferry_client::CertificateCheck::Insecure,
            ferry_client::TlsVersions::Tls12,
        )
        .expect("client config"))
        .clone();
        config.enable_secret_extraction = true;
        let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
        InPlaceTlsReader::handshake(tcp, Arc::new(config), name).expect("handshake")
    }

    #[test]
    fn decrypts_every_record_in_place_to_the_servers_close_notify() {
        let body: Vec<u8> = (0..3_000_000u32).map(|i| (i * 31 % 251) as u8).collect();
        let (port, server) = serve(body.clone(), false);
        let mut reader = reader(port);
        let mut got = Vec::with_capacity(body.len());
        let total = reader
            .drain(|plain| got.extend_from_slice(plain))
            .expect("drain");
        assert_eq!(total, body.len() as u64);
        assert!(got == body, "the plaintext differs from what was sent");
        reader.close().expect("close");
        assert!(
            server.join().expect("server"),
            "the server did not read the client's close_notify"
        );
    }

    #[test]
    fn a_connection_closed_without_close_notify_is_an_error() {
        let body = vec![7u8; 100_000];
        let (port, server) = serve(body, true);
        let mut reader = reader(port);
        server.join().expect("server");
        let err = reader.drain(|_| {}).expect_err("a truncated stream");
        assert!(err.to_string().contains("without close_notify"), "{err}");
    }
}
