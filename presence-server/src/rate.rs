//! Token buckets for frame flood control (SPEC §9: 20 frames/s sustained,
//! bursts of 40).

use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct Bucket {
    capacity: f64,
    per_sec: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    pub fn new(per_sec: u32, capacity: u32) -> Self {
        Bucket {
            capacity: capacity.max(1) as f64,
            per_sec: per_sec as f64,
            tokens: capacity.max(1) as f64,
            at: Instant::now(),
        }
    }

    /// Takes `cost` tokens if there are enough.
    pub fn take(&mut self, cost: f64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.capacity);
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
        let mut b = Bucket::new(20, 40);
        let t0 = Instant::now();
        assert_eq!((0..100).filter(|_| b.take(1.0, t0)).count(), 40);
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!((0..100).filter(|_| b.take(1.0, t1)).count(), 20);
    }
}
