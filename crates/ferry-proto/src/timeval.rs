//! The `YYYYMMDDHHMMSS[.sss]` time values of MDTM, MFMT and the MLSx `modify` fact
//! (RFC 3659 §2.3). Always UTC.

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

/// Formats a time as `YYYYMMDDHHMMSS` in UTC.
pub fn format(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Parses `YYYYMMDDHHMMSS` with an optional fraction of a second, as UTC.
pub fn parse(s: &str) -> Option<OffsetDateTime> {
    let (whole, fraction) = match s.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (s, None),
    };
    if whole.len() != 14 || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let num = |r: std::ops::Range<usize>| whole[r].parse::<u32>().ok();
    let nanos = match fraction {
        None => 0,
        Some(f) if !f.is_empty() && f.len() <= 9 && f.bytes().all(|b| b.is_ascii_digit()) => {
            let padded = format!("{f:0<9}");
            padded.parse::<u32>().ok()?
        }
        Some(_) => return None,
    };
    let year = i32::try_from(num(0..4)?).ok()?;
    let month = Month::try_from(u8::try_from(num(4..6)?).ok()?).ok()?;
    let day = u8::try_from(num(6..8)?).ok()?;
    let date = Date::from_calendar_date(year, month, day).ok()?;
    let time = Time::from_hms_nano(
        u8::try_from(num(8..10)?).ok()?,
        u8::try_from(num(10..12)?).ok()?,
        u8::try_from(num(12..14)?).ok()?,
        nanos,
    )
    .ok()?;
    Some(PrimitiveDateTime::new(date, time).assume_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let t = parse("20261121183005").expect("valid");
        assert_eq!(format(t), "20261121183005");
        assert_eq!(t.unix_timestamp(), 1_795_285_805);
    }

    #[test]
    fn takes_fractions_and_refuses_garbage() {
        assert_eq!(
            parse("20200229000000.5").map(|t| t.nanosecond()),
            Some(500_000_000)
        );
        assert!(parse("20210229000000").is_none());
        assert!(parse("2021022900000").is_none());
        assert!(parse("20210101000000.").is_none());
        assert!(parse("2021010100000a").is_none());
    }
}
