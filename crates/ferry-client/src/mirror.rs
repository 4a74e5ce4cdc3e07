//! Mirroring a directory tree: deciding what to copy and delete (pure), and
//! walking remote and local trees.
//!
//! A file is copied when the destination lacks it, when the sizes differ, or
//! when the source is newer than the destination (by more than the listing's
//! precision). With `newer_only`, a destination file that is at least as new as
//! the source is left alone even if the sizes differ. After a copy the
//! destination's time is set to the source's where the destination allows it
//! (local files; servers with MFMT), so a second run finds nothing to do.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use time::OffsetDateTime;

use crate::error::{ClientError, Result};
use crate::listing::EntryKind;
use crate::remote::RemoteSession;

/// One entry of a tree, named by its path relative to the tree's root, with `/`
/// between components.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEntry {
    pub path: String,
    pub is_dir: bool,
    pub size: u64,
    pub modified: Option<OffsetDateTime>,
}

/// How a mirror behaves.
#[derive(Debug, Clone, Copy, Default)]
pub struct MirrorOptions {
    /// Delete what the destination has and the source does not.
    pub delete: bool,
    /// Copy only files newer at the source than at the destination.
    pub newer_only: bool,
}

/// One step of a mirror.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "action", content = "path")]
pub enum MirrorAction {
    MakeDir(String),
    Copy(String),
    DeleteFile(String),
    DeleteDir(String),
}

/// Times within this many seconds are the same (LIST gives minutes, some
/// file systems two seconds).
const SLACK_SECONDS: i64 = 2;

fn newer(a: Option<OffsetDateTime>, b: Option<OffsetDateTime>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => (a - b).whole_seconds() > SLACK_SECONDS,
        _ => false,
    }
}

/// What to do to make `dest` a copy of `source`: directories first (parents
/// before children), then copies, then deletions (children before parents).
pub fn plan_mirror(
    source: &[TreeEntry],
    dest: &[TreeEntry],
    options: MirrorOptions,
) -> Vec<MirrorAction> {
    let there: BTreeMap<&str, &TreeEntry> = dest.iter().map(|e| (e.path.as_str(), e)).collect();
    let here: BTreeSet<&str> = source.iter().map(|e| e.path.as_str()).collect();
    let mut dirs = Vec::new();
    let mut copies = Vec::new();
    let mut deletes = Vec::new();
    let mut sorted: Vec<&TreeEntry> = source.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    for e in sorted {
        match (e.is_dir, there.get(e.path.as_str())) {
            (true, Some(d)) if d.is_dir => {}
            (true, Some(_)) => {
                // A file where the source has a directory: replace it.
                deletes.push(MirrorAction::DeleteFile(e.path.clone()));
                dirs.push(MirrorAction::MakeDir(e.path.clone()));
            }
            (true, None) => dirs.push(MirrorAction::MakeDir(e.path.clone())),
            (false, None) => copies.push(MirrorAction::Copy(e.path.clone())),
            (false, Some(d)) if d.is_dir => {
                // A directory where the source has a file: only with --delete.
                if options.delete {
                    deletes.push(MirrorAction::DeleteDir(e.path.clone()));
                    copies.push(MirrorAction::Copy(e.path.clone()));
                }
            }
            (false, Some(d)) => {
                let source_newer = newer(e.modified, d.modified);
                let differs = e.size != d.size;
                let copy = if options.newer_only {
                    source_newer
                } else {
                    differs || source_newer
                };
                if copy {
                    copies.push(MirrorAction::Copy(e.path.clone()));
                }
            }
        }
    }
    if options.delete {
        let mut gone: Vec<&TreeEntry> = dest
            .iter()
            .filter(|d| !here.contains(d.path.as_str()))
            .collect();
        // Children before parents.
        gone.sort_by(|a, b| b.path.cmp(&a.path));
        for d in gone {
            deletes.push(if d.is_dir {
                MirrorAction::DeleteDir(d.path.clone())
            } else {
                MirrorAction::DeleteFile(d.path.clone())
            });
        }
    }
    // Deletions that make room (a file where a directory must go) come first.
    let mut out = Vec::new();
    let (room, rest): (Vec<_>, Vec<_>) = deletes.into_iter().partition(|d| match d {
        MirrorAction::DeleteFile(p) => dirs.contains(&MirrorAction::MakeDir(p.clone())),
        MirrorAction::DeleteDir(p) => copies.contains(&MirrorAction::Copy(p.clone())),
        _ => false,
    });
    out.extend(room);
    out.extend(dirs);
    out.extend(copies);
    out.extend(rest);
    out
}

/// Joins a remote directory and a relative path.
pub fn remote_join(base: &str, rel: &str) -> String {
    match (base.is_empty(), rel.is_empty()) {
        (true, _) => rel.to_owned(),
        (false, true) => base.to_owned(),
        (false, false) => format!("{}/{}", base.trim_end_matches('/'), rel),
    }
}

