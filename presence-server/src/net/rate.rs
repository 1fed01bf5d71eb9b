//! Token buckets for frame flood control (SPEC §9: 20 frames/s sustained,
//! bursts of 40).
//!
//! A bucket holds only its level and when it was last refilled; its rate
//! and capacity are passed in on every take (they are settings, the same
//! for every tab), because every byte of a tab's state is paid once per
//! tab.

use tokio::time::Instant;

/// A rate: tokens per second, up to a capacity.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub per_sec: u32,
    pub capacity: u32,
}

#[derive(Debug, Clone)]
pub struct Bucket {
    tokens: f32,
    at: Instant,
}

impl Bucket {
    /// A full bucket.
    pub fn new(rate: Rate) -> Self {
        Bucket {
            tokens: rate.capacity.max(1) as f32,
            at: Instant::now(),
        }
    }

    /// Takes `cost` tokens if there are enough.
    pub fn take(&mut self, rate: Rate, cost: f32, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f32();
        self.at = now;
        self.tokens =
            (self.tokens + elapsed * rate.per_sec as f32).min(rate.capacity.max(1) as f32);
        if self.tokens >= cost {
            self.tokens -= cost;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn burst_then_sustained_rate() {
        let rate = Rate {
            per_sec: 20,
            capacity: 40,
        };
        let mut b = Bucket::new(rate);
        let t0 = Instant::now();
        assert_eq!((0..100).filter(|_| b.take(rate, 1.0, t0)).count(), 40);
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!((0..100).filter(|_| b.take(rate, 1.0, t1)).count(), 20);
    }
}
