//! What every backend must do the same way, checked once for all of them:
//! each backend's tests hand a fresh, empty home to these functions. What only
//! one backend has (symbolic links, S3 keys and markers) stays in its own
//! tests.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{FileKind, Storage, StorageError, VirtualPath, WriteMode};

pub fn vp(text: &str) -> VirtualPath {
    VirtualPath::parse_absolute(text).expect("path")
}

/// Uploads `data` to `path` and commits; returns the committed size.
pub async fn put(s: &dyn Storage, path: &str, mode: WriteMode, data: &[u8]) -> u64 {
    let mut up = s.write(&vp(path), mode).await.expect("write");
    up.write_all(data).await.expect("write_all");
    up.commit().await.expect("commit")
}

/// An upload of `data` to `path`, neither committed nor aborted yet.
pub async fn unfinished(s: &dyn Storage, path: &str, data: &[u8]) -> Box<dyn crate::Upload> {
    let mut up = s.write(&vp(path), WriteMode::Replace).await.expect("write");
    up.write_all(data).await.expect("write_all");
    up
}

pub async fn read_all(s: &dyn Storage, path: &str, offset: u64) -> Vec<u8> {
    let mut r = s.read(&vp(path), offset).await.expect("read");
    let mut out = Vec::new();
    r.read_to_end(&mut out).await.expect("read_to_end");
    out
}

