//! Where data connections go: the replies to PASV (RFC 959 §4.1.2) and EPSV
//! (RFC 2428 §3), and the policy for the address in a 227 reply.
//!
//! A 227 reply names an address, and servers behind NAT often name their private
//! one, which the client cannot reach; a hostile server could also name a third
//! host. So the address is a policy: by default (`Auto`) the client uses the
//! control connection's address when the reply names a private or unroutable
//! one, as FileZilla does.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};

/// Passive (the client connects) or active (the server connects back).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DataMode {
    /// EPSV, then PASV when the server does not know EPSV.
    #[default]
    Passive,
    /// EPRT, then PORT when the server does not know EPRT.
    Active,
}

/// Which address to connect to after a 227 reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PasvAddressPolicy {
    /// Always the control connection's address (only the port is taken).
    Control,
    /// Always the address in the reply.
    Reply,
    /// The reply's address unless it is private or unroutable and the control
    /// connection's address is not; then the control connection's.
    #[default]
    Auto,
}

impl std::str::FromStr for PasvAddressPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "control" => Ok(PasvAddressPolicy::Control),
            "reply" => Ok(PasvAddressPolicy::Reply),
            "auto" => Ok(PasvAddressPolicy::Auto),
            other => Err(format!("{other:?}: use control, reply or auto")),
        }
    }
}

/// The address in a 227 reply: six numbers `h1,h2,h3,h4,p1,p2`, usually in
/// parentheses, but some servers put them bare after the text.
pub fn parse_pasv_reply(text: &str) -> Option<SocketAddrV4> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() && (i == 0 || !bytes[i - 1].is_ascii_digit()) {
            let rest = &text[i..];
            let end = rest
                .find(|c: char| !(c.is_ascii_digit() || c == ',' || c == ' '))
                .unwrap_or(rest.len());
            let candidate: Vec<&str> = rest[..end].split(',').map(str::trim).collect();
            if candidate.len() >= 6 {
                let nums: Option<Vec<u8>> = candidate[..6].iter().map(|n| n.parse().ok()).collect();
                if let Some(n) = nums {
                    let ip = Ipv4Addr::new(n[0], n[1], n[2], n[3]);
                    let port = u16::from(n[4]) << 8 | u16::from(n[5]);
                    return Some(SocketAddrV4::new(ip, port));
                }
            }
        }
        i += 1;
    }
    None
}

/// The port in a 229 reply: `... (|||port|)`, with any delimiter.
pub fn parse_epsv_reply(text: &str) -> Option<u16> {
    let open = text.find('(')?;
    let inner = &text[open + 1..];
    let close = inner.find(')')?;
    let inner = &inner[..close];
    let delim = inner.chars().next()?;
    let fields: Vec<&str> = inner.split(delim).collect();
    // "|||6446|" splits into ["", "", "", "6446", ""].
    if fields.len() != 5 {
        return None;
    }
    fields[3].parse().ok().filter(|p| *p != 0)
}

/// True for addresses a client on another network cannot reach.
pub fn is_unroutable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// Where to connect for a 227 reply, given the control connection's peer.
pub fn pasv_target(
    policy: PasvAddressPolicy,
    reply: SocketAddrV4,
    control_peer: IpAddr,
) -> SocketAddr {
    let use_control = match policy {
        PasvAddressPolicy::Control => true,
        PasvAddressPolicy::Reply => false,
        PasvAddressPolicy::Auto => {
            IpAddr::V4(*reply.ip()) != control_peer
                && is_unroutable(IpAddr::V4(*reply.ip()))
                && !is_unroutable(control_peer)
                || reply.ip().is_unspecified()
        }
    };
    if use_control {
        SocketAddr::new(control_peer, reply.port())
    } else {
        SocketAddr::V4(reply)
    }
}

/// The argument of EPRT for a local address: `|1|127.0.0.1|5000|`.
pub fn eprt_argument(addr: SocketAddr) -> String {
    let proto = if addr.is_ipv4() { 1 } else { 2 };
    format!("|{proto}|{}|{}|", addr.ip(), addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn pasv_replies_of_real_servers() {
        let want = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 50001);
        for text in [
            "Entering Passive Mode (127,0,0,1,195,81).",
            "Entering Passive Mode (127,0,0,1,195,81)",
            "Entering passive mode 127,0,0,1,195,81",
            "=127,0,0,1,195,81",
        ] {
            assert_eq!(parse_pasv_reply(text), Some(want), "{text}");
        }
        assert_eq!(
            parse_pasv_reply("Entering Passive Mode (127,0,0,1,195)"),
            None
        );
        assert_eq!(
            parse_pasv_reply("Entering Passive Mode (300,0,0,1,1,1)"),
            None
        );
    }

    #[test]
    fn epsv_replies() {
        assert_eq!(
            parse_epsv_reply("Entering Extended Passive Mode (|||6446|)"),
            Some(6446)
        );
        assert_eq!(
            parse_epsv_reply("Entering Extended Passive Mode (!!!6446!)"),
            Some(6446)
        );
        assert_eq!(parse_epsv_reply("(|||0|)"), None);
        assert_eq!(parse_epsv_reply("(||6446|)"), None);
        assert_eq!(parse_epsv_reply("no parens"), None);
    }

    #[test]
    fn pasv_address_policy() {
        let private = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 5), 2000);
        let public_peer: IpAddr = "203.0.113.9".parse().expect("test input");
        let loop_peer: IpAddr = "127.0.0.1".parse().expect("test input");
        // A private address from a public server: use the control address.
        assert_eq!(
            pasv_target(PasvAddressPolicy::Auto, private, public_peer),
            "203.0.113.9:2000".parse().expect("test input")
        );
        // Both private (a LAN server): believe the reply.
        assert_eq!(
            pasv_target(PasvAddressPolicy::Auto, private, loop_peer),
            "10.0.0.5:2000".parse().expect("test input")
        );
        assert_eq!(
            pasv_target(PasvAddressPolicy::Reply, private, public_peer),
            "10.0.0.5:2000".parse().expect("test input")
        );
        let public = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 1), 2000);
        assert_eq!(
            pasv_target(PasvAddressPolicy::Control, public, loop_peer),
            "127.0.0.1:2000".parse().expect("test input")
        );
        let zero = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 2000);
        assert_eq!(
            pasv_target(PasvAddressPolicy::Auto, zero, loop_peer),
            "127.0.0.1:2000".parse().expect("test input")
        );
    }

    proptest! {
        #[test]
        fn pasv_round_trips(a: u8, b: u8, c: u8, d: u8, port: u16) {
            let addr = SocketAddrV4::new(Ipv4Addr::new(a, b, c, d), port);
            let text = format!("Entering Passive Mode ({}).", ferry_proto::host_port::format_pasv(addr));
            prop_assert_eq!(parse_pasv_reply(&text), Some(addr));
        }

        #[test]
        fn reply_parsers_never_panic(text in "\\PC{0,80}") {
            let _ = parse_pasv_reply(&text);
            let _ = parse_epsv_reply(&text);
        }
    }
}
