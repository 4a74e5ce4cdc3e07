//! Data connections: how the next transfer's connection is set up (PORT/EPRT for
//! active mode, PASV/EPSV for passive, RFC 959 §3.2 and RFC 2428) and opened.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};

use crate::error::TransferError;

/// How the next data connection will be made.
#[derive(Debug, Default)]
pub enum DataSetup {
    /// Neither PORT nor PASV yet.
    #[default]
    None,
    /// PASV/EPSV: the client will connect here.
    Passive(TcpListener),
    /// PORT/EPRT: the server connects to the client.
    Active(SocketAddr),
}

/// Opens the data connection set up by `setup`.
///
/// A passive listener accepts only a connection from `peer_ip` (the control
/// connection's client): a stranger's connection is closed at once and the listener
/// keeps waiting for the real one, until `timeout`.
pub async fn open(
    setup: DataSetup,
    peer_ip: IpAddr,
    local_ip: IpAddr,
    timeout: Duration,
) -> Result<TcpStream, TransferError> {
    match setup {
        DataSetup::None => Err(TransferError::Open("use PORT or PASV first".into())),
        DataSetup::Passive(listener) => {
            let accept = async {
                loop {
                    let (stream, from) = listener
                        .accept()
                        .await
                        .map_err(|e| TransferError::Open(e.to_string()))?;
                    if same_host(from.ip(), peer_ip) {
                        return Ok(stream);
                    }
                    tracing::warn!(%from, expected = %peer_ip, "refused a data connection from a foreign address");
                    drop(stream);
                }
            };
            let stream = tokio::time::timeout(timeout, accept).await.map_err(|_| {
                TransferError::Open("no connection from the client in time".into())
            })??;
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
        DataSetup::Active(addr) => {
            let socket = if addr.is_ipv4() {
                TcpSocket::new_v4()
            } else {
                TcpSocket::new_v6()
            }
            .map_err(|e| TransferError::Open(e.to_string()))?;
            // Connect from the address the client reached us on.
            if local_ip.is_ipv4() == addr.is_ipv4() {
                let _ = socket.bind(SocketAddr::new(local_ip, 0));
            }
            let stream = tokio::time::timeout(timeout, socket.connect(addr))
                .await
                .map_err(|_| TransferError::Open(format!("connecting to {addr} timed out")))?
                .map_err(|e| TransferError::Open(format!("connecting to {addr}: {e}")))?;
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
    }
}

/// Whether two addresses are the same host, seeing through IPv4-mapped IPv6.
pub fn same_host(a: IpAddr, b: IpAddr) -> bool {
    a.to_canonical() == b.to_canonical()
}
