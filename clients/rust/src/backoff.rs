//! What to do after a connection ends: the close-code policy of SPEC §5 and
//! jittered exponential backoff. Pure, so the policy is tested without a hub.

use std::time::Duration;

use presence_protocol::close;
use rand::Rng;

/// The decision after a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum After {
    /// Do not reconnect: a human or a new login must act first.
    Stop,
    /// Reconnect at once: the node is restarting (another node can take the
    /// tab) or the token expired (the provider mints a fresh one).
    Now,
    /// Reconnect after a backoff delay.
    Backoff,
}

/// The policy for a close code seen on an established connection (`None`
/// when the socket dropped without a close frame).
pub(crate) fn after_close(code: Option<u16>) -> After {
    match code {
        Some(
            close::FORBIDDEN | close::LOGGED_OUT | close::POLICY_VIOLATION | close::TOO_MANY_TABS,
        ) => After::Stop,
        Some(close::NODE_RESTARTING | close::UNAUTHENTICATED) => After::Now,
        _ => After::Backoff,
    }
}

/// The policy for a close received in answer to `hello`. A token the
/// provider has just minted being refused (4001) will be refused again, so
/// retrying would only hammer the hub.
pub(crate) fn after_refused_hello(code: u16) -> After {
    match code {
        close::UNAUTHENTICATED => After::Stop,
        other => after_close(Some(other)),
    }
}

/// Bounds of the exponential backoff.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Backoff {
    pub min: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The delay before retry number `attempt` (0-based): `min·2^attempt`
    /// capped at `max`, then a random point in its upper half. The jitter
    /// spreads the tabs of a failed node over time instead of letting them
    /// all retry on the same tick; the lower bound keeps the growth.
    pub fn delay(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = self
            .min
            .saturating_mul(2u32.saturating_pow(attempt.min(31)))
            .min(self.max);
        let half = ceiling / 2;
        let spread = (ceiling - half).as_millis() as u64;
        half + Duration::from_millis(rng.random_range(0..=spread))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_codes_stop_and_restarts_reconnect_at_once() {
        for code in [4003, 4004, 4008, 4029] {
            assert_eq!(after_close(Some(code)), After::Stop, "{code}");
        }
        assert_eq!(after_close(Some(1012)), After::Now);
        assert_eq!(after_close(Some(4001)), After::Now);
        for code in [Some(1001), Some(1013), Some(4000), Some(1006), None] {
            assert_eq!(after_close(code), After::Backoff, "{code:?}");
        }
    }

    #[test]
    fn a_fresh_token_refused_at_hello_stops() {
        assert_eq!(after_refused_hello(4001), After::Stop);
        assert_eq!(after_refused_hello(1012), After::Now);
        assert_eq!(after_refused_hello(4003), After::Stop);
    }

    #[test]
    fn delay_grows_within_bounds_and_stays_in_the_upper_half() {
        let b = Backoff {
            min: Duration::from_millis(100),
            max: Duration::from_secs(5),
        };
        let mut rng = rand::rng();
        for attempt in 0..40 {
            let ceiling = (Duration::from_millis(100) * 2u32.pow(attempt.min(20))).min(b.max);
            for _ in 0..20 {
                let d = b.delay(attempt, &mut rng);
                assert!(d <= ceiling && d >= ceiling / 2, "{attempt}: {d:?}");
            }
        }
    }
}
