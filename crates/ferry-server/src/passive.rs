//! Listening ports for PASV and EPSV (RFC 959 §4.1.2, RFC 2428 §3).

use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicUsize, Ordering};

use ferry_config::PortRange;
use rustix::net::{AddressFamily, SocketFlags, SocketType};

use crate::congestion::LoopbackCongestion;

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
///
/// One pool per session. After each transfer's reply the pool makes the socket
/// for the session's next PASV ([`PassivePortPool::prepare`]), so that PASV
/// itself only binds and listens: `socket` and `setsockopt` are off the path a
/// client waits on (benchmark (d), +2–9%). The spare is not bound, so no one
/// can reach it; it costs a descriptor and ~3 KiB of kernel memory while the
/// session idles, and at most [`SPARE_SOCKETS`] sessions of the process hold
/// one.
#[derive(Debug)]
pub struct PassivePortPool {
    range: Option<PortRange>,
    /// The socket for the next PASV, made ahead of it.
    spare: Option<SpareSocket>,
    /// The address family of the last listener, the one a spare is made for.
    last_family: Option<AddressFamily>,
    budget: &'static SpareBudget,
    /// Set on a listener on a loopback address before it listens.
    congestion: LoopbackCongestion,
}

/// How many sessions of the process (all its servers) may hold a spare
/// socket at once.
pub const SPARE_SOCKETS: usize = 1024;

/// The server-wide count of spare sockets, against their limit.
#[derive(Debug)]
struct SpareBudget {
    held: AtomicUsize,
    limit: usize,
}

static SPARES: SpareBudget = SpareBudget {
    held: AtomicUsize::new(0),
    limit: SPARE_SOCKETS,
};

/// A non-blocking TCP socket with `SO_REUSEADDR`, not bound yet: a
/// listener's first two system calls, made ahead.
#[derive(Debug)]
struct SpareSocket {
    family: AddressFamily,
    fd: OwnedFd,
    /// Its place in the budget, while it is a spare made ahead.
    _place: Option<SparePlace>,
}

/// One place in a [`SpareBudget`], given back when dropped.
#[derive(Debug)]
struct SparePlace(&'static SpareBudget);

impl Drop for SparePlace {
    fn drop(&mut self) {
        self.0.held.fetch_sub(1, Ordering::AcqRel);
    }
}

impl SpareSocket {
    /// A socket for a listener now (not counted).
    fn new(family: AddressFamily) -> std::io::Result<SpareSocket> {
        let fd = rustix::net::socket_with(
            family,
            SocketType::STREAM,
            SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
            None,
        )?;
        rustix::net::sockopt::set_socket_reuseaddr(&fd, true)?;
        Ok(SpareSocket {
            family,
            fd,
            _place: None,
        })
    }

    /// A socket made ahead, if `budget` has room for one more.
    fn ahead(family: AddressFamily, budget: &'static SpareBudget) -> Option<SpareSocket> {
        budget
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < budget.limit).then_some(n + 1)
            })
            .ok()?;
        let place = SparePlace(budget);
        let mut spare = SpareSocket::new(family).ok()?;
        spare._place = Some(place);
        Some(spare)
    }
}

/// Random ports tried in the ephemeral range before leaving it to the kernel.
const EPHEMERAL_TRIES: u32 = 32;

impl PassivePortPool {
    pub fn new(range: Option<PortRange>) -> Self {
        Self::with_budget(range, &SPARES)
    }

    fn with_budget(range: Option<PortRange>, budget: &'static SpareBudget) -> Self {
        PassivePortPool {
            range,
            spare: None,
            last_family: None,
            budget,
            congestion: LoopbackCongestion::system(),
        }
    }

    /// Listeners on a loopback address get `congestion`'s algorithm, which
    /// their connections inherit.
    pub fn with_loopback_congestion(mut self, congestion: LoopbackCongestion) -> Self {
        self.congestion = congestion;
        self
    }

    /// Makes the socket for the next PASV now (off the path a client waits
    /// on), of the family of the last listener, unless one is made already
    /// or the server's sessions hold [`SPARE_SOCKETS`] already.
    pub fn prepare(&mut self) {
        if let (None, Some(family)) = (&self.spare, self.last_family) {
            self.spare = SpareSocket::ahead(family, self.budget);
        }
    }

