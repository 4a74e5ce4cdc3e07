//! A byte-rate limit shared by every transfer that holds it.
//!
//! The server gives one to each user with `download_rate` or `upload_rate`
//! (all the user's sessions share it); the client gives one to each command
//! run with `--limit-rate` (all its connections share it). Both are the same
//! leaky bucket ([`leaky_bucket`]): refilled every 50 ms, with a burst of at
//! most 50 ms worth, so that a transfer cannot run ahead of the rate by more
//! than that; waiters are served in turn (`fair`), so that one transfer cannot
//! starve the others.

use std::sync::Arc;
use std::time::Duration;

use leaky_bucket::RateLimiter;

/// How often the bucket is refilled, and so how far ahead of the rate a
/// transfer may run.
const REFILL_INTERVAL: Duration = Duration::from_millis(50);

/// Bytes per second across every holder of a clone.
#[derive(Debug, Clone)]
pub struct RateLimit {
    limiter: Arc<RateLimiter>,
    /// The most one acquisition asks for: one refill.
    piece: usize,
    bytes_per_second: u64,
}

impl RateLimit {
    /// A limit of `bytes_per_second` (at least one byte per refill).
    pub fn new(bytes_per_second: u64) -> Self {
        let per_refill = bytes_per_second / (1000 / REFILL_INTERVAL.as_millis() as u64);
        let refill = usize::try_from(per_refill.max(1)).unwrap_or(usize::MAX);
        let limiter = RateLimiter::builder()
            .initial(0)
            .refill(refill)
            .max(refill)
            .interval(REFILL_INTERVAL)
            .fair(true)
            .build();
        RateLimit {
            limiter: Arc::new(limiter),
            piece: refill,
            bytes_per_second,
        }
    }

    /// The limit.
    pub fn bytes_per_second(&self) -> u64 {
        self.bytes_per_second
    }

    /// Waits until `bytes` more may pass. A request larger than one refill
    /// is taken a refill at a time, so that it never waits for a bucket that
    /// cannot hold it.
    pub async fn wait_for(&self, mut bytes: usize) {
        while bytes > 0 {
            let n = bytes.min(self.piece);
            self.limiter.acquire(n).await;
            bytes -= n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    /// 1,000,000 bytes at 200,000 bytes/s take 5 s (of the runtime's paused
    /// clock, so the test does not sleep), not less and not much more.
    #[tokio::test(start_paused = true)]
    async fn bytes_pass_at_the_rate() {
        let rate = RateLimit::new(200_000);
        let start = Instant::now();
        for _ in 0..100 {
            rate.wait_for(10_000).await;
        }
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(4_950) && took <= Duration::from_millis(5_100),
            "took {took:?}"
        );
    }

    /// Clones share one limit: two holders together get the rate, not twice it.
    #[tokio::test(start_paused = true)]
    async fn clones_share_the_limit() {
        let rate = RateLimit::new(100_000);
        let other = rate.clone();
        let start = Instant::now();
        let a = tokio::spawn(async move {
            for _ in 0..10 {
                rate.wait_for(10_000).await;
            }
        });
        let b = tokio::spawn(async move {
            for _ in 0..10 {
                other.wait_for(10_000).await;
            }
        });
        a.await.expect("a");
        b.await.expect("b");
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(1_950), "took {took:?}");
    }

    /// A request larger than the bucket is let through in pieces instead of
    /// waiting forever; a rate below 20 bytes/s still moves.
    #[tokio::test(start_paused = true)]
    async fn large_requests_and_tiny_rates_pass() {
        let rate = RateLimit::new(1_000);
        let start = Instant::now();
        rate.wait_for(3_000).await;
        assert!(start.elapsed() >= Duration::from_millis(2_900));
        let tiny = RateLimit::new(5);
        assert_eq!(tiny.bytes_per_second(), 5);
        tiny.wait_for(2).await;
    }
}
