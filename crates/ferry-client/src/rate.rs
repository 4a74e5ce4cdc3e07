//! A byte-rate limit shared by all the connections of one command (`--limit-rate`).

use std::sync::Arc;
use std::time::Duration;

use leaky_bucket::RateLimiter;

/// Bytes per second across every transfer that holds a clone.
#[derive(Debug, Clone)]
pub struct RateLimit {
    limiter: Arc<RateLimiter>,
    piece: usize,
    bytes_per_second: u64,
}

impl RateLimit {
    /// Refilled every 50 ms with a burst of at most 50 ms worth, so a transfer
    /// cannot run ahead of the rate by more than that.
    pub fn new(bytes_per_second: u64) -> Self {
        let refill = usize::try_from((bytes_per_second / 20).max(1)).unwrap_or(usize::MAX);
        let limiter = RateLimiter::builder()
            .initial(0)
            .refill(refill)
            .max(refill)
            .interval(Duration::from_millis(50))
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

    /// Waits until `bytes` more may pass.
    pub async fn wait_for(&self, mut bytes: usize) {
        while bytes > 0 {
            let n = bytes.min(self.piece);
            self.limiter.acquire(n).await;
            bytes -= n;
        }
    }
}