    fn bind_port(&mut self, addr: SocketAddr) -> std::io::Result<PassiveListener> {
        let family = match addr {
            SocketAddr::V4(_) => AddressFamily::INET,
            SocketAddr::V6(_) => AddressFamily::INET6,
        };
        self.last_family = Some(family);
        let spare = match self.spare.take() {
            Some(spare) if spare.family == family => spare,
            _ => SpareSocket::new(family)?,
        };
        if let Err(e) = rustix::net::bind(&spare.fd, &addr) {
            // Still unbound: it serves the next port tried (and, if it is a
            // counted spare, the next PASV).
            self.spare = Some(spare);
            return Err(e.into());
        }
        self.congestion.apply(&spare.fd, addr.ip());
        // The descriptor becomes the listener's; the place is given back.
        PassiveListener::listen(spare.fd, addr)
    }

    /// Binds a listener on `ip`. Within a configured range, starts at a random
    /// port and tries every port once, so a busy range fails only when it is
    /// really full. Without one, tries a few random ephemeral ports, then port 0.
    pub fn bind(&mut self, ip: IpAddr) -> std::io::Result<PassiveListener> {
        let bound = self.bind_somewhere(ip);
        // A socket made for this call and left unbound goes; only a spare
        // with its place in the budget waits for the next PASV.
        if self.spare.as_ref().is_some_and(|s| s._place.is_none()) {
            self.spare = None;
        }
        bound
    }

