//! Listening ports for PASV and EPSV (RFC 959 §4.1.2, RFC 2428 §3).

use std::net::{IpAddr, SocketAddr};

use ferry_config::PortRange;
use tokio::net::TcpListener;

/// Hands out listening sockets on the configured passive range, or on any free
/// port when no range is set.
#[derive(Debug, Clone, Copy)]
pub struct PassivePortPool {
    range: Option<PortRange>,
}

impl PassivePortPool {
    pub fn new(range: Option<PortRange>) -> Self {
        PassivePortPool { range }
    }

    /// Binds a listener on `ip`. Within a range, starts at a random port and tries
    /// every port once, so a busy range fails only when it is really full.
    pub async fn bind(&self, ip: IpAddr) -> std::io::Result<TcpListener> {
        let Some(range) = self.range else {
            return TcpListener::bind(SocketAddr::new(ip, 0)).await;
        };
        let span = u32::from(range.last - range.first) + 1;
        let start = rand::random::<u32>() % span;
        let mut last_err = None;
        for i in 0..span {
            let port = range.first + u16::try_from((start + i) % span).unwrap_or(0);
            match TcpListener::bind(SocketAddr::new(ip, port)).await {
                Ok(l) => return Ok(l),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| std::io::Error::other("empty passive port range")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn uses_every_port_of_a_small_range() {
        // Find two adjacent free ports to make a range of two.
        let probe = TcpListener::bind("127.0.0.1:0").await.expect("probe");
        let base = probe.local_addr().expect("addr").port();
        drop(probe);
        let range = PortRange {
            first: base,
            last: base.saturating_add(1),
        };
        let pool = PassivePortPool::new(Some(range));
        let ip: IpAddr = [127, 0, 0, 1].into();
        let (Ok(a), Ok(b)) = (pool.bind(ip).await, pool.bind(ip).await) else {
            return; // another process took one of the ports meanwhile
        };
        let mut ports = [
            a.local_addr().expect("a").port(),
            b.local_addr().expect("b").port(),
        ];
        ports.sort();
        assert_eq!(ports, [base, base + 1]);
        assert!(pool.bind(ip).await.is_err(), "a full range must refuse");
    }
}
