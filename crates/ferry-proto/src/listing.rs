//! Directory listing lines: LIST in the `ls -l` form clients parse (RFC 959 leaves it
//! open; this is the form vsftpd and ProFTPD send), NLST bare names (RFC 959
//! §4.1.3), and MLSD/MLST facts (RFC 3659 §7).

use time::OffsetDateTime;

use crate::timeval;

/// What kind of object an entry names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    /// A FIFO, socket or device, by its `ls -l` type letter (`p`, `s`, `b`,
    /// `c`, or `?` for a type the system did not name).
    Special(char),
}

/// One directory entry, as the listings need it.
#[derive(Debug, Clone)]
pub struct ListEntry<'a> {
    pub name: &'a str,
    pub kind: EntryKind,
    pub size: u64,
    pub modified: OffsetDateTime,
    /// Unix permission bits (the low 12 bits of `st_mode`).
    pub mode: u32,
    pub links: u64,
    /// Device and inode, for the MLSx `unique` fact.
    pub unique: (u64, u64),
}

/// Appends one `ls -l` line (CRLF-terminated) to `out`.
///
/// Times within six months of `now` show the time of day, older or future ones the
/// year, as `ls` does. Owner and group are shown as `ftp`: the server does not reveal
/// host account names.
pub fn format_list_line(entry: &ListEntry<'_>, now: OffsetDateTime, out: &mut Vec<u8>) {
    let kind = match entry.kind {
        EntryKind::Dir => 'd',
        EntryKind::Symlink => 'l',
        EntryKind::File => '-',
        EntryKind::Special(letter) => letter,
    };
    let mut perms = String::with_capacity(10);
    perms.push(kind);
    for shift in [6u32, 3, 0] {
        let bits = (entry.mode >> shift) & 7;
        perms.push(if bits & 4 != 0 { 'r' } else { '-' });
        perms.push(if bits & 2 != 0 { 'w' } else { '-' });
        perms.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    let t = entry.modified;
    let six_months = time::Duration::days(182);
    let month = &MONTHS[usize::from(u8::from(t.month())) - 1];
    let when = if t > now - six_months && t <= now + time::Duration::hours(1) {
        format!("{month} {:>2} {:02}:{:02}", t.day(), t.hour(), t.minute())
    } else {
        format!("{month} {:>2}  {}", t.day(), t.year())
    };
    let line = format!(
        "{perms} {:>4} ftp      ftp      {:>12} {when} {}\r\n",
        entry.links, entry.size, entry.name
    );
    out.extend_from_slice(line.as_bytes());
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// The MLSx facts a client asked for with `OPTS MLST` (RFC 3659 §7.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MlstFacts {
    pub kind: bool,
    pub size: bool,
    pub modify: bool,
    pub perm: bool,
    pub unique: bool,
    pub unix_mode: bool,
}

impl Default for MlstFacts {
    fn default() -> Self {
        MlstFacts {
            kind: true,
            size: true,
            modify: true,
            perm: true,
            unique: true,
            unix_mode: false,
        }
    }
}

impl MlstFacts {
    /// The FEAT line: every supported fact, `*` after the ones currently selected.
    pub fn feat_line(&self) -> String {
        let mut s = String::from("MLST ");
        for (name, on) in self.named() {
            s.push_str(name);
            if on {
                s.push('*');
            }
            s.push(';');
        }
        s
    }

    /// Selects facts from an `OPTS MLST fact;fact;` argument; unknown facts are
    /// ignored, as RFC 3659 §7.9 asks. Returns the selected list for the 200 reply.
    pub fn select(arg: &str) -> (MlstFacts, String) {
        let mut f = MlstFacts {
            kind: false,
            size: false,
            modify: false,
            perm: false,
            unique: false,
            unix_mode: false,
        };
        for fact in arg.split(';').map(str::trim) {
            match fact.to_ascii_lowercase().as_str() {
                "type" => f.kind = true,
                "size" => f.size = true,
                "modify" => f.modify = true,
                "perm" => f.perm = true,
                "unique" => f.unique = true,
                "unix.mode" => f.unix_mode = true,
                _ => {}
            }
        }
        let chosen: String = f
            .named()
            .into_iter()
            .filter(|(_, on)| *on)
            .map(|(n, _)| format!("{n};"))
            .collect();
        (f, chosen)
    }

    fn named(&self) -> [(&'static str, bool); 6] {
        [
            ("type", self.kind),
            ("size", self.size),
            ("modify", self.modify),
            ("perm", self.perm),
            ("unique", self.unique),
            ("UNIX.mode", self.unix_mode),
        ]
    }
}

/// How an entry is named in the `type` fact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MlsxRole {
    /// An ordinary entry of the listed directory.
    Entry,
    /// The listed directory itself (`type=cdir`).
    Current,
}

/// Appends the MLSx facts and name of one entry (`fact=value;... name`) to `out`,
/// without a line ending: MLSD adds CRLF, MLST puts the line in a 250 reply.
/// `perm` is the RFC 3659 §7.5.5 permission string for the logged-in user.
pub fn format_mlsx(
    entry: &ListEntry<'_>,
    role: MlsxRole,
    facts: MlstFacts,
    perm: &str,
    out: &mut String,
) {
    use std::fmt::Write;
    if facts.kind {
        let t = match (role, entry.kind) {
            (MlsxRole::Current, _) => "cdir",
            (_, EntryKind::Dir) => "dir",
            (_, EntryKind::File) => "file",
            (_, EntryKind::Symlink) => "OS.unix=symlink",
            (_, EntryKind::Special(_)) => "OS.unix=special",
        };
        let _ = write!(out, "type={t};");
    }
    if facts.size {
        let _ = write!(out, "size={};", entry.size);
    }
    if facts.modify {
        let _ = write!(out, "modify={};", timeval::format(entry.modified));
    }
    if facts.perm {
        let _ = write!(out, "perm={perm};");
    }
    if facts.unique {
        let _ = write!(out, "unique={:x}g{:x};", entry.unique.0, entry.unique.1);
    }
    if facts.unix_mode {
        let _ = write!(out, "UNIX.mode=0{:o};", entry.mode & 0o7777);
    }
    out.push(' ');
    out.push_str(entry.name);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, kind: EntryKind, modified: OffsetDateTime) -> ListEntry<'_> {
        ListEntry {
            name,
            kind,
            size: 1234,
            modified,
            mode: 0o644,
            links: 1,
            unique: (0x801, 0x1f),
        }
    }

    #[test]
    fn recent_and_old_list_lines() {
        let now = crate::timeval::parse("20261121120000").expect("t");
        let recent = crate::timeval::parse("20261101083000").expect("t");
        let old = crate::timeval::parse("20200105000000").expect("t");
        let mut out = Vec::new();
        format_list_line(&entry("a b.txt", EntryKind::File, recent), now, &mut out);
        format_list_line(&entry("-dash", EntryKind::Dir, old), now, &mut out);
        format_list_line(&entry("fifo", EntryKind::Special('p'), old), now, &mut out);
        let text = String::from_utf8(out).expect("utf8");
        assert_eq!(
            text,
            "-rw-r--r--    1 ftp      ftp              1234 Nov  1 08:30 a b.txt\r\n\
             drw-r--r--    1 ftp      ftp              1234 Jan  5  2020 -dash\r\n\
             prw-r--r--    1 ftp      ftp              1234 Jan  5  2020 fifo\r\n"
        );
    }

    #[test]
    fn mlsx_facts() {
        let t = crate::timeval::parse("20261101083000").expect("t");
        let mut s = String::new();
        format_mlsx(
            &entry("x", EntryKind::File, t),
            MlsxRole::Entry,
            MlstFacts::default(),
            "adfrw",
            &mut s,
        );
        assert_eq!(
            s,
            "type=file;size=1234;modify=20261101083000;perm=adfrw;unique=801g1f; x"
        );
        let (facts, chosen) = MlstFacts::select("size;TYPE;bogus;");
        assert_eq!(chosen, "type;size;");
        let mut s = String::new();
        format_mlsx(
            &entry("x", EntryKind::Dir, t),
            MlsxRole::Current,
            facts,
            "",
            &mut s,
        );
        assert_eq!(s, "type=cdir;size=1234; x");
        assert_eq!(
            facts.feat_line(),
            "MLST type*;size*;modify;perm;unique;UNIX.mode;"
        );
    }
}