    fn bind_somewhere(&mut self, ip: IpAddr) -> std::io::Result<PassiveListener> {
        let Some(range) = self.range else {
            let ephemeral = ephemeral_range();
            let span = u32::from(ephemeral.last - ephemeral.first) + 1;
            for _ in 0..EPHEMERAL_TRIES.min(span) {
                let port = ephemeral.first + port_offset(rand::random::<u32>() % span);
                if let Ok(l) = self.bind_port(SocketAddr::new(ip, port)) {
                    return Ok(l);
                }
            }
            return self.bind_port(SocketAddr::new(ip, 0));
        };
        let span = u32::from(range.last - range.first) + 1;
        let start = rand::random::<u32>() % span;
        let mut last_err = None;
        for i in 0..span {
            let port = range.first + port_offset((start + i) % span);
            match self.bind_port(SocketAddr::new(ip, port)) {
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
    /// Listens on `fd`, bound to `addr`.
    fn listen(fd: OwnedFd, addr: SocketAddr) -> std::io::Result<PassiveListener> {
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

    /// The algorithm of the connection a listener accepted.
    fn accepted_congestion(pool: &mut PassivePortPool) -> String {
        let l = pool.bind([127, 0, 0, 1].into()).expect("bind");
        let _client = std::net::TcpStream::connect(l.local_addr()).expect("connect");
        let (accepted, _) = loop {
            if let Some(c) = l.try_accept().expect("accept") {
                break c;
            }
            std::thread::yield_now();
        };
        rustix::net::sockopt::tcp_congestion(&accepted).expect("TCP_CONGESTION")
    }

    #[test]
    fn a_loopback_listener_hands_its_congestion_control_to_the_connection() {
        let (other, name) = crate::congestion::test_support::other_than_the_system_s();
        let mut pool = PassivePortPool::new(None).with_loopback_congestion(other);
        assert_eq!(accepted_congestion(&mut pool), name);
        // The spare socket made ahead serves the next listener the same way.
        pool.prepare();
        assert_eq!(accepted_congestion(&mut pool), name);

        let system = crate::congestion::test_support::system_algorithm();
        let mut plain = PassivePortPool::new(None);
        assert_eq!(accepted_congestion(&mut plain), system);
    }

    #[tokio::test]
    async fn without_a_range_binds_in_the_ephemeral_range() {
        let mut pool = PassivePortPool::new(None);
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
        let mut again = PassivePortPool::new(Some(PortRange {
            first: port,
            last: port,
        }));
        again.bind([127, 0, 0, 1].into()).expect("rebind");
    }

    /// A budget of its own for a test, with room for `limit` spares.
    fn budget(limit: usize) -> &'static SpareBudget {
        Box::leak(Box::new(SpareBudget {
            held: AtomicUsize::new(0),
            limit,
        }))
    }

    /// The socket made after a transfer is the next listener's; its place in
    /// the budget is given back when it becomes one.
    #[test]
    fn a_prepared_socket_becomes_the_next_listener() {
        use std::os::fd::AsRawFd;
        let budget = budget(1);
        let mut pool = PassivePortPool::with_budget(None, budget);
        let ip: IpAddr = [127, 0, 0, 1].into();
        // Nothing is made before the first listener says which family.
        pool.prepare();
        assert!(pool.spare.is_none());
        drop(pool.bind(ip).expect("bind"));
        pool.prepare();
        let spare = pool.spare.as_ref().expect("a spare").fd.as_raw_fd();
        assert_eq!(budget.held.load(Ordering::Acquire), 1);
        let l = pool.bind(ip).expect("bind on the spare");
        assert_eq!(l.socket.as_raw_fd(), spare);
        assert!(pool.spare.is_none());
        assert_eq!(budget.held.load(Ordering::Acquire), 0);
        // It listens: a client gets through.
        std::net::TcpStream::connect(l.local_addr()).expect("connect");
        assert!(l.try_accept().expect("accept").is_some());
    }

    /// No more spares than the budget holds; a place comes back when a
    /// session (its pool) ends.
    #[test]
    fn the_budget_bounds_the_spares() {
        let budget = budget(1);
        let ip: IpAddr = [127, 0, 0, 1].into();
        let mut a = PassivePortPool::with_budget(None, budget);
        let mut b = PassivePortPool::with_budget(None, budget);
        drop(a.bind(ip).expect("a"));
        drop(b.bind(ip).expect("b"));
        a.prepare();
        b.prepare();
        assert!(a.spare.is_some() && b.spare.is_none());
        assert_eq!(budget.held.load(Ordering::Acquire), 1);
        drop(a);
        assert_eq!(budget.held.load(Ordering::Acquire), 0);
        b.prepare();
        assert!(b.spare.is_some());
    }

    /// A pool whose range is the one port of `taken`, a listener holding it.
    fn pool_on_a_taken_port(
        budget: &'static SpareBudget,
    ) -> (std::net::TcpListener, u16, PassivePortPool) {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("taken");
        let port = taken.local_addr().expect("addr").port();
        let range = PortRange {
            first: port,
            last: port,
        };
        (
            taken,
            port,
            PassivePortPool::with_budget(Some(range), budget),
        )
    }

    /// A port that cannot be bound leaves the spare unbound and kept, for the
    /// next port or the next PASV.
    #[test]
    fn a_failed_bind_keeps_the_spare() {
        use std::os::fd::AsRawFd;
        let budget = budget(1);
        let (taken, port, mut pool) = pool_on_a_taken_port(budget);
        pool.last_family = Some(AddressFamily::INET);
        pool.prepare();
        let spare = pool.spare.as_ref().expect("a spare").fd.as_raw_fd();
        assert!(
            pool.bind([127, 0, 0, 1].into()).is_err(),
            "the port is taken"
        );
        assert_eq!(pool.spare.as_ref().map(|s| s.fd.as_raw_fd()), Some(spare));
        assert_eq!(budget.held.load(Ordering::Acquire), 1);
        drop(taken);
        let l = pool.bind([127, 0, 0, 1].into()).expect("free now");
        assert_eq!(l.local_addr().port(), port);
    }

    /// A socket made during a PASV whose every port is taken is closed, not
    /// kept: only counted spares wait between PASVs.
    #[test]
    fn a_socket_outside_the_budget_is_not_kept() {
        let budget = budget(0);
        let (_taken, _, mut pool) = pool_on_a_taken_port(budget);
        assert!(
            pool.bind([127, 0, 0, 1].into()).is_err(),
            "the port is taken"
        );
        assert!(pool.spare.is_none(), "an uncounted socket was kept");
        pool.prepare();
        assert!(pool.spare.is_none(), "a spare beyond the budget");
        assert_eq!(budget.held.load(Ordering::Acquire), 0);
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
        let mut pool = PassivePortPool::new(Some(range));
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
        let mut pool = PassivePortPool::new(None);
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
