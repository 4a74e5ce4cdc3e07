//! The listing parsers on real listings: LIST and MLSD output captured from
//! vsftpd 3.0.3, ProFTPD 1.3.8 and Pure-FTPd 1.0.50 (Debian 12) serving the same
//! directory, and IIS-style (DOS) listings as IIS sends them. Each directory
//! holds `data.bin` (123456 bytes, modified 2019-03-04 05:06:07), `link` (a
//! symbolic link to it), `sub dir` and `two  spaces.txt` (3 bytes).

use ferry_client::listing::{EntryKind, RemoteEntry, parse_list_line, parse_mlsx_line};
use time::macros::datetime;

fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn parse(name: &str) -> Vec<RemoteEntry> {
    let now = datetime!(2026-11-21 22:00 UTC);
    let text = fixture(name);
    let mut entries: Vec<RemoteEntry> = if name.contains("mlsd") {
        text.lines().filter_map(parse_mlsx_line).collect()
    } else {
        text.lines()
            .filter_map(|l| parse_list_line(l, now))
            .collect()
    };
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    entries
}

fn find<'a>(entries: &'a [RemoteEntry], name: &str) -> &'a RemoteEntry {
    entries
        .iter()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("no {name:?} in {entries:#?}"))
}

/// What every capture must show, whatever the format.
fn check_common(name: &str, with_link: bool) -> Vec<RemoteEntry> {
    let entries = parse(name);
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    let mut want = vec!["data.bin", "sub dir", "two  spaces.txt"];
    if with_link {
        want.insert(1, "link");
    }
    assert_eq!(names, want, "{name}");
    let data = find(&entries, "data.bin");
    assert_eq!(
        (data.kind, data.size),
        (EntryKind::File, Some(123_456)),
        "{name}"
    );
    let date = data.modified.expect("data.bin has a time");
    assert_eq!(date.date(), datetime!(2019-03-04 0:00 UTC).date(), "{name}");
    assert_eq!(find(&entries, "sub dir").kind, EntryKind::Dir, "{name}");
    assert_eq!(find(&entries, "two  spaces.txt").size, Some(3), "{name}");
    let recent = find(&entries, "two  spaces.txt").modified.expect("time");
    assert_eq!(
        recent.date(),
        datetime!(2026-11-21 0:00 UTC).date(),
        "{name}"
    );
    entries
}

#[test]
fn unix_listings_of_three_servers() {
    for name in ["vsftpd-list.txt", "proftpd-list.txt", "pureftpd-list.txt"] {
        let entries = check_common(name, true);
        let link = find(&entries, "link");
        assert_eq!(
            (link.kind, link.target.as_deref()),
            (EntryKind::Link, Some("data.bin")),
            "{name}"
        );
        assert_eq!(
            find(&entries, "data.bin").permissions.as_deref(),
            Some("rw-r--r--")
        );
        // The year form has no time of day; the recent form has minutes.
        let recent = find(&entries, "two  spaces.txt").modified.expect("time");
        assert_eq!((recent.hour(), recent.minute()), (21, 6), "{name}");
    }
}

#[test]
fn mlsd_of_two_servers() {
    for name in ["proftpd-mlsd.txt", "pureftpd-mlsd.txt"] {
        let entries = check_common(name, true);
        assert_eq!(find(&entries, "link").kind, EntryKind::Link, "{name}");
        let data = find(&entries, "data.bin");
        assert_eq!(
            data.modified,
            Some(datetime!(2019-03-04 05:06:07 UTC)),
            "{name}"
        );
        assert_eq!(data.permissions.as_deref(), Some("rw-r--r--"), "{name}");
    }
}

#[test]
fn iis_dos_listings() {
    for name in ["iis-list.txt", "iis4digit-list.txt"] {
        let entries = check_common(name, false);
        let data = find(&entries, "data.bin");
        assert_eq!(
            data.modified,
            Some(datetime!(2019-03-04 05:06 UTC)),
            "{name}"
        );
        let recent = find(&entries, "two  spaces.txt").modified.expect("time");
        assert_eq!((recent.hour(), recent.minute()), (21, 6), "{name}");
    }
}
