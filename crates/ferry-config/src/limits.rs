//! The value types of account limits: byte rates (`"1 MiB/s"`), address ranges
//! (`"10.0.0.0/8"`), login hours (`"Mon-Fri 08:00-18:00"`) and file-name patterns
//! (`"*.exe"`).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use time::{OffsetDateTime, UtcOffset};

use crate::units::ByteSize;

/// Bytes per second, written `"1 MiB/s"` (the `/s` may be left out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteRate(pub u64);

impl FromStr for ByteRate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let size = t.strip_suffix("/s").unwrap_or(t);
        let bytes: ByteSize = size
            .parse()
            .map_err(|_| format!("`{s}` is not a rate like \"1 MiB/s\""))?;
        if bytes.0 == 0 {
            return Err(format!("rate `{s}` must be more than zero"));
        }
        Ok(ByteRate(bytes.0))
    }
}

impl fmt::Display for ByteRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/s", ByteSize(self.0))
    }
}

/// An address range: `"192.0.2.0/24"`, `"::1/128"`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr(pub ipnet::IpNet);

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip.to_canonical())
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if let Ok(net) = t.parse::<ipnet::IpNet>() {
            return Ok(Cidr(net.trunc()));
        }
        t.parse::<IpAddr>()
            .map(|ip| Cidr(ipnet::IpNet::from(ip)))
            .map_err(|_| format!("`{s}` is not an address or a range like \"10.0.0.0/8\""))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// When logins are allowed: days, a time span, and an optional UTC offset:
/// `"Mon-Fri 08:00-18:00"`, `"Sat,Sun 10:00-14:00 +02:00"`, `"* 22:00-06:00"`.
/// Without an offset the times are UTC. A span whose end is before its start
/// crosses midnight (and belongs to the day it starts on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginHours {
    text: String,
    /// Bit n set: weekday n (Monday = 0) allowed.
    days: u8,
    start_min: u16,
    end_min: u16,
    offset: UtcOffset,
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn day_index(s: &str) -> Option<u8> {
    let s = s.to_ascii_lowercase();
    DAYS.iter()
        .position(|d| s.starts_with(d) && d.len() <= s.len())
        .map(|i| i as u8)
}

fn minutes(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    ((h < 24 && m < 60) || (h == 24 && m == 0)).then_some(h * 60 + m)
}

impl LoginHours {
    /// Whether `at` falls inside.
    pub fn contains(&self, at: OffsetDateTime) -> bool {
        let t = at.to_offset(self.offset);
        let minute = u16::from(t.hour()) * 60 + u16::from(t.minute());
        let today = t.weekday().number_days_from_monday();
        let allowed = |d: u8| self.days & (1 << d) != 0;
        if self.start_min <= self.end_min {
            allowed(today) && minute >= self.start_min && minute < self.end_min
        } else {
            // Crosses midnight: the evening part belongs to today, the morning
            // part to yesterday.
            let yesterday = (today + 6) % 7;
            (allowed(today) && minute >= self.start_min)
                || (allowed(yesterday) && minute < self.end_min)
        }
    }

    /// The rule as written.
    pub fn text(&self) -> &str {
        &self.text
    }
}

impl FromStr for LoginHours {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "`{s}` is not login hours like \"Mon-Fri 08:00-18:00\" (optionally followed by an offset like +02:00)"
            )
        };
        let mut words = s.split_whitespace();
        let days_text = words.next().ok_or_else(bad)?;
        let span = words.next().ok_or_else(bad)?;
        let offset = match words.next() {
            None => UtcOffset::UTC,
            Some(o) => {
                let o = o.strip_prefix("UTC").unwrap_or(o);
                let (sign, rest) = match o.as_bytes().first() {
                    Some(b'+') => (1i8, &o[1..]),
                    Some(b'-') => (-1i8, &o[1..]),
                    _ => return Err(bad()),
                };
                let (h, m) = rest.split_once(':').unwrap_or((rest, "0"));
                let (h, m): (i8, i8) =
                    (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
                UtcOffset::from_hms(sign * h, sign * m, 0).map_err(|_| bad())?
            }
        };
        if words.next().is_some() {
            return Err(bad());
        }
        let mut days = 0u8;
        for part in days_text.split(',') {
            if part == "*" {
                days = 0x7F;
                continue;
            }
            match part.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (day_index(a).ok_or_else(bad)?, day_index(b).ok_or_else(bad)?);
                    let mut d = a;
                    loop {
                        days |= 1 << d;
                        if d == b {
                            break;
                        }
                        d = (d + 1) % 7;
                    }
                }
                None => days |= 1 << day_index(part).ok_or_else(bad)?,
            }
        }
        let (a, b) = span.split_once('-').ok_or_else(bad)?;
        let (start_min, end_min) = (minutes(a).ok_or_else(bad)?, minutes(b).ok_or_else(bad)?);
        if start_min == end_min {
            return Err(format!("login hours `{s}` cover no time at all"));
        }
        Ok(LoginHours {
            text: s.trim().to_owned(),
            days,
            start_min,
            end_min,
            offset,
        })
    }
}

