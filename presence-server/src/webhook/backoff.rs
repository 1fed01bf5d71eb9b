//! When a failed delivery is tried again: exponential from the minimum,
//! capped, with "equal jitter" (half the step fixed, half random), so the
//! deliverers of many tenants failing on one receiver do not retry in
//! step, and none retries sooner than half its step.

use std::time::Duration;

/// The wait before attempt `failures + 1`, with `unit` a random number in
/// [0, 1) (passed in, so the rule is pure).
pub fn delay(failures: u32, min: Duration, max: Duration, unit: f64) -> Duration {
    let exp = failures.saturating_sub(1).min(30);
    let step = min.saturating_mul(1u32 << exp).min(max);
    let half = step / 2;
    half + half.mul_f64(unit.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_millis(500);
    const MAX: Duration = Duration::from_secs(60);

    #[test]
    fn doubles_from_the_minimum_up_to_the_cap() {
        let top = |n| delay(n, MIN, MAX, 1.0);
        assert_eq!(top(1), MIN);
        assert_eq!(top(2), MIN * 2);
        assert_eq!(top(3), MIN * 4);
        assert_eq!(top(8), MAX);
        assert_eq!(top(u32::MAX), MAX);
    }

    #[test]
    fn jitter_stays_within_half_a_step() {
        for n in 1..40 {
            let lo = delay(n, MIN, MAX, 0.0);
            let hi = delay(n, MIN, MAX, 0.999_999);
            assert!(lo * 2 >= delay(n, MIN, MAX, 1.0) - Duration::from_nanos(2));
            assert!(lo <= hi && hi <= MAX, "{n}: {lo:?} {hi:?}");
        }
    }
}
