//! Directory listings from servers: MLSD/MLST facts (RFC 3659 §7), and the
//! free-form LIST output of Unix-like servers (`ls -l`), Windows/IIS (DOS style)
//! and their common variants.
//!
//! LIST has no standard format (RFC 959 §4.1.3 says it is meant for people), so
//! the parsers accept what real servers send and give `None` for a line they do
//! not understand rather than guessing a name.

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

/// What kind of thing a directory entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    File,
    Dir,
    Link,
    Other,
}

/// One entry of a remote directory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RemoteEntry {
    pub name: String,
    pub kind: EntryKind,
    /// Size in bytes, where the listing gives it (directories often have none).
    pub size: Option<u64>,
    /// Last modification, UTC for MLSD; for LIST the server's local time taken as
    /// UTC, and to the minute at best.
    #[serde(with = "time::serde::rfc3339::option")]
    pub modified: Option<OffsetDateTime>,
    /// Unix permissions as `ls` shows them (`rwxr-xr-x`), where the listing
    /// gives them (LIST, or MLSD's `unix.mode` fact).
    pub permissions: Option<String>,
    /// Where a symbolic link points, when the listing says.
    pub target: Option<String>,
}

impl RemoteEntry {
    /// One line of `ls -l`: type and permissions, size, time (UTC) and name.
    pub fn long_line(&self) -> String {
        let kind = match self.kind {
            EntryKind::Dir => 'd',
            EntryKind::Link => 'l',
            EntryKind::File => '-',
            EntryKind::Other => '?',
        };
        let perms = self
            .permissions
            .clone()
            .unwrap_or_else(|| "---------".to_owned());
        let size = self.size.map_or_else(|| "-".to_owned(), |s| s.to_string());
        let when = self.modified.map_or_else(
            || "                ".to_owned(),
            |t| {
                format!(
                    "{:04}-{:02}-{:02} {:02}:{:02}",
                    t.year(),
                    u8::from(t.month()),
                    t.day(),
                    t.hour(),
                    t.minute()
                )
            },
        );
        let mut line = format!("{kind}{perms:<9} {size:>12} {when} {}", self.name);
        if let Some(t) = &self.target {
            line.push_str(&format!(" -> {t}"));
        }
        line
    }

    pub(crate) fn new(name: String, kind: EntryKind) -> Self {
        RemoteEntry {
            name,
            kind,
            size: None,
            modified: None,
            permissions: None,
            target: None,
        }
    }
}

/// Parses one MLSD line (`fact=value;fact=value; name`). Returns `None` for
/// malformed lines and for the `cdir`/`pdir` entries (`.` and `..`).
pub fn parse_mlsx_line(line: &str) -> Option<RemoteEntry> {
    let line = line.trim_end_matches(['\r', '\n']);
    let line = line.strip_prefix(' ').unwrap_or(line);
    let (facts, name) = line.split_once(' ')?;
    if name.is_empty() {
        return None;
    }
    let mut entry = RemoteEntry::new(name.to_owned(), EntryKind::File);
    for fact in facts.split(';').filter(|f| !f.is_empty()) {
        let (key, value) = fact.split_once('=')?;
        match key.to_ascii_lowercase().as_str() {
            "type" => {
                let v = value.to_ascii_lowercase();
                entry.kind = match v.as_str() {
                    "file" => EntryKind::File,
                    "dir" => EntryKind::Dir,
                    "cdir" | "pdir" => return None,
                    _ if v.starts_with("os.unix=slink") || v.starts_with("os.unix=symlink") => {
                        if let Some((_, target)) = value.split_once(':')
                            && !target.is_empty()
                        {
                            entry.target = Some(target.to_owned());
                        }
                        EntryKind::Link
                    }
                    _ => EntryKind::Other,
                };
            }
            "size" | "sizd" => entry.size = value.parse().ok(),
            "modify" => entry.modified = ferry_proto::timeval::parse(value),
            "unix.mode" => {
                entry.permissions = u32::from_str_radix(value, 8).ok().map(mode_string);
            }
            _ => {}
        }
    }
    Some(entry)
}

pub(crate) fn mode_string(mode: u32) -> String {
    let mut s = String::with_capacity(9);
    for shift in [6u32, 3, 0] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

/// Parses one LIST line in any of the formats this module knows, with `now`
/// used to place year-less Unix dates. `None` for `total N`, blank and unknown
/// lines, and for `.` and `..`.
pub fn parse_list_line(line: &str, now: OffsetDateTime) -> Option<RemoteEntry> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() || line.starts_with("total ") {
        return None;
    }
    let entry = parse_unix(line, now).or_else(|| parse_dos(line))?;
    if entry.name == "." || entry.name == ".." {
        return None;
    }
    Some(entry)
}

