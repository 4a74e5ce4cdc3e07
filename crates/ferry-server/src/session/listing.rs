//! Directory listings: LIST and NLST (RFC 959 §4.1.3), MLSD and MLST (RFC 3659
//! §7), and STAT with a path (RFC 959 §4.1.3, a listing over the control
//! connection).
//!
//! Listings stream: entries are read from storage in batches and written out as
//! they come, so a directory of any size lists in bounded memory. LIST, NLST
//! and STAT list a directory of up to `server.listing_sort_limit` entries in
//! name order (`ferry_storage::in_name_order`), a larger one in the storage's
//! order; MLSD, for programs, always in the storage's order. Every entry is
//! shown, dot files included, whatever `ls` options the client sends. The last
//! component of a LIST/NLST path may hold `*` and `?` wildcards.

use std::sync::Arc;

use ferry_accounts::{AccessRules, Permission};
use ferry_proto::Reply;
use ferry_proto::command::{ListArgs, PathArg};
use ferry_proto::listing::{self, EntryKind, ListEntry, MlstFacts, MlsxRole};
use ferry_storage::{DirStream, FileKind, Metadata, SpecialFile, StorageError, VirtualPath};
use time::OffsetDateTime;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Session, TransferStep};
use crate::error::SessionError;
use crate::transfer::{ListingWriter, TransferMeter};

/// LIST or NLST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ListFormat {
    /// `ls -l` lines.
    Long,
    /// Bare names.
    Names,
    /// MLSD fact lines.
    Facts,
}

/// What a listing covers.
enum Target {
    /// A directory's entries, optionally filtered by a wildcard pattern.
    Dir {
        stream: Box<dyn DirStream>,
        dir: VirtualPath,
        pattern: Option<String>,
    },
    /// One file, named as the client named it.
    File { name: String, meta: Metadata },
}

pub(crate) fn list_entry<'a>(name: &'a str, m: &Metadata) -> ListEntry<'a> {
    ListEntry {
        name,
        kind: match m.kind {
            FileKind::File => EntryKind::File,
            FileKind::Dir => EntryKind::Dir,
            FileKind::Symlink => EntryKind::Symlink,
            FileKind::Special(s) => EntryKind::Special(match s {
                SpecialFile::Fifo => 'p',
                SpecialFile::Socket => 's',
                SpecialFile::BlockDevice => 'b',
                SpecialFile::CharDevice => 'c',
                SpecialFile::Unknown => '?',
            }),
        },
        size: m.size,
        modified: OffsetDateTime::from(m.modified),
        mode: m.mode,
        links: m.links,
        unique: m.unique,
    }
}

/// The RFC 3659 §7.5.5 `perm` fact for the logged-in user.
fn perm_fact(rules: &AccessRules, path: &VirtualPath, is_dir: bool) -> String {
    let can = |p| rules.allows(p, path);
    let mut s = String::new();
    let mut add = |c: char, ok: bool| {
        if ok {
            s.push(c);
        }
    };
    if is_dir {
        add('c', can(Permission::Upload));
        add('d', can(Permission::Rmdir));
        add('e', true);
        add('f', can(Permission::Rename));
        add('l', can(Permission::List));
        add('m', can(Permission::Mkdir));
        add('p', can(Permission::Delete));
    } else {
        add('a', can(Permission::Append));
        add('d', can(Permission::Delete));
        add('f', can(Permission::Rename));
        add('r', can(Permission::Download));
        add('w', can(Permission::Overwrite));
    }
    s
}

