//! When a partial transfer may be continued, decided from facts alone (no I/O),
//! so that every rule is tested in memory.
//!
//! A resumed file is only right when the bytes already transferred are the first
//! bytes of the same file. Curl, lftp and rclone have all had reports of broken
//! files after resuming against a file that had changed; the rules here refuse
//! instead: the remote file must be the one the partial came from (same size and
//! modification time as recorded when the transfer started, when that was
//! recorded), the partial must not be longer than the source, and where the
//! server can hash a byte range, the prefix's checksums must agree (that check is
//! made by [`crate::files`] after this plan says `Resume`).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// What the source of a transfer looked like: size and modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileState {
    pub size: u64,
    #[serde(with = "time::serde::rfc3339::option")]
    pub modified: Option<OffsetDateTime>,
}

/// What to do with a partial file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResumePlan {
    /// Nothing useful is there: transfer from the start.
    Start,
    /// Continue from this offset.
    Continue(u64),
    /// The partial file is already complete.
    Complete,
    /// Continuing would corrupt the file; the reason says why.
    Refuse(String),
}

/// Plans the continuation of a transfer whose destination already holds
/// `partial` bytes, from a source that now looks like `source`; `recorded` is the
/// source as it was when the partial transfer began, when known.
pub fn plan(partial: u64, source: FileState, recorded: Option<FileState>) -> ResumePlan {
    if let Some(was) = recorded
        && was != source
    {
        return ResumePlan::Refuse(format!(
            "the source changed since the partial transfer began (size {} -> {}{})",
            was.size,
            source.size,
            match (was.modified, source.modified) {
                (Some(a), Some(b)) if a != b => format!(", modified {a} -> {b}"),
                _ => String::new(),
            }
        ));
    }
    if partial == 0 {
        return ResumePlan::Start;
    }
    if partial > source.size {
        return ResumePlan::Refuse(format!(
            "the partial file has {partial} bytes but the source only {}",
            source.size
        ));
    }
    if partial == source.size {
        return ResumePlan::Complete;
    }
    ResumePlan::Continue(partial)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn state(size: u64) -> FileState {
        FileState {
            size,
            modified: Some(datetime!(2026-01-01 0:00 UTC)),
        }
    }

    #[test]
    fn rules() {
        assert_eq!(plan(0, state(10), None), ResumePlan::Start);
        assert_eq!(plan(4, state(10), None), ResumePlan::Continue(4));
        assert_eq!(plan(4, state(10), Some(state(10))), ResumePlan::Continue(4));
        assert_eq!(plan(10, state(10), None), ResumePlan::Complete);
        assert!(matches!(plan(11, state(10), None), ResumePlan::Refuse(_)));
        // Same size, new modification time: a different file.
        let touched = FileState {
            modified: Some(datetime!(2026-01-02 0:00 UTC)),
            ..state(10)
        };
        assert!(
            matches!(plan(4, touched, Some(state(10))), ResumePlan::Refuse(r) if r.contains("modified"))
        );
        // Grown since: refused even though the partial is shorter.
        assert!(matches!(
            plan(4, state(12), Some(state(10))),
            ResumePlan::Refuse(_)
        ));
    }
}
