//! Listings in name order, within a memory bound.
//!
//! A backend lists a directory in whatever order it keeps it (a hash order on
//! ext4, creation order on tmpfs, key order on S3). People read listings, and
//! every FTP server they know (vsftpd, ProFTPD, Pure-FTPd) sorts them, so
//! [`in_name_order`] sorts a listing by name before it is sent, as
//! `LC_ALL=C ls` does (byte order: `B` before `a`).
//!
//! Sorting needs the whole directory in memory, and a listing must not need
//! memory in proportion to the directory (issue 7's target (h)). So only a
//! directory of up to `limit` entries is sorted; one that turns out to be
//! larger is sent in the backend's order, starting with the entries already
//! read, and never holds more than `limit` entries (about 160 bytes each
//! with their names and the vector's slack) plus one batch.

use async_trait::async_trait;

use crate::{DirEntry, DirStream, StorageError};

/// How many gathered entries each batch hands on.
const HANDED_BATCH: usize = 512;

/// `stream` in name order when the directory has at most `limit` entries;
/// otherwise in the order `stream` gives. A `limit` of 0 never sorts.
pub fn in_name_order(stream: Box<dyn DirStream>, limit: usize) -> Box<dyn DirStream> {
    if limit == 0 {
        return stream;
    }
    Box::new(NameOrdered {
        inner: stream,
        limit,
        state: State::Reading(Vec::new()),
    })
}

struct NameOrdered {
    inner: Box<dyn DirStream>,
    limit: usize,
    state: State,
}

enum State {
    /// Gathering entries until the end or the limit.
    Reading(Vec<DirEntry>),
    /// Handing on what was gathered, a batch at a time: the whole directory
    /// sorted, or (over the limit) the entries read so far as read, after
    /// which the rest comes from the backend.
    Handing {
        entries: std::vec::IntoIter<DirEntry>,
        then_the_rest: bool,
    },
    /// Over the limit, after the gathered entries: the backend's order.
    Passing,
}

#[async_trait]
impl DirStream for NameOrdered {
    async fn next_batch(&mut self) -> Result<Option<Vec<DirEntry>>, StorageError> {
        loop {
            match &mut self.state {
                State::Reading(gathered) => match self.inner.next_batch().await? {
                    Some(batch) => {
                        let over = gathered.len() + batch.len() > self.limit;
                        gathered.extend(batch);
                        if over {
                            // Too large to sort: what was read goes first, as read.
                            self.state = State::Handing {
                                entries: std::mem::take(gathered).into_iter(),
                                then_the_rest: true,
                            };
                        }
                    }
                    None => {
                        let mut all = std::mem::take(gathered);
                        all.sort_unstable_by(|a, b| a.name.cmp(&b.name));
                        self.state = State::Handing {
                            entries: all.into_iter(),
                            then_the_rest: false,
                        };
                    }
                },
                State::Handing {
                    entries,
                    then_the_rest,
                } => {
                    // Batches as small as the backends' own: the listing
                    // formats a whole batch before it sends.
                    let batch: Vec<DirEntry> = entries.take(HANDED_BATCH).collect();
                    if !batch.is_empty() {
                        return Ok(Some(batch));
                    }
                    if !*then_the_rest {
                        return Ok(None);
                    }
                    self.state = State::Passing;
                }
                State::Passing => return self.inner.next_batch().await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FileKind, Metadata};
    use proptest::prelude::*;

    /// A backend's listing: these names, in this order, in batches of `per`.
    struct Given {
        batches: std::vec::IntoIter<Vec<DirEntry>>,
    }

    fn given(names: &[String], per: usize) -> Box<dyn DirStream> {
        let entries: Vec<DirEntry> = names
            .iter()
            .map(|n| DirEntry {
                name: n.clone(),
                metadata: Metadata {
                    kind: FileKind::File,
                    size: 0,
                    modified: std::time::UNIX_EPOCH,
                    mode: 0o644,
                    links: 1,
                    unique: (0, 0),
                },
            })
            .collect();
        let batches: Vec<Vec<DirEntry>> = entries.chunks(per.max(1)).map(<[_]>::to_vec).collect();
        Box::new(Given {
            batches: batches.into_iter(),
        })
    }

    #[async_trait]
    impl DirStream for Given {
        async fn next_batch(&mut self) -> Result<Option<Vec<DirEntry>>, StorageError> {
            Ok(self.batches.next())
        }
    }

    /// Every name the stream gives, and the largest batch.
    fn drain(mut s: Box<dyn DirStream>) -> (Vec<String>, usize) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let (mut names, mut largest) = (Vec::new(), 0);
            while let Some(batch) = s.next_batch().await.expect("batch") {
                assert!(!batch.is_empty(), "an empty batch before the end");
                largest = largest.max(batch.len());
                names.extend(batch.into_iter().map(|e| e.name));
            }
            (names, largest)
        })
    }

    #[test]
    fn a_small_directory_comes_out_in_byte_order() {
        let names: Vec<String> = ["b", "a", "B", "ä", "a0", ".hidden", "A"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let (out, _) = drain(in_name_order(given(&names, 2), 100));
        assert_eq!(out, [".hidden", "A", "B", "a", "a0", "b", "ä"]);
    }

    #[test]
    fn a_directory_over_the_limit_keeps_the_backends_order() {
        let names: Vec<String> = (0..10).rev().map(|i| format!("f{i}")).collect();
        let (out, _) = drain(in_name_order(given(&names, 3), 5));
        assert_eq!(out, names);
        // The entries gathered before the limit was passed go on in batches
        // no larger than a backend's, not in one.
        let many: Vec<String> = (0..5000).rev().map(|i| format!("f{i}")).collect();
        let (out, largest) = drain(in_name_order(given(&many, 100), 3000));
        assert_eq!(out, many);
        assert_eq!(largest, HANDED_BATCH);
        // At the limit exactly it still sorts.
        let (out, _) = drain(in_name_order(given(&names, 3), 10));
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(out, sorted);
        // 0 never sorts.
        let (out, _) = drain(in_name_order(given(&names, 3), 0));
        assert_eq!(out, names);
    }

    #[test]
    fn an_empty_directory_is_empty() {
        let (out, _) = drain(in_name_order(given(&[], 4), 10));
        assert!(out.is_empty());
    }

    proptest! {
        /// Whatever the names, batches and limit: every entry comes out once,
        /// sorted when there are at most `limit`, batches stay bounded.
        #[test]
        fn every_entry_once(
            names in proptest::collection::vec("[a-zA-Z0-9._ äé-]{0,8}", 0..60),
            per in 1usize..20,
            limit in 0usize..80,
        ) {
            let (out, largest) = drain(in_name_order(given(&names, per), limit));
            let mut want = names.clone();
            want.sort();
            let mut got = out.clone();
            got.sort();
            prop_assert_eq!(&got, &want);
            if limit > 0 && names.len() <= limit {
                prop_assert_eq!(&out, &want);
            } else {
                prop_assert_eq!(&out, &names);
            }
            prop_assert!(largest <= HANDED_BATCH.max(per));
        }
    }
}