/// Splits a line into its words with the byte offset where each starts.
fn words(line: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in line.char_indices() {
        match (c == ' ' || c == '\t', start) {
            (true, Some(s)) => {
                out.push((s, &line[s..i]));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, &line[s..]));
    }
    out
}

fn month(word: &str) -> Option<Month> {
    const NAMES: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let lower = word.get(..3)?.to_ascii_lowercase();
    let i = NAMES.iter().position(|m| *m == lower)?;
    Month::try_from(u8::try_from(i + 1).ok()?).ok()
}

/// `drwxr-xr-x 2 owner group 4096 Jan  1 12:00 name`, with or without the group,
/// with `1, 3` device numbers, and `name -> target` for links.
fn parse_unix(line: &str, now: OffsetDateTime) -> Option<RemoteEntry> {
    let w = words(line);
    let mode = w.first()?.1;
    let kind = match mode.chars().next()? {
        '-' => EntryKind::File,
        'd' => EntryKind::Dir,
        'l' => EntryKind::Link,
        'b' | 'c' | 'p' | 's' | 'D' => EntryKind::Other,
        _ => return None,
    };
    let perms = mode.get(1..10)?;
    if !perms.chars().all(|c| "rwxsStTl-".contains(c)) {
        return None;
    }
    // The date is `Mon DD HH:MM|YYYY`: find the month word followed by a day.
    let at = (2..w.len().saturating_sub(2)).find(|&i| {
        month(w[i].1).is_some_and(|_| w[i].1.len() == 3)
            && w[i + 1]
                .1
                .parse::<u8>()
                .is_ok_and(|d| (1..=31).contains(&d))
    })?;
    let size = w[at - 1].1.parse::<u64>().ok();
    let (month, day, when) = (
        month(w[at].1)?,
        w[at + 1].1.parse::<u8>().ok()?,
        w[at + 2].1,
    );
    let (name_start, _) = *w.get(at + 3)?;
    let modified = unix_date(month, day, when, now);
    let mut name = line[name_start..].to_owned();
    let mut target = None;
    if kind == EntryKind::Link
        && let Some((n, t)) = name.split_once(" -> ")
    {
        target = Some(t.to_owned());
        name = n.to_owned();
    }
    Some(RemoteEntry {
        name,
        kind,
        size: if kind == EntryKind::Other { None } else { size },
        modified,
        permissions: Some(perms.to_owned()),
        target,
    })
}

fn unix_date(month: Month, day: u8, when: &str, now: OffsetDateTime) -> Option<OffsetDateTime> {
    if let Some((h, m)) = when.split_once(':') {
        let time = Time::from_hms(h.parse().ok()?, m.parse().ok()?, 0).ok()?;
        // No year: the most recent such date not more than a day ahead of now.
        let mut year = now.year();
        loop {
            let date = Date::from_calendar_date(year, month, day).ok();
            if let Some(date) = date {
                let t = PrimitiveDateTime::new(date, time).assume_utc();
                if t <= now + time::Duration::days(1) {
                    return Some(t);
                }
            }
            year -= 1;
            if year < now.year() - 8 {
                return None;
            }
        }
    }
    let year: i32 = when.parse().ok()?;
    let date = Date::from_calendar_date(year, month, day).ok()?;
    Some(PrimitiveDateTime::new(date, Time::MIDNIGHT).assume_utc())
}

/// IIS and other DOS-style listings:
/// `01-15-24  03:04PM       <DIR>          name` or
/// `2024-01-15  15:04           1234 name`.
fn parse_dos(line: &str) -> Option<RemoteEntry> {
    let w = words(line);
    if w.len() < 4 {
        return None;
    }
    let date = dos_date(w[0].1)?;
    let time = dos_time(w[1].1)?;
    let (kind, size) = if w[2].1.eq_ignore_ascii_case("<DIR>") {
        (EntryKind::Dir, None)
    } else {
        let digits: String = w[2].1.chars().filter(|c| *c != ',').collect();
        (EntryKind::File, Some(digits.parse::<u64>().ok()?))
    };
    let name = line[w[3].0..].to_owned();
    let mut entry = RemoteEntry::new(name, kind);
    entry.size = size;
    entry.modified = Some(PrimitiveDateTime::new(date, time).assume_utc());
    Some(entry)
}

fn dos_date(word: &str) -> Option<Date> {
    let parts: Vec<&str> = word.split(['-', '/', '.']).collect();
    let [a, b, c] = parts.as_slice() else {
        return None;
    };
    let num = |s: &str| s.parse::<i32>().ok();
    let (year, month, day) = if a.len() == 4 {
        (num(a)?, num(b)?, num(c)?)
    } else {
        let y = num(c)?;
        let y = match c.len() {
            2 if y < 70 => 2000 + y,
            2 => 1900 + y,
            4 => y,
            _ => return None,
        };
        (y, num(a)?, num(b)?)
    };
    let month = Month::try_from(u8::try_from(month).ok()?).ok()?;
    Date::from_calendar_date(year, month, u8::try_from(day).ok()?).ok()
}

