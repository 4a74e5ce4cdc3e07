//! The TCP congestion control of data connections whose two ends are on this
//! host (`server.loopback_congestion_control`, docs/config.md).
//!
//! A congestion control models the network between two hosts. Over loopback
//! there is none: no link to share, no queue to keep short. BBR, which some
//! machines (this project's VM among them) use by default, paces every
//! segment by a timer even there, and holds a window of its own: in 1 GiB
//! downloads over loopback the kernel counted the sender waiting on the
//! reader for only 5–45% of the time (the rest on BBR), against all of it
//! under CUBIC (docs/benchmarks.md, "(a): pacing on loopback"). So, for a
//! data connection to or from a loopback address, ferry asks for CUBIC
//! (Linux's default, which does not pace) unless configured otherwise; every
//! other connection keeps the system's choice.
//!
//! The algorithm must be set before the connection exists: on the passive
//! listener before `listen` (the accepted connection inherits it) and on the
//! active socket before `connect`. Set later, BBR's pacing stays switched on
//! for the connection's life.

use std::net::IpAddr;
use std::os::fd::AsFd;
use std::sync::Arc;

use ferry_config::CongestionControl;

/// The congestion control for loopback data connections, once the kernel has
/// been found to offer it; or nothing, to leave the system's.
#[derive(Debug, Clone, Default)]
pub struct LoopbackCongestion(Option<Arc<str>>);

impl LoopbackCongestion {
    /// The system's own for every connection.
    pub fn system() -> Self {
        LoopbackCongestion(None)
    }

    /// The configured algorithm, if this kernel lets the server use it (tried
    /// once on a scratch socket); otherwise the system's, with a warning that
    /// says why.
    pub fn probe(setting: &CongestionControl) -> Self {
        let Some(name) = setting.name() else {
            return Self::system();
        };
        match try_on_scratch_socket(name) {
            Ok(()) => LoopbackCongestion(Some(Arc::from(name))),
            Err(e) => {
                tracing::warn!(
                    algorithm = name,
                    "server.loopback_congestion_control: the kernel will not set \
                     `{name}` ({e}); loopback data connections keep the system's \
                     congestion control (see /proc/sys/net/ipv4/tcp_allowed_congestion_control)"
                );
                Self::system()
            }
        }
    }

    /// The algorithm loopback connections get, if any.
    pub fn name(&self) -> Option<&str> {
        self.0.as_deref()
    }

    /// Sets the algorithm on `socket`, not yet listening or connected, if
    /// `ip` (the address it listens on, or the one it will connect to) is a
    /// loopback address. Best effort: the probe has shown the kernel takes it.
    pub fn apply(&self, socket: impl AsFd, ip: IpAddr) {
        if let Some(name) = &self.0
            && ip.to_canonical().is_loopback()
            && let Err(e) = rustix::net::sockopt::set_tcp_congestion(socket, name)
        {
            tracing::debug!(algorithm = &**name, "could not set TCP_CONGESTION: {e}");
        }
    }
}

fn try_on_scratch_socket(name: &str) -> std::io::Result<()> {
    let socket = rustix::net::socket(
        rustix::net::AddressFamily::INET,
        rustix::net::SocketType::STREAM,
        None,
    )?;
    rustix::net::sockopt::set_tcp_congestion(&socket, name)?;
    Ok(())
}

/// For tests: the system's congestion control, and one that differs from it.
#[cfg(test)]
pub(crate) mod test_support {
    use super::LoopbackCongestion;

    /// The system's default algorithm (`net.ipv4.tcp_congestion_control`).
    pub fn system_algorithm() -> String {
        std::fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control")
            .expect("the system's congestion control")
            .trim()
            .to_owned()
    }

    /// An algorithm the kernel offers that is not the system's, so that a
    /// test sees the setting change something: Reno, built into every Linux
    /// kernel, or CUBIC where Reno is the system's.
    pub fn other_than_the_system_s() -> (LoopbackCongestion, &'static str) {
        let name = if system_algorithm() == "reno" {
            "cubic"
        } else {
            "reno"
        };
        let probed = LoopbackCongestion::probe(&name.parse().expect("a well-formed name"));
        assert_eq!(probed.name(), Some(name), "the kernel offers {name}");
        (probed, name)
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{other_than_the_system_s, system_algorithm};
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn setting(name: &str) -> CongestionControl {
        name.parse().expect("a well-formed name")
    }

    #[test]
    fn an_offered_algorithm_is_kept_and_set_on_loopback_sockets_only() {
        let (other, name) = other_than_the_system_s();
        let system = system_algorithm();
        let fresh = || {
            rustix::net::socket(
                rustix::net::AddressFamily::INET6,
                rustix::net::SocketType::STREAM,
                None,
            )
            .expect("socket")
        };
        let get = |s: &std::os::fd::OwnedFd| {
            rustix::net::sockopt::tcp_congestion(s).expect("TCP_CONGESTION")
        };
        for ip in [
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
            IpAddr::V4(Ipv4Addr::new(127, 8, 9, 10)),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            IpAddr::V6(Ipv4Addr::new(127, 0, 0, 1).to_ipv6_mapped()),
        ] {
            let s = fresh();
            other.apply(&s, ip);
            assert_eq!(get(&s), name, "{ip}");
        }
        for ip in [
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            IpAddr::V6("2001:db8::1".parse().expect("ip")),
        ] {
            let s = fresh();
            other.apply(&s, ip);
            assert_eq!(get(&s), system, "{ip}");
        }
        let s = fresh();
        LoopbackCongestion::system().apply(&s, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(get(&s), system);
    }

    #[test]
    fn an_algorithm_the_kernel_lacks_leaves_the_system_s() {
        let lacking = LoopbackCongestion::probe(&setting("no_such_cc"));
        assert_eq!(lacking.name(), None);
        assert_eq!(
            LoopbackCongestion::probe(&CongestionControl::system()).name(),
            None
        );
    }
}
