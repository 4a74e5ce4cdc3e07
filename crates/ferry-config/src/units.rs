//! The units configuration values are written in: sizes (`"512 KiB"`), durations
//! (`"90s"`, `"5m"`, `"1h30m"`), port ranges (`"50000-50100"`) and TCP
//! congestion-control names (`"cubic"`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A number of bytes. Written as a string with a unit (`B`, `KB`, `KiB`, `MB`,
/// `MiB`, `GB`, `GiB`, `TB`, `TiB`; SI units are powers of 1000, IEC of 1024) or as
/// a plain integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (num, unit) = (s[..split].trim(), s[split..].trim());
        let factor: u64 = match unit.to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1000,
            "kib" => 1 << 10,
            "m" | "mb" => 1000 * 1000,
            "mib" => 1 << 20,
            "g" | "gb" => 1000 * 1000 * 1000,
            "gib" => 1 << 30,
            "t" | "tb" => 1000 * 1000 * 1000 * 1000,
            "tib" => 1 << 40,
            _ => {
                return Err(format!(
                    "unknown size unit `{unit}` in `{s}` (use B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)"
                ));
            }
        };
        let value: f64 = num
            .parse()
            .map_err(|_| format!("`{s}` is not a size like \"512 KiB\" or \"10 GiB\""))?;
        let bytes = value * factor as f64;
        if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
            return Err(format!("size `{s}` is out of range"));
        }
        Ok(ByteSize(bytes.round() as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 4] = [
            ("TiB", 1 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ];
        for (name, size) in UNITS {
            if self.0 >= size && self.0.is_multiple_of(size) {
                return write!(f, "{} {name}", self.0 / size);
            }
        }
        write!(f, "{} B", self.0)
    }
}

/// A span of time, written `"90s"`, `"5m"`, `"1h"`, `"2d"`, `"250ms"` or combined
/// (`"1h30m"`); a plain integer is seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let text = s.trim();
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            let secs: u64 = text
                .parse()
                .map_err(|_| format!("duration `{s}` is out of range"))?;
            return Ok(HumanDuration(Duration::from_secs(secs)));
        }
        let bad = || format!("`{s}` is not a duration like \"90s\", \"5m\" or \"1h\"");
        let mut total = Duration::ZERO;
        let mut rest = text;
        if rest.is_empty() {
            return Err(bad());
        }
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
            if digits == 0 {
                return Err(bad());
            }
            let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let unit = rest[..unit_len].trim();
            rest = &rest[unit_len..];
            let part = match unit {
                "ms" => Duration::from_millis(n),
                "s" => Duration::from_secs(n),
                "m" => Duration::from_secs(n.saturating_mul(60)),
                "h" => Duration::from_secs(n.saturating_mul(3600)),
                "d" => Duration::from_secs(n.saturating_mul(86400)),
                _ => return Err(bad()),
            };
            total = total.saturating_add(part);
        }
        Ok(HumanDuration(total))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.subsec_millis() != 0 || d.as_secs() == 0 {
            return write!(f, "{}ms", d.as_millis());
        }
        let s = d.as_secs();
        if s.is_multiple_of(3600) {
            write!(f, "{}h", s / 3600)
        } else if s.is_multiple_of(60) {
            write!(f, "{}m", s / 60)
        } else {
            write!(f, "{s}s")
        }
    }
}

/// An inclusive range of TCP ports, `"50000-50100"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl FromStr for PortRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a port range like \"50000-50100\"");
        let (a, b) = s.trim().split_once('-').ok_or_else(bad)?;
        let first: u16 = a.trim().parse().map_err(|_| bad())?;
        let last: u16 = b.trim().parse().map_err(|_| bad())?;
        if first == 0 || last < first {
            return Err(format!(
                "port range `{s}` must go from a low port (1 or more) to a higher one"
            ));
        }
        Ok(PortRange { first, last })
    }
}

/// A TCP congestion-control algorithm by its kernel name (`cubic`, `reno`,
/// `bbr`, ...), or none: leave the system's own (`""` or `"system"`).
///
/// Only the name's form is checked here (what `TCP_CONGESTION` accepts: at
/// most 15 letters, digits, `_` or `-`); whether the kernel offers it is known
/// only on the machine that serves, when the server starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CongestionControl(Option<String>);

/// The longest name `TCP_CONGESTION` takes (`TCP_CA_NAME_MAX` less its NUL).
const CONGESTION_NAME_MAX: usize = 15;

impl CongestionControl {
    /// The system's own, untouched.
    pub fn system() -> Self {
        CongestionControl(None)
    }