/// A directory's entries, sorted by name.
pub async fn names(s: &dyn Storage, path: &str) -> Vec<(String, FileKind)> {
    let mut l = s.list(&vp(path)).await.expect("list");
    let mut out = Vec::new();
    while let Some(batch) = l.next_batch().await.expect("batch") {
        out.extend(batch.into_iter().map(|e| (e.name, e.metadata.kind)));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn missing(result: Result<crate::Metadata, StorageError>) -> bool {
    matches!(result, Err(StorageError::NotFound))
}

/// REST + RETR, REST + STOR, APPE and STOU's refusal of an existing name.
pub async fn write_read_resume_append(s: &dyn Storage) {
    put(s, "/f", WriteMode::Replace, b"hello world").await;
    assert_eq!(read_all(s, "/f", 6).await, b"world");
    assert_eq!(read_all(s, "/f", 11).await, b"");
    put(s, "/f", WriteMode::Resume { offset: 5 }, b"!!").await;
    assert_eq!(read_all(s, "/f", 0).await, b"hello!!");
    assert_eq!(put(s, "/f", WriteMode::Append, b"?").await, 8);
    assert_eq!(read_all(s, "/f", 0).await, b"hello!!?");
    assert_eq!(s.metadata(&vp("/f")).await.expect("meta").size, 8);
    assert!(matches!(
        s.write(&vp("/f"), WriteMode::Resume { offset: 99 })
            .await
            .err(),
        Some(StorageError::OffsetBeyondEnd { .. })
    ));
    assert!(matches!(
        s.write(&vp("/f"), WriteMode::CreateNew).await.err(),
        Some(StorageError::AlreadyExists)
    ));
    assert_eq!(put(s, "/appended", WriteMode::Append, b"a").await, 1);
}

/// Writes at any offset (SFTP's): where the backend [`Storage::writes_anywhere`],
/// an upload in place changes only the bytes written over, a replacement is
/// written in any order, a gap reads as zeros, a length cuts or grows the
/// file, and an append cannot move. Elsewhere, both are refused and the file
/// stays whole.
pub async fn writes_anywhere_or_refuses(s: &dyn Storage) {
    put(s, "/f", WriteMode::Replace, b"hello world").await;
    let unsupported = |r: Result<(), StorageError>| matches!(r, Err(StorageError::Unsupported(_)));
    if !s.writes_anywhere() {
        assert!(matches!(
            s.write(&vp("/f"), WriteMode::InPlace).await.err(),
            Some(StorageError::Unsupported(_))
        ));
        let mut up = s.write(&vp("/g"), WriteMode::Replace).await.expect("write");
        up.write_all(b"front").await.expect("write_all");
        assert!(unsupported(up.seek(0).await));
        assert!(unsupported(up.set_len(1).await));
        up.write_all(b" to back").await.expect("write_all");
        up.commit().await.expect("commit");
        assert_eq!(read_all(s, "/g", 0).await, b"front to back");
        assert_eq!(read_all(s, "/f", 0).await, b"hello world");
        return;
    }
    let mut up = s.write(&vp("/f"), WriteMode::InPlace).await.expect("write");
    up.seek(6).await.expect("seek");
    up.write_all(b"WORLD").await.expect("write_all");
    up.seek(0).await.expect("seek");
    up.write_all(b"J").await.expect("write_all");
    assert_eq!(up.commit().await.expect("commit"), 11);
    assert_eq!(read_all(s, "/f", 0).await, b"Jello WORLD");

    let mut up = s.write(&vp("/g"), WriteMode::Replace).await.expect("write");
    up.seek(5).await.expect("seek");
    up.write_all(b"world").await.expect("write_all");
    up.seek(0).await.expect("seek");
    up.write_all(b"hello").await.expect("write_all");
    up.commit().await.expect("commit");
    assert_eq!(read_all(s, "/g", 0).await, b"helloworld");

    let mut up = s
        .write(&vp("/gap"), WriteMode::InPlace)
        .await
        .expect("write");
    up.seek(3).await.expect("seek");
    up.write_all(b"x").await.expect("write_all");
    up.commit().await.expect("commit");
    assert_eq!(read_all(s, "/gap", 0).await, b"\0\0\0x");

    let mut up = s.write(&vp("/f"), WriteMode::InPlace).await.expect("write");
    up.set_len(5).await.expect("cut");
    up.write_all(b"Y").await.expect("write_all");
    up.set_len(7).await.expect("grow");
    assert_eq!(up.commit().await.expect("commit"), 7);
    assert_eq!(read_all(s, "/f", 0).await, b"Yello\0\0");

    let mut up = s.write(&vp("/f"), WriteMode::Append).await.expect("write");
    assert!(unsupported(up.seek(0).await));
    up.write_all(b"!").await.expect("write_all");
    up.commit().await.expect("commit");
    assert_eq!(read_all(s, "/f", 0).await, b"Yello\0\0!");
}

/// A failed replacement leaves the old file; a failed new file keeps what
/// arrived (dropping the upload counts as a failure), unless nothing did; a
/// discarded upload (over a quota) leaves nothing.
pub async fn failed_uploads_lose_nothing_stored(s: &dyn Storage) {
    put(s, "/old", WriteMode::Replace, b"precious").await;
    unfinished(s, "/old", b"partial").await.abort().await;
    assert_eq!(read_all(s, "/old", 0).await, b"precious");

    drop(unfinished(s, "/new", b"part").await);
    // A backend may finish a dropped upload in a task of its own.
    for _ in 0..100 {
        if !missing(s.metadata(&vp("/new")).await) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(read_all(s, "/new", 0).await, b"part");

    unfinished(s, "/discarded", b"over quota")
        .await
        .discard()
        .await;
    assert!(missing(s.metadata(&vp("/discarded")).await));

    unfinished(s, "/empty", b"").await.abort().await;
    assert!(missing(s.metadata(&vp("/empty")).await));

    assert_eq!(
        names(s, "/").await,
        [
            ("new".to_owned(), FileKind::File),
            ("old".to_owned(), FileKind::File)
        ]
    );

    // A failed REST + STOR keeps the start it resumed from and what arrived.
    let mut up = s
        .write(&vp("/old"), WriteMode::Resume { offset: 4 })
        .await
        .expect("write");
    up.write_all(b"ly").await.expect("write_all");
    up.abort().await;
    assert_eq!(read_all(s, "/old", 0).await, b"precly");
}

/// An upload made durable on the way (SFTP's fsync@openssh.com) is an
/// upload like any other: a replacement stays invisible until its commit, an
/// append commits what came before and after the sync, and a sync after
/// nothing new is harmless.
pub async fn synced_uploads_commit_whole(s: &dyn Storage) {
    put(s, "/synced", WriteMode::Replace, b"old").await;
    let mut up = unfinished(s, "/synced", b"new ").await;
    up.sync().await.expect("sync");
    assert_eq!(read_all(s, "/synced", 0).await, b"old", "not yet committed");
    up.write_all(b"bytes").await.expect("write_all");
    up.sync().await.expect("sync again");
    up.sync().await.expect("sync with nothing new");
    assert_eq!(up.commit().await.expect("commit"), 9);
    assert_eq!(read_all(s, "/synced", 0).await, b"new bytes");

    let mut up = s
        .write(&vp("/synced"), WriteMode::Append)
        .await
        .expect("append");
    up.write_all(b", more").await.expect("write_all");
    up.sync().await.expect("sync");
    assert_eq!(up.commit().await.expect("commit"), 15);
    assert_eq!(read_all(s, "/synced", 0).await, b"new bytes, more");

    let mut up = s
        .write(&vp("/fresh"), WriteMode::CreateNew)
        .await
        .expect("create");
    up.sync().await.expect("sync before any byte");
    up.write_all(b"f").await.expect("write_all");
    up.sync().await.expect("sync");
    assert_eq!(up.commit().await.expect("commit"), 1);
    assert_eq!(read_all(s, "/fresh", 0).await, b"f");

    // Synced, then failed: the old file stays, as after any failure.
    let mut up = unfinished(s, "/synced", b"lost").await;
    up.sync().await.expect("sync");
    up.abort().await;
    assert_eq!(read_all(s, "/synced", 0).await, b"new bytes, more");
}

/// MKD, RMD, RNFR/RNTO and DELE, and their refusals.
pub async fn directories_and_renames(s: &dyn Storage) {
    s.create_dir(&vp("/d")).await.expect("mkdir");
    assert!(matches!(
        s.create_dir(&vp("/d")).await,
        Err(StorageError::AlreadyExists)
    ));
    assert!(matches!(
        s.create_dir(&vp("/missing/d")).await,
        Err(StorageError::NotFound)
    ));
    assert_eq!(names(s, "/d").await, []);
    put(s, "/d/f", WriteMode::Replace, b"1").await;
    assert!(matches!(
        s.remove_dir(&vp("/d")).await,
        Err(StorageError::DirectoryNotEmpty)
    ));
    assert!(matches!(
        s.rename(&vp("/d"), &vp("/d/e")).await,
        Err(StorageError::Invalid(_))
    ));
    s.rename(&vp("/d/f"), &vp("/g")).await.expect("rename");
    assert_eq!(read_all(s, "/g", 0).await, b"1");
    // The directory's last file moved away: the directory stays.
    assert!(s.metadata(&vp("/d")).await.expect("dir").is_dir());
    s.remove_dir(&vp("/d")).await.expect("rmdir");
    assert!(missing(s.metadata(&vp("/d")).await));
    assert!(matches!(
        s.remove_file(&vp("/")).await,
        Err(StorageError::Invalid(_))
    ));
    assert!(matches!(
        s.write(&vp("/nodir/f"), WriteMode::Replace).await.err(),
        Some(StorageError::NotFound)
    ));
    s.remove_file(&vp("/g")).await.expect("rm");
    assert!(missing(s.metadata(&vp("/g")).await));
    assert!(matches!(
        s.rename(&vp("/nothing"), &vp("/x")).await,
        Err(StorageError::NotFound)
    ));
}
