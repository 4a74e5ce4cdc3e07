//! Running a transfer as a blocking loop, as vsftpd runs each in its
//! process: the places that bound how many run at once, the thread each runs
//! on, and the socket the loop uses in blocking mode.

use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rustix::net::sockopt::Timeout;

use crate::error::TransferError;

/// Places for transfers running as blocking loops (one thread each for the
/// transfer's length, as vsftpd holds a process): PROT P downloads and plain
/// uploads in tokio's blocking pool, long plain downloads on a thread of
/// their own ([`super::send_file_zero_copy_blocking`]).
///
/// At most `server.max_blocking_transfers` transfers (256 by default) run
/// that way at once, and the ones beyond take the async path: slower per
/// byte, but without a thread each. `ferry serve` gives the pool 256 threads
/// more than that for file-system calls, so that many long transfers never
/// make the others (or a directory listing) wait for a thread.
#[derive(Debug)]
pub struct BlockingSlots {
    in_use: AtomicUsize,
    limit: usize,
}

impl BlockingSlots {
    /// Places for `limit` blocking loops at once.
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(BlockingSlots {
            in_use: AtomicUsize::new(0),
            limit,
        })
    }

    /// How many places are taken now.
    pub fn in_use(&self) -> usize {
        self.in_use.load(Ordering::Acquire)
    }

    /// A place, if one is free; it is given back when dropped.
    pub fn take(self: &Arc<Self>) -> Option<BlockingSlot> {
        self.in_use
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .ok()
            .map(|_| BlockingSlot(self.clone()))
    }

    /// A place together with what its loop needs (`need`, asked only when a
    /// place is free); without it, the place is given back at once, so that
    /// a transfer taking the async path holds none.
    pub fn take_with<T>(
        self: &Arc<Self>,
        need: impl FnOnce() -> Option<T>,
    ) -> Option<(T, BlockingSlot)> {
        let slot = self.take()?;
        need().map(|t| (t, slot))
    }
}

/// One place for a blocking transfer loop, held until dropped.
#[derive(Debug)]
pub struct BlockingSlot(Arc<BlockingSlots>);

impl Drop for BlockingSlot {
    fn drop(&mut self) {
        self.0.in_use.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a blocking loop's socket error means: its timeout (the data timeout)
/// going by shows as `EAGAIN`.
pub(super) fn blocking_failure(e: std::io::Error, timeout: Duration, what: &str) -> TransferError {
    if matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    ) {
        TransferError::Connection(format!("no progress for {} seconds", timeout.as_secs()))
    } else {
        TransferError::Connection(format!("{what}: {e}"))
    }
}

/// Runs a transfer's blocking loop on a thread started for it, and waits for
/// its result without holding an async worker. [`BlockingSlots`] bounds how
/// many run at once.
///
/// Why a new thread, and not one of tokio's blocking pool (which keeps idle
/// threads for reuse): Linux places a waking thread by its recent CPU use. A
/// sendfile loop uses little CPU of its own and mostly waits for the socket,
/// and a pool thread that sat idle before has almost no recent use. A kernel
/// that packs such light threads onto few CPUs (this VM's does;
/// docs/benchmarks.md) then wakes it on the CPU of the very client it feeds,
/// where the two take turns while the other CPU idles. A new thread starts
/// with a share of CPU use, as vsftpd's freshly forked session process does,
/// and soon runs beside the client. On this machine that took a 64 MiB
/// download from ~27 ms to ~18 ms, level with vsftpd. Starting a thread costs
/// some tens of microseconds, so only transfers long enough to gain run this
/// way; loops that keep a CPU busy (TLS, uploads) gained nothing from it and
/// stay in the pool.
pub(super) async fn on_own_thread<T: Send + 'static>(
    what: &'static str,
    job: impl FnOnce() -> T + Send + 'static,
) -> Result<T, TransferError> {
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("ferry-transfer".into())
        .spawn(move || {
            let _ = done.send(job());
        })
        .map_err(|e| TransferError::Connection(format!("{what}: cannot start a thread: {e}")))?;
    result
        .await
        .map_err(|_| TransferError::Connection(format!("{what}: the transfer's thread failed")))
}

/// A data connection as a blocking loop uses it: a second descriptor, in
/// blocking mode, with the data timeout as its send or receive timeout. Dropped
/// (when the loop ends), it puts the socket back to non-blocking for the async
/// side, which still owns it.
pub(super) struct BlockingSocket(pub(super) std::os::fd::OwnedFd);

impl BlockingSocket {
    /// Hands `tcp` over to a blocking loop. The [`ShutdownOnDrop`] stays with
    /// the async side: dropped there first (ABOR), it ends the loop.
    pub(super) fn hand_over(
        tcp: BorrowedFd<'_>,
        direction: Timeout,
        timeout: Duration,
        what: &str,
    ) -> Result<(BlockingSocket, ShutdownOnDrop), TransferError> {
        let fail = |e: std::io::Error| TransferError::Connection(format!("{what}: {e}"));
        let second = || tcp.try_clone_to_owned().map_err(fail);
        let socket = BlockingSocket(second()?);
        let stopper = ShutdownOnDrop {
            socket: Some(second()?),
        };
        rustix::io::ioctl_fionbio(&socket.0, false).map_err(|e| fail(e.into()))?;
        rustix::net::sockopt::set_socket_timeout(
            &socket.0,
            direction,
            Some(timeout.max(Duration::from_millis(1))),
        )
        .map_err(|e| fail(e.into()))?;
        Ok((socket, stopper))
    }
}

impl Drop for BlockingSocket {
    fn drop(&mut self) {
        let _ = rustix::io::ioctl_fionbio(&self.0, true);
    }
}

/// Shuts a data connection down when dropped before [`ShutdownOnDrop::disarm`]:
/// a transfer dropped for ABOR stops the blocking loop still reading it.
pub(super) struct ShutdownOnDrop {
    socket: Option<std::os::fd::OwnedFd>,
}

impl ShutdownOnDrop {
    pub(super) fn disarm(mut self) {
        self.socket = None;
    }
}

impl Drop for ShutdownOnDrop {
    fn drop(&mut self) {
        if let Some(socket) = &self.socket {
            let _ = rustix::net::shutdown(socket, rustix::net::Shutdown::Both);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No more than the limit at once; a place given back can be taken again.
    #[test]
    fn blocking_slots_are_bounded_and_given_back() {
        let slots = BlockingSlots::new(2);
        let a = slots.take().expect("first");
        let b = slots.take().expect("second");
        assert!(slots.take().is_none(), "a third place past the limit");
        drop(a);
        let c = slots.take().expect("given back");
        assert!(slots.take().is_none());
        drop((b, c));
        assert_eq!(slots.in_use(), 0);
    }

    /// A place whose loop cannot run (no host file) is not kept.
    #[test]
    fn a_place_without_its_need_is_given_back() {
        let slots = BlockingSlots::new(1);
        assert!(slots.take_with(|| None::<()>).is_none());
        assert_eq!(slots.in_use(), 0);
        let (n, held) = slots.take_with(|| Some(7)).expect("a free place");
        assert_eq!(n, 7);
        let mut asked = false;
        assert!(
            slots
                .take_with(|| {
                    asked = true;
                    Some(8)
                })
                .is_none()
        );
        assert!(!asked, "need asked with no place free");
        drop(held);
        assert_eq!(slots.in_use(), 0);
    }
}
