//! Listening ports for PASV and EPSV (RFC 959 §4.1.2, RFC 2428 §3).

use std::net::{IpAddr, SocketAddr};

use ferry_config::PortRange;
use rustix::net::{AddressFamily, SocketFlags, SocketType};

/// Hands out listening sockets on the configured passive range, or, when no
/// range is set, on a random port of the system's ephemeral range.
///
/// Why not let the kernel pick (bind to port 0)? Every finished data connection
/// leaves a TIME_WAIT socket behind on its port, and the kernel's search for a
/// free port walks those: after some thousands of transfers each bind took
/// milliseconds (measured: 1,000 small files in one session went from 2,400 to
/// 300 files/s over three runs). Binding a chosen port checks only that port,
/// and `SO_REUSEADDR` lets a port whose last connection is in TIME_WAIT be used
/// again at once.
#[derive(Debug, Clone, Copy)]
pub struct PassivePortPool {
    range: Option<PortRange>,
}

/// Random ports tried in the ephemeral range before leaving it to the kernel.
const EPHEMERAL_TRIES: u32 = 32;

impl PassivePortPool {
    pub fn new(range: Option<PortRange>) -> Self {
        PassivePortPool { range }
    }

    /// Binds a listener on `ip`. Within a configured range, starts at a random
    /// port and tries every port once, so a busy range fails only when it is
    /// really full. Without one, tries a few random ephemeral ports, then port 0.
    pub fn bind(&self, ip: IpAddr) -> std::io::Result<PassiveListener> {
        let Some(range) = self.range else {
            let ephemeral = ephemeral_range();
            let span = u32::from(ephemeral.last - ephemeral.first) + 1;
            for _ in 0..EPHEMERAL_TRIES.min(span) {
                let port = ephemeral.first + port_offset(rand::random::<u32>() % span);
                if let Ok(l) = PassiveListener::bind(SocketAddr::new(ip, port)) {
                    return Ok(l);
                }
            }
            return PassiveListener::bind(SocketAddr::new(ip, 0));
        };
        let span = u32::from(range.last - range.first) + 1;
        let start = rand::random::<u32>() % span;
        let mut last_err = None;
        for i in 0..span {
            let port = range.first + port_offset((start + i) % span);
            match PassiveListener::bind(SocketAddr::new(ip, port)) {
                Ok(l) => return Ok(l),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| std::io::Error::other("empty passive port range")))
    }
}

/// A listening socket for one passive data connection.
///
/// It is not registered with the async runtime when it is made: the client
/// usually connects before it sends the transfer command, so the connection is
/// taken at once with a non-blocking accept, and the runtime never hears of the
/// listener (two `epoll_ctl` calls and a wake-up saved per transfer). Only a
/// transfer whose client has not connected yet registers it, to wait.
#[derive(Debug)]
pub struct PassiveListener {
    socket: std::net::TcpListener,
    addr: SocketAddr,
}

impl PassiveListener {
    /// A non-blocking listener on `addr` with `SO_REUSEADDR`.
    fn bind(addr: SocketAddr) -> std::io::Result<PassiveListener> {
        let family = match addr {
            SocketAddr::V4(_) => AddressFamily::INET,
            SocketAddr::V6(_) => AddressFamily::INET6,
        };
        let fd = rustix::net::socket_with(
            family,
            SocketType::STREAM,
            SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
            None,
        )?;
        rustix::net::sockopt::set_socket_reuseaddr(&fd, true)?;
        rustix::net::bind(&fd, &addr)?;
        rustix::net::listen(&fd, 128)?;
        let socket = std::net::TcpListener::from(fd);
        // The port is known unless the kernel picked it.
        let addr = if addr.port() == 0 {
            socket.local_addr()?
        } else {
            addr
        };
        Ok(PassiveListener { socket, addr })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// A connection that is already waiting, without waiting for one.
    pub fn try_accept(&self) -> std::io::Result<Option<(std::net::TcpStream, SocketAddr)>> {
        match rustix::net::acceptfrom_with(
            &self.socket,
            SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        ) {
            Ok((fd, from)) => {
                let from = from
                    .and_then(|a| SocketAddr::try_from(a).ok())
                    .ok_or_else(|| std::io::Error::other("a connection without an address"))?;
                Ok(Some((std::net::TcpStream::from(fd), from)))
            }
            Err(rustix::io::Errno::AGAIN) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Registers the listener with the async runtime, to wait for a connection.
    pub fn into_async(self) -> std::io::Result<tokio::net::TcpListener> {
        tokio::net::TcpListener::from_std(self.socket)
    }
}

/// An offset below a span of at most 65,536 ports.
fn port_offset(n: u32) -> u16 {
    u16::try_from(n).unwrap_or(0)
}

/// The system's ephemeral port range (`net.ipv4.ip_local_port_range`, read
/// once), or Linux's default when it cannot be read.
fn ephemeral_range() -> PortRange {
    static RANGE: std::sync::OnceLock<PortRange> = std::sync::OnceLock::new();
    *RANGE.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|s| parse_port_range(&s))
            .unwrap_or(PortRange {
                first: 32768,
                last: 60999,
            })
    })
}