impl fmt::Display for LoginHours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A file-name pattern (`*`, `?`, `[abc]`, `{a,b}`), matched case-insensitively
/// against the file name, or against the whole path (relative to the home) when
/// the pattern holds a `/`.
#[derive(Debug, Clone)]
pub struct FilePattern {
    text: String,
    matcher: globset::GlobMatcher,
}

impl PartialEq for FilePattern {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl FilePattern {
    /// Whether the pattern matches `path` (an absolute path in the user's view).
    pub fn matches(&self, path: &str) -> bool {
        if self.text.contains('/') {
            let p = if self.text.starts_with('/') {
                path
            } else {
                path.trim_start_matches('/')
            };
            self.matcher.is_match(p)
        } else {
            let name = path.rsplit('/').next().unwrap_or(path);
            self.matcher.is_match(name)
        }
    }

    pub fn text(&self) -> &str {
        &self.text
    }
}

impl FromStr for FilePattern {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let glob = globset::GlobBuilder::new(s)
            .case_insensitive(true)
            .literal_separator(true)
            .build()
            .map_err(|e| format!("`{s}` is not a valid file pattern: {e}"))?;
        Ok(FilePattern {
            text: s.to_owned(),
            matcher: glob.compile_matcher(),
        })
    }
}

impl fmt::Display for FilePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

crate::string_serde!(ByteRate, Cidr, LoginHours, FilePattern);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeval_for_tests as at;

    #[test]
    fn rates_and_cidrs() {
        assert_eq!("1 MiB/s".parse(), Ok(ByteRate(1 << 20)));
        assert_eq!("512KiB".parse(), Ok(ByteRate(512 << 10)));
        assert!("0/s".parse::<ByteRate>().is_err());
        let c: Cidr = "127.0.0.0/8".parse().expect("cidr");
        assert!(c.contains("127.1.2.3".parse().expect("ip")));
        assert!(!c.contains("128.0.0.1".parse().expect("ip")));
        assert!(c.contains("::ffff:127.0.0.1".parse().expect("mapped")));
        let one: Cidr = "10.1.2.3".parse().expect("host");
        assert!(
            one.contains("10.1.2.3".parse().expect("ip"))
                && !one.contains("10.1.2.4".parse().expect("ip"))
        );
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
    }

    #[test]
    fn login_hours_boundaries() {
        let h: LoginHours = "Mon-Fri 08:00-18:00".parse().expect("hours");
        // 2026-11-23 is a Monday.
        assert!(!h.contains(at("2026-11-23 07:59")));
        assert!(h.contains(at("2026-11-23 08:00")));
        assert!(h.contains(at("2026-11-23 17:59")));
        assert!(
            !h.contains(at("2026-11-23 18:00")),
            "the first minute outside"
        );
        assert!(!h.contains(at("2026-11-22 12:00")), "Sunday");
        let night: LoginHours = "Fri 22:00-06:00".parse().expect("night");
        assert!(night.contains(at("2026-11-27 23:00")));
        assert!(
            night.contains(at("2026-11-28 05:59")),
            "Saturday morning belongs to Friday night"
        );
        assert!(!night.contains(at("2026-11-28 06:00")));
        assert!(
            !night.contains(at("2026-11-27 05:00")),
            "Friday morning belongs to Thursday"
        );
        let shifted: LoginHours = "* 08:00-09:00 +02:00".parse().expect("offset");
        assert!(shifted.contains(at("2026-11-23 06:30")));
        assert!(!shifted.contains(at("2026-11-23 08:30")));
        for bad in [
            "Mon",
            "Funday 08:00-09:00",
            "Mon 25:00-26:00",
            "Mon 08:00-08:00",
            "Mon 08:00-09:00 x",
        ] {
            assert!(bad.parse::<LoginHours>().is_err(), "{bad}");
        }
    }

    #[test]
    fn patterns() {
        let p: FilePattern = "*.exe".parse().expect("glob");
        assert!(p.matches("/dir/setup.exe") && p.matches("/SETUP.EXE"));
        assert!(!p.matches("/setup.exe.txt"));
        let deep: FilePattern = "/private/*".parse().expect("glob");
        assert!(deep.matches("/private/x") && !deep.matches("/private/a/x") && !deep.matches("/x"));
        assert!("[".parse::<FilePattern>().is_err());
    }
}