    /// CUBIC, Linux's default, which does not pace its segments.
    pub fn cubic() -> Self {
        CongestionControl(Some("cubic".to_owned()))
    }

    /// The algorithm's name, or `None` for the system's own.
    pub fn name(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl FromStr for CongestionControl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let name = s.trim();
        if name.is_empty() || name == "system" {
            return Ok(CongestionControl::system());
        }
        let well_formed = name.len() <= CONGESTION_NAME_MAX
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !well_formed {
            return Err(format!(
                "`{s}` is not a TCP congestion-control name like \"cubic\" \
                 (at most {CONGESTION_NAME_MAX} letters, digits, `_` or `-`), \
                 nor \"system\""
            ));
        }
        Ok(CongestionControl(Some(name.to_owned())))
    }
}

impl fmt::Display for CongestionControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name().unwrap_or("system"))
    }
}

/// Deserializes any `FromStr` type from a TOML string (or integer, for sizes and
/// durations), turning its error into one toml attaches the line to.
macro_rules! from_str_or_int {
    ($t:ty) => {
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                #[derive(Deserialize)]
                #[serde(untagged)]
                enum Raw {
                    Text(String),
                    Int(u64),
                }
                let text = match Raw::deserialize(d)? {
                    Raw::Text(s) => s,
                    Raw::Int(n) => n.to_string(),
                };
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

from_str_or_int!(ByteSize);

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
from_str_or_int!(HumanDuration);
from_str_or_int!(PortRange);

impl<'de> Deserialize<'de> for CongestionControl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sizes() {
        assert_eq!("512 KiB".parse(), Ok(ByteSize(512 * 1024)));
        assert_eq!("10GiB".parse(), Ok(ByteSize(10 << 30)));
        assert_eq!("1.5 MB".parse(), Ok(ByteSize(1_500_000)));
        assert_eq!("42".parse(), Ok(ByteSize(42)));
        assert!("ten".parse::<ByteSize>().is_err());
        assert!("5 parsecs".parse::<ByteSize>().is_err());
        assert!("-1 KiB".parse::<ByteSize>().is_err());
    }

    #[test]
    fn congestion_control_names() {
        assert_eq!(
            "cubic"
                .parse::<CongestionControl>()
                .map(|c| c.name().map(str::to_owned)),
            Ok(Some("cubic".to_owned()))
        );
        assert_eq!(
            " reno ".parse::<CongestionControl>().map(|c| c.to_string()),
            Ok("reno".into())
        );
        assert_eq!("".parse(), Ok(CongestionControl::system()));
        assert_eq!("system".parse(), Ok(CongestionControl::system()));
        assert_eq!(CongestionControl::system().to_string(), "system");
        for bad in ["cu bic", "cubic;", "a_name_of_16_chr", "bbr\0"] {
            let e = bad.parse::<CongestionControl>().expect_err(bad);
            assert!(e.contains("congestion-control name"), "{e}");
        }
        assert!("a_name_of_15_ch".parse::<CongestionControl>().is_ok());
    }

    #[test]
    fn durations() {
        assert_eq!("90s".parse(), Ok(HumanDuration(Duration::from_secs(90))));
        assert_eq!("5m".parse(), Ok(HumanDuration(Duration::from_secs(300))));
        assert_eq!(
            "1h30m".parse(),
            Ok(HumanDuration(Duration::from_secs(5400)))
        );
        assert_eq!(
            "250ms".parse(),
            Ok(HumanDuration(Duration::from_millis(250)))
        );
        assert_eq!("7".parse(), Ok(HumanDuration(Duration::from_secs(7))));
        for bad in ["", "m", "5x", "1.5h", "-1s"] {
            assert!(bad.parse::<HumanDuration>().is_err(), "{bad}");
        }
    }

    #[test]
    fn ports() {
        assert_eq!(
            "50000-50100".parse(),
            Ok(PortRange {
                first: 50000,
                last: 50100
            })
        );
        assert!("50100-50000".parse::<PortRange>().is_err());
        assert!("0-10".parse::<PortRange>().is_err());
        assert!("5000".parse::<PortRange>().is_err());
    }

    proptest! {
        #[test]
        fn size_display_parses_back(n in any::<u32>(), shift in 0u32..30) {
            let s = ByteSize(u64::from(n) << shift);
            prop_assert_eq!(s.to_string().parse::<ByteSize>(), Ok(s));
        }

        #[test]
        fn duration_display_parses_back(ms in 0u64..10_000_000_000) {
            let d = HumanDuration(Duration::from_millis(ms));
            prop_assert_eq!(d.to_string().parse::<HumanDuration>(), Ok(d));
        }
    }
}
