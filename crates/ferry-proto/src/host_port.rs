//! Data-connection addresses: PORT and PASV (RFC 959 §4.1.2, §4.2), EPRT and EPSV
//! (RFC 2428).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};

/// Why a PORT or EPRT argument was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostPortError {
    /// The argument is not of the form the command takes.
    #[error("malformed address: {0}")]
    Malformed(&'static str),
    /// EPRT named a network protocol other than 1 (IPv4) or 2 (IPv6); answered 522.
    #[error("network protocol not supported, use (1,2)")]
    UnsupportedProtocol,
}

/// Parses the `h1,h2,h3,h4,p1,p2` argument of PORT.
pub fn parse_port(arg: &str) -> Result<SocketAddrV4, HostPortError> {
    let mut nums = [0u8; 6];
    let mut parts = arg.trim().split(',');
    for n in &mut nums {
        let part = parts
            .next()
            .ok_or(HostPortError::Malformed("PORT takes six numbers"))?;
        let part = part.trim();
        if part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(HostPortError::Malformed("each PORT number is 0-255"));
        }
        *n = part
            .parse()
            .map_err(|_| HostPortError::Malformed("each PORT number is 0-255"))?;
    }
    if parts.next().is_some() {
        return Err(HostPortError::Malformed("PORT takes six numbers"));
    }
    let ip = Ipv4Addr::new(nums[0], nums[1], nums[2], nums[3]);
    let port = u16::from(nums[4]) << 8 | u16::from(nums[5]);
    Ok(SocketAddrV4::new(ip, port))
}

/// Formats an address for a 227 reply: `h1,h2,h3,h4,p1,p2`.
pub fn format_pasv(addr: SocketAddrV4) -> String {
    let [a, b, c, d] = addr.ip().octets();
    let port = addr.port();
    format!("{a},{b},{c},{d},{},{}", port >> 8, port & 0xFF)
}

/// Parses the `<d><proto><d><addr><d><port><d>` argument of EPRT.
pub fn parse_eprt(arg: &str) -> Result<SocketAddr, HostPortError> {
    let mut chars = arg.chars();
    let delim = chars
        .next()
        .ok_or(HostPortError::Malformed("EPRT takes |proto|address|port|"))?;
    if !(33..=126).contains(&(delim as u32)) {
        return Err(HostPortError::Malformed("EPRT delimiter must be printable"));
    }
    let fields: Vec<&str> = arg[delim.len_utf8()..].split(delim).collect();
    if fields.len() != 4 || !fields[3].is_empty() {
        return Err(HostPortError::Malformed("EPRT takes |proto|address|port|"));
    }
    let port: u16 = fields[2]
        .parse()
        .map_err(|_| HostPortError::Malformed("EPRT port must be 1-65535"))?;
    if port == 0 {
        return Err(HostPortError::Malformed("EPRT port must be 1-65535"));
    }
    let ip = match fields[0] {
        "1" => IpAddr::V4(
            fields[1]
                .parse::<Ipv4Addr>()
                .map_err(|_| HostPortError::Malformed("EPRT address is not IPv4"))?,
        ),
        "2" => IpAddr::V6(
            fields[1]
                .parse::<Ipv6Addr>()
                .map_err(|_| HostPortError::Malformed("EPRT address is not IPv6"))?,
        ),
        p if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            return Err(HostPortError::UnsupportedProtocol);
        }
        _ => return Err(HostPortError::Malformed("EPRT protocol must be 1 or 2")),
    };
    Ok(SocketAddr::new(ip, port))
}

/// The argument of EPSV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpsvArg {
    /// No argument: the protocol of the control connection.
    Any,
    /// A network protocol number: 1 is IPv4, 2 is IPv6.
    Protocol(u8),
    /// `EPSV ALL`: from now on only EPSV may set up data connections.
    All,
}

/// Parses the argument of EPSV.
pub fn parse_epsv(arg: Option<&str>) -> Result<EpsvArg, HostPortError> {
    match arg.map(str::trim) {
        None | Some("") => Ok(EpsvArg::Any),
        Some(a) if a.eq_ignore_ascii_case("ALL") => Ok(EpsvArg::All),
        Some(a) => a
            .parse::<u8>()
            .map(EpsvArg::Protocol)
            .map_err(|_| HostPortError::Malformed("EPSV takes 1, 2 or ALL")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn port_round_trip() {
        let a = parse_port("127,0,0,1,195,80").expect("valid");
        assert_eq!(a, "127.0.0.1:50000".parse().expect("addr"));
        assert_eq!(format_pasv(a), "127,0,0,1,195,80");
    }

    #[test]
    fn port_refuses_malformed() {
        for bad in [
            "",
            "1,2,3,4,5",
            "1,2,3,4,5,6,7",
            "256,0,0,1,1,1",
            "a,b,c,d,e,f",
            "1,2,3,4,5,-6",
            "1,,3,4,5,6",
        ] {
            assert!(parse_port(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn eprt_forms() {
        assert_eq!(
            parse_eprt("|1|132.235.1.2|6275|").expect("v4"),
            "132.235.1.2:6275".parse().expect("addr")
        );
        assert_eq!(
            parse_eprt("!2!::1!5282!").expect("v6"),
            "[::1]:5282".parse().expect("addr")
        );
        assert_eq!(
            parse_eprt("|3|1.2.3.4|5|"),
            Err(HostPortError::UnsupportedProtocol)
        );
        for bad in [
            "",
            "|1|1.2.3.4|70000|",
            "|1|::1|5|",
            "|1|1.2.3.4|5",
            "|2|x|5|",
            "|1|1.2.3.4|0|",
        ] {
            assert!(parse_eprt(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn epsv_args() {
        assert_eq!(parse_epsv(None), Ok(EpsvArg::Any));
        assert_eq!(parse_epsv(Some("all")), Ok(EpsvArg::All));
        assert_eq!(parse_epsv(Some("2")), Ok(EpsvArg::Protocol(2)));
        assert!(parse_epsv(Some("x")).is_err());
    }

    proptest! {
        #[test]
        fn pasv_format_parses_back(ip in any::<[u8; 4]>(), port in any::<u16>()) {
            let addr = SocketAddrV4::new(Ipv4Addr::from(ip), port);
            prop_assert_eq!(parse_port(&format_pasv(addr)), Ok(addr));
        }

        #[test]
        fn eprt_never_panics(s in "\\PC{0,40}") {
            let _ = parse_eprt(&s);
        }
    }
}