fn dos_time(word: &str) -> Option<Time> {
    let upper = word.to_ascii_uppercase();
    let (clock, pm) = if let Some(c) = upper.strip_suffix("PM") {
        (c, Some(true))
    } else if let Some(c) = upper.strip_suffix("AM") {
        (c, Some(false))
    } else {
        (upper.as_str(), None)
    };
    let (h, m) = clock.split_once(':')?;
    let mut hour: u8 = h.parse().ok()?;
    let minute: u8 = m.get(..2)?.parse().ok()?;
    match pm {
        Some(true) if hour < 12 => hour += 12,
        Some(false) if hour == 12 => hour = 0,
        _ => {}
    }
    Time::from_hms(hour, minute, 0).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-21 12:00 UTC);

    #[test]
    fn mlsd_lines() {
        let e = parse_mlsx_line("type=file;size=1024;modify=20260102030405;perm=adfrw; a b.txt")
            .expect("test input");
        assert_eq!(e.name, "a b.txt");
        assert_eq!(e.kind, EntryKind::File);
        assert_eq!(e.size, Some(1024));
        assert_eq!(e.modified, Some(datetime!(2026-01-02 03:04:05 UTC)));
        let d = parse_mlsx_line("Type=dir;Modify=20260102030405; sub").expect("test input");
        assert_eq!(d.kind, EntryKind::Dir);
        assert!(parse_mlsx_line("type=cdir; .").is_none());
        assert!(parse_mlsx_line("type=pdir; ..").is_none());
        let l =
            parse_mlsx_line("type=OS.unix=slink:/etc/x;unix.mode=0777; link").expect("test input");
        assert_eq!(
            (l.kind, l.target.as_deref()),
            (EntryKind::Link, Some("/etc/x"))
        );
        assert_eq!(l.permissions.as_deref(), Some("rwxrwxrwx"));
        assert!(parse_mlsx_line("nofacts").is_none());
    }

    #[test]
    fn unix_lines() {
        let e = parse_list_line(
            "-rw-r--r--    1 1000     1000         4096 Nov 20 09:15 notes  v2.txt",
            NOW,
        )
        .expect("test input");
        assert_eq!(e.name, "notes  v2.txt");
        assert_eq!(e.size, Some(4096));
        assert_eq!(e.modified, Some(datetime!(2026-11-20 09:15 UTC)));
        // A date later in the year than now is last year's.
        let e =
            parse_list_line("drwxr-xr-x 2 ftp ftp 6 Dec 24 10:00 old", NOW).expect("test input");
        assert_eq!(e.modified, Some(datetime!(2025-12-24 10:00 UTC)));
        assert_eq!(e.kind, EntryKind::Dir);
        let e = parse_list_line("lrwxrwxrwx 1 root 7 Jan  1  2020 lib -> usr/lib", NOW)
            .expect("test input");
        assert_eq!(
            (e.name.as_str(), e.target.as_deref()),
            ("lib", Some("usr/lib"))
        );
        assert_eq!(e.modified, Some(datetime!(2020-01-01 0:00 UTC)));
        let e = parse_list_line("crw-rw-rw- 1 root root 1, 3 Jan  1  2020 null", NOW)
            .expect("test input");
        assert_eq!((e.kind, e.size), (EntryKind::Other, None));
        assert!(parse_list_line("total 12", NOW).is_none());
        assert!(parse_list_line("drwxr-xr-x 2 a b 6 Jan 1 10:00 .", NOW).is_none());
    }

    #[test]
    fn dos_lines() {
        let e = parse_list_line("01-15-24  03:04PM       <DIR>          My Docs", NOW)
            .expect("test input");
        assert_eq!((e.name.as_str(), e.kind), ("My Docs", EntryKind::Dir));
        assert_eq!(e.modified, Some(datetime!(2024-01-15 15:04 UTC)));
        let e =
            parse_list_line("2024-01-15  12:30AM           1,234 a.txt", NOW).expect("test input");
        assert_eq!(
            (e.size, e.modified),
            (Some(1234), Some(datetime!(2024-01-15 0:30 UTC)))
        );
    }

    proptest! {
        #[test]
        fn never_panics(line in "\\PC{0,200}") {
            let _ = parse_list_line(&line, NOW);
            let _ = parse_mlsx_line(&line);
        }

        #[test]
        fn unix_names_round_trip(name in "[a-zA-Z0-9._][a-zA-Z0-9 ._-]{0,40}", size in 0u64..1 << 40) {
            prop_assume!(name != "." && name != "..");
            let line = format!("-rw-r--r-- 1 u g {size} Mar  3 2021 {name}");
            let e = parse_list_line(&line, NOW).expect("test input");
            prop_assert_eq!(e.name, name);
            prop_assert_eq!(e.size, Some(size));
        }
    }
}
