//! A cap on a scarce resource (open connections, upgrades still waiting for
//! `hello`), taken without waiting: a caller over the cap is refused at
//! once instead of queued, so a flood costs the hub a refusal, not memory.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// At most `max` holders of a [`Permit`] at a time.
#[derive(Debug, Clone)]
pub struct Limit {
    slots: Arc<Semaphore>,
    max: usize,
}

/// One place under a [`Limit`], given back when dropped: an RAII guard, so
/// every way out of the code holding it (an error, a panic, a cancelled
/// task) releases it.
#[derive(Debug)]
pub struct Permit {
    _slot: OwnedSemaphorePermit,
}

impl Limit {
    /// `max` is capped at what a semaphore can count (`usize::MAX >> 3`),
    /// far beyond any file-descriptor limit.
    pub fn new(max: usize) -> Limit {
        let max = max.min(Semaphore::MAX_PERMITS);
        Limit {
            slots: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// A place, or `None` when all are taken.
    pub fn try_acquire(&self) -> Option<Permit> {
        self.slots
            .clone()
            .try_acquire_owned()
            .ok()
            .map(|slot| Permit { _slot: slot })
    }

    /// How many places are taken now.
    pub fn in_use(&self) -> usize {
        self.max - self.slots.available_permits()
    }

    pub fn max(&self) -> usize {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::Limit;

    #[test]
    fn refuses_beyond_the_cap_and_frees_a_place_on_drop() {
        let l = Limit::new(2);
        let a = l.try_acquire().expect("first place");
        let _b = l.try_acquire().expect("second place");
        assert!(l.try_acquire().is_none());
        assert_eq!(l.in_use(), 2);
        drop(a);
        assert_eq!(l.in_use(), 1);
        assert!(l.try_acquire().is_some());
    }
}