/// Parses the two numbers of `ip_local_port_range` ("32768\t60999").
fn parse_port_range(text: &str) -> Option<PortRange> {
    let mut numbers = text.split_whitespace().map(str::parse::<u16>);
    let (first, last) = (numbers.next()?.ok()?, numbers.next()?.ok()?);
    (first >= 1024 && first <= last).then_some(PortRange { first, last })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_ephemeral_range() {
        let r = parse_port_range("32768\t60999\n").expect("parsed");
        assert_eq!((r.first, r.last), (32768, 60999));
        assert!(parse_port_range("60999 32768").is_none(), "reversed");
        assert!(parse_port_range("80 90").is_none(), "privileged ports");
        assert!(parse_port_range("garbage").is_none());
        let e = ephemeral_range();
        assert!(e.first <= e.last);
    }

    #[tokio::test]
    async fn without_a_range_binds_in_the_ephemeral_range() {
        let pool = PassivePortPool::new(None);
        let e = ephemeral_range();
        let l = pool.bind([127, 0, 0, 1].into()).expect("bind");
        let port = l.local_addr().port();
        assert!(
            (e.first..=e.last).contains(&port),
            "port {port} outside {e:?}"
        );
        // A port whose last connection the server closed first (so its side
        // is in TIME_WAIT) can be bound again at once.
        let addr = l.local_addr();
        let l = l.into_async().expect("register");
        let client = tokio::net::TcpStream::connect(addr);
        let (client, accepted) = tokio::join!(client, l.accept());
        let (mut client, (accepted, _)) = (client.expect("connect"), accepted.expect("accept"));
        drop(accepted);
        drop(l);
        let mut buf = [0u8; 1];
        let n = tokio::io::AsyncReadExt::read(&mut client, &mut buf)
            .await
            .expect("read");
        assert_eq!(n, 0, "the server closed");
        let again = PassivePortPool::new(Some(PortRange {
            first: port,
            last: port,
        }));
        again.bind([127, 0, 0, 1].into()).expect("rebind");
    }

    #[test]
    fn uses_every_port_of_a_small_range() {
        // Find two adjacent free ports to make a range of two.
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("probe");
        let base = probe.local_addr().expect("addr").port();
        drop(probe);
        let range = PortRange {
            first: base,
            last: base.saturating_add(1),
        };
        let pool = PassivePortPool::new(Some(range));
        let ip: IpAddr = [127, 0, 0, 1].into();
        let (Ok(a), Ok(b)) = (pool.bind(ip), pool.bind(ip)) else {
            return; // another process took one of the ports meanwhile
        };
        let mut ports = [a.local_addr().port(), b.local_addr().port()];
        ports.sort();
        assert_eq!(ports, [base, base + 1]);
        assert!(pool.bind(ip).is_err(), "a full range must refuse");
    }

    /// A waiting connection is taken without the runtime; none waiting is
    /// `None`, not an error; a listener registered later still accepts.
    #[tokio::test]
    async fn accepts_without_the_runtime_until_it_must_wait() {
        let pool = PassivePortPool::new(None);
        let l = pool.bind([127, 0, 0, 1].into()).expect("bind");
        assert!(l.try_accept().expect("nothing waiting").is_none());
        let client = std::net::TcpStream::connect(l.local_addr()).expect("connect");
        let (accepted, from) = l
            .try_accept()
            .expect("accept")
            .expect("the connection was waiting");
        assert_eq!(from, client.local_addr().expect("client address"));
        assert_eq!(
            accepted.peer_addr().expect("peer"),
            client.local_addr().expect("client address")
        );
        drop((accepted, client));
        let addr = l.local_addr();
        let l = l.into_async().expect("register");
        let (client, accepted) = tokio::join!(tokio::net::TcpStream::connect(addr), l.accept());
        let (client, (_, from)) = (client.expect("connect"), accepted.expect("accept"));
        assert_eq!(from, client.local_addr().expect("client address"));
    }
}