/// Every file and directory under `root` on the server (symbolic links are
/// skipped: following them could loop or leave the tree).
pub async fn walk_remote(session: &mut RemoteSession, root: &str) -> Result<Vec<TreeEntry>> {
    let mut out = Vec::new();
    let mut queue = vec![String::new()];
    while let Some(rel) = queue.pop() {
        let dir = remote_join(root, &rel);
        let listing_path = if dir.is_empty() {
            String::new()
        } else {
            dir.clone()
        };
        for entry in session.list(&listing_path).await? {
            if entry.name.contains('/') {
                continue;
            }
            let path = remote_join(&rel, &entry.name);
            match entry.kind {
                EntryKind::Dir => {
                    queue.push(path.clone());
                    out.push(TreeEntry {
                        path,
                        is_dir: true,
                        size: 0,
                        modified: entry.modified,
                    });
                }
                EntryKind::File => out.push(TreeEntry {
                    path,
                    is_dir: false,
                    size: entry.size.unwrap_or(0),
                    modified: entry.modified,
                }),
                EntryKind::Link | EntryKind::Other => {}
            }
        }
    }
    Ok(out)
}

/// Every file and directory under a local directory (symbolic links skipped).
/// Names that are not UTF-8 are refused: they cannot be named on the server
/// the same way.
pub fn walk_local(root: &Path) -> Result<Vec<TreeEntry>> {
    let mut out = Vec::new();
    if !root.exists() {
        return Ok(out);
    }
    let mut queue = vec![(root.to_owned(), String::new())];
    while let Some((dir, rel)) = queue.pop() {
        let read = std::fs::read_dir(&dir).map_err(|e| ClientError::local(&dir, e))?;
        for item in read {
            let item = item.map_err(|e| ClientError::local(&dir, e))?;
            let name = item.file_name();
            let Some(name) = name.to_str() else {
                return Err(ClientError::local(
                    item.path(),
                    std::io::Error::new(std::io::ErrorKind::InvalidData, "the name is not UTF-8"),
                ));
            };
            let meta = item
                .metadata()
                .map_err(|e| ClientError::local(item.path(), e))?;
            let ty = item
                .file_type()
                .map_err(|e| ClientError::local(item.path(), e))?;
            let path = remote_join(&rel, name);
            let modified = meta.modified().ok().map(OffsetDateTime::from);
            if ty.is_dir() {
                queue.push((item.path(), path.clone()));
                out.push(TreeEntry {
                    path,
                    is_dir: true,
                    size: 0,
                    modified,
                });
            } else if ty.is_file() {
                out.push(TreeEntry {
                    path,
                    is_dir: false,
                    size: meta.len(),
                    modified,
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn file(path: &str, size: u64, t: OffsetDateTime) -> TreeEntry {
        TreeEntry {
            path: path.into(),
            is_dir: false,
            size,
            modified: Some(t),
        }
    }
    fn dir(path: &str) -> TreeEntry {
        TreeEntry {
            path: path.into(),
            is_dir: true,
            size: 0,
            modified: None,
        }
    }

    const T0: OffsetDateTime = datetime!(2026-01-01 0:00 UTC);
    const T1: OffsetDateTime = datetime!(2026-01-02 0:00 UTC);

    #[test]
    fn copies_what_is_missing_changed_or_newer() {
        let source = [
            dir("d"),
            file("d/a", 1, T0),
            file("b", 2, T1),
            file("c", 3, T0),
            file("e", 9, T0),
        ];
        let dest = [file("b", 2, T0), file("c", 3, T0), file("e", 8, T1)];
        let plan = plan_mirror(&source, &dest, MirrorOptions::default());
        assert_eq!(
            plan,
            vec![
                MirrorAction::MakeDir("d".into()),
                MirrorAction::Copy("b".into()),
                MirrorAction::Copy("d/a".into()),
                MirrorAction::Copy("e".into()),
            ]
        );
        // newer-only: "e" differs in size but the destination is newer.
        let plan = plan_mirror(
            &source,
            &dest,
            MirrorOptions {
                newer_only: true,
                delete: false,
            },
        );
        assert!(!plan.contains(&MirrorAction::Copy("e".into())));
        assert!(plan.contains(&MirrorAction::Copy("b".into())));
    }

    #[test]
    fn same_trees_need_nothing() {
        let tree = [dir("d"), file("d/a", 1, T0)];
        // LIST precision: a minute-rounded time is not "newer".
        let rounded = [dir("d"), file("d/a", 1, datetime!(2026-01-01 0:00:01 UTC))];
        assert!(
            plan_mirror(
                &tree,
                &rounded,
                MirrorOptions {
                    delete: true,
                    newer_only: false
                }
            )
            .is_empty()
        );
    }

    #[test]
    fn deletes_children_before_parents() {
        let source = [file("keep", 1, T0)];
        let dest = [
            file("keep", 1, T0),
            dir("old"),
            file("old/x", 1, T0),
            dir("old/sub"),
            file("old/sub/y", 1, T0),
        ];
        let plan = plan_mirror(
            &source,
            &dest,
            MirrorOptions {
                delete: true,
                newer_only: false,
            },
        );
        assert_eq!(
            plan,
            vec![
                MirrorAction::DeleteFile("old/x".into()),
                MirrorAction::DeleteFile("old/sub/y".into()),
                MirrorAction::DeleteDir("old/sub".into()),
                MirrorAction::DeleteDir("old".into()),
            ]
        );
        assert!(plan_mirror(&source, &dest, MirrorOptions::default()).is_empty());
    }

    #[test]
    fn a_file_where_a_directory_must_go() {
        let source = [dir("x"), file("x/a", 1, T0)];
        let dest = [file("x", 5, T0)];
        let plan = plan_mirror(&source, &dest, MirrorOptions::default());
        assert_eq!(
            plan,
            vec![
                MirrorAction::DeleteFile("x".into()),
                MirrorAction::MakeDir("x".into()),
                MirrorAction::Copy("x/a".into()),
            ]
        );
    }
}