/// Matches `*` (any run) and `?` (one character).
pub(super) fn wildcard_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Formats one entry in the given format onto `out`.
fn format_entry(
    format: ListFormat,
    entry: &ListEntry<'_>,
    now: OffsetDateTime,
    facts: MlstFacts,
    perm: &str,
    out: &mut Vec<u8>,
) {
    match format {
        ListFormat::Long => listing::format_list_line(entry, now, out),
        ListFormat::Names => {
            out.extend_from_slice(entry.name.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        ListFormat::Facts => {
            let mut line = String::with_capacity(128);
            listing::format_mlsx(entry, MlsxRole::Entry, facts, perm, &mut line);
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    /// The entries of the directory `dir` for a listing in `format`: for
    /// people (LIST, NLST, STAT) in name order unless there are more than
    /// `server.listing_sort_limit`; for programs (MLSD, whose order RFC 3659
    /// leaves open and whose clients sort) as the storage keeps them.
    async fn open_listing(
        &self,
        dir: &VirtualPath,
        format: ListFormat,
    ) -> Result<Box<dyn DirStream>, SessionError> {
        let stream = self
            .storage()?
            .list(dir)
            .await
            .map_err(|e| SessionError::storage(dir, e))?;
        Ok(match format {
            ListFormat::Long | ListFormat::Names => {
                ferry_storage::in_name_order(stream, self.opts.listing_sort_limit)
            }
            ListFormat::Facts => stream,
        })
    }

    /// Works out what a LIST/NLST/STAT path names, checks the policy, and opens it.
    async fn listing_target(
        &self,
        path_arg: Option<&PathArg>,
        format: ListFormat,
    ) -> Result<Target, SessionError> {
        let path = match path_arg {
            Some(a) => self.resolve(a)?,
            None => self.cwd.clone(),
        };
        let name = path.file_name().unwrap_or("");
        if name.contains(['*', '?']) {
            let dir = path.parent().unwrap_or_else(VirtualPath::root);
            self.check(Permission::List, &dir)?;
            let stream = self.open_listing(&dir, format).await?;
            return Ok(Target::Dir {
                stream,
                dir,
                pattern: Some(name.to_owned()),
            });
        }
        self.check(Permission::List, &path)?;
        let meta = self.metadata(&path).await?;
        if meta.is_dir() {
            let stream = self.open_listing(&path, format).await?;
            Ok(Target::Dir {
                stream,
                dir: path,
                pattern: None,
            })
        } else {
            Ok(Target::File {
                name: name.to_owned(),
                meta,
            })
        }
    }

    pub(super) async fn cmd_list(
        &mut self,
        args: ListArgs,
        format: ListFormat,
    ) -> Result<TransferStep, SessionError> {
        let target = self.listing_target(args.path.as_ref(), format).await?;
        self.start_listing(target, format)
    }

    pub(super) async fn cmd_mlsd(
        &mut self,
        arg: Option<PathArg>,
    ) -> Result<TransferStep, SessionError> {
        let path = match &arg {
            Some(a) => self.resolve(a)?,
            None => self.cwd.clone(),
        };
        self.check(Permission::List, &path)?;
        let meta = self.metadata(&path).await?;
        if !meta.is_dir() {
            return Err(SessionError::storage(&path, StorageError::NotADirectory));
        }
        let stream = self.open_listing(&path, ListFormat::Facts).await?;
        self.start_listing(
            Target::Dir {
                stream,
                dir: path,
                pattern: None,
            },
            ListFormat::Facts,
        )
    }

    fn start_listing(
        &mut self,
        target: Target,
        format: ListFormat,
    ) -> Result<TransferStep, SessionError> {
        let rules = self.logged_in()?.account.rules.clone();
        let facts = self.mlst_facts;
        let now = OffsetDateTime::from((self.opts.clock)());
        let timeout = self.opts.data_timeout;
        let what = match &target {
            Target::Dir { dir, .. } => format!("listing of {dir}"),
            Target::File { name, .. } => format!("listing of {name}"),
        };
        let start = Reply::new(150, "Here comes the directory listing.");
        self.transfer_step(
            start,
            what,
            move |mut stream, meter, after_reply| async move {
                let mut out = ListingWriter::new(&mut stream, timeout);
                write_listing(target, format, now, facts, &rules, &mut out, &meter).await?;
                let sent = out.finish(&meter).await?;
                after_reply.keep(stream);
                Ok(sent)
            },
        )
    }

    pub(super) async fn cmd_mlst(&mut self, arg: Option<PathArg>) -> Result<Reply, SessionError> {
        let path = match &arg {
            Some(a) => self.resolve(a)?,
            None => self.cwd.clone(),
        };
        self.check(Permission::List, &path)?;
        let meta = self.metadata(&path).await?;
        let rules = self.logged_in()?.account.rules.clone();
        let shown = path.to_string();
        let mut line = String::from(" ");
        let perm = perm_fact(&rules, &path, meta.is_dir());
        listing::format_mlsx(
            &list_entry(&shown, &meta),
            MlsxRole::Entry,
            self.mlst_facts,
            &perm,
            &mut line,
        );
        Ok(Reply::multi(
            250,
            vec![format!("Listing {shown}"), line, "End".into()],
        ))
    }

    /// STAT with a path: the listing, over the control connection (213).
    pub(super) async fn cmd_stat_path(&mut self, args: ListArgs) -> Result<(), SessionError> {
        let target = self
            .listing_target(args.path.as_ref(), ListFormat::Long)
            .await?;
        let now = OffsetDateTime::from((self.opts.clock)());
        let shown = args
            .path
            .as_ref()
            .map_or_else(|| self.cwd.to_string(), |p| p.as_str().to_owned());
        let header =
            Reply::multi(213, vec![format!("Status of {shown}:"), String::new()]).to_bytes();
        // Only the first line of that two-line reply: "213-Status of ...".
        let first_line_end = header
            .iter()
            .position(|&b| b == b'\n')
            .map_or(header.len(), |i| i + 1);
        let _ = self.control.send_raw(&header[..first_line_end]).await;
        let mut buf = Vec::new();
        let mut lines = Vec::new();
        let emit = |buf: &mut Vec<u8>, lines: &mut Vec<u8>| {
            // Each line is indented so that none can end the reply early.
            for line in buf.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                lines.push(b' ');
                lines.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
                lines.extend_from_slice(b"\r\n");
            }
            buf.clear();
        };
        match target {
            Target::File { name, meta } => {
                listing::format_list_line(&list_entry(&name, &meta), now, &mut buf);
                emit(&mut buf, &mut lines);
            }
            Target::Dir {
                mut stream,
                pattern,
                ..
            } => {
                while let Ok(Some(batch)) = stream.next_batch().await {
                    for e in &batch {
                        if pattern
                            .as_deref()
                            .is_none_or(|p| wildcard_match(p, &e.name))
                        {
                            listing::format_list_line(
                                &list_entry(&e.name, &e.metadata),
                                now,
                                &mut buf,
                            );
                        }
                    }
                    emit(&mut buf, &mut lines);
                    if self.control.send_raw(&lines).await.is_err() {
                        break;
                    }
                    lines.clear();
                }
            }
        }
        let _ = self.control.send_raw(&lines).await;
        Ok(())
    }
}

async fn write_listing<W: AsyncWrite + Unpin>(
    target: Target,
    format: ListFormat,
    now: OffsetDateTime,
    facts: MlstFacts,
    rules: &Arc<AccessRules>,
    out: &mut ListingWriter<'_, W>,
    meter: &TransferMeter,
) -> Result<(), crate::error::TransferError> {
    match target {
        Target::File { name, meta } => {
            let perm = String::new();
            format_entry(
                format,
                &list_entry(&name, &meta),
                now,
                facts,
                &perm,
                out.buf(),
            );
        }
        Target::Dir {
            mut stream,
            dir,
            pattern,
        } => {
            while let Some(batch) = stream
                .next_batch()
                .await
                .map_err(crate::error::TransferError::Storage)?
            {
                for e in &batch {
                    if pattern
                        .as_deref()
                        .is_some_and(|p| !wildcard_match(p, &e.name))
                    {
                        continue;
                    }
                    let perm = if format == ListFormat::Facts && facts.perm {
                        match dir.join_name(&e.name) {
                            Ok(p) => perm_fact(rules, &p, e.metadata.is_dir()),
                            Err(_) => String::new(),
                        }
                    } else {
                        String::new()
                    };
                    format_entry(
                        format,
                        &list_entry(&e.name, &e.metadata),
                        now,
                        facts,
                        &perm,
                        out.buf(),
                    );
                }
                out.maybe_flush(meter).await?;
            }
        }
    }
    Ok(())
}

/// The modification time the storage reports, for MDTM.
pub(super) fn modified_utc(m: &Metadata) -> OffsetDateTime {
    OffsetDateTime::from(m.modified)
}

#[cfg(test)]
mod tests {
    use super::wildcard_match;

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*.txt", "a.txt"));
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("a?c", "abc"));
        assert!(!wildcard_match("a?c", "ac"));
        assert!(wildcard_match("*b*", "abc"));
        assert!(!wildcard_match("*.txt", "a.txt.gz"));
        assert!(wildcard_match("**x", "yyx"));
    }
}
