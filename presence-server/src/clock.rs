//! Wall-clock milliseconds derived from tokio's monotonic clock.
//!
//! Anchoring once and adding tokio's elapsed time makes the hub's notion of
//! "now" follow tokio's paused time in tests and never jump backwards when
//! the system clock is adjusted.

use std::time::{SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    wall_ms: u64,
    anchor: Instant,
}

impl Clock {
    pub fn new() -> Self {
        let wall_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Clock {
            wall_ms,
            anchor: Instant::now(),
        }
    }

    pub fn now_ms(&self) -> u64 {
        self.wall_ms + self.anchor.elapsed().as_millis() as u64
    }

    /// The tokio instant at which the wall clock reads `ms`.
    pub fn instant_at(&self, ms: u64) -> Instant {
        self.anchor + std::time::Duration::from_millis(ms.saturating_sub(self.wall_ms))
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}
