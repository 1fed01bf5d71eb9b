//! The soak's pure parts: who each user is (a class by index), when the
//! scheduled users go online and offline, how many transitions each watcher
//! should see, and the report's arithmetic. No I/O, no clock.

use std::ops::Range;
use std::time::Duration;

/// What a user does during the soak; users are `u0..` by index, in this
/// order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// Goes online with `activity`, offline with `logout`, on a schedule.
    LogoutToggler,
    /// Goes online with `activity`, then stops interacting with the tab
    /// open: offline by expiry, on a schedule.
    ExpiryToggler,
    /// Keeps interacting and reloads the page now and then: online once,
    /// never a transition again.
    Reloader,
    /// Keeps interacting: online once, never a transition again.
    Steady,
    /// A tab nobody touches: never online.
    Idle,
    /// An abusive tab that proves nothing: never online.
    Abuser,
}

/// Users who go online at the start of cycle `j` and offline `hold` later,
/// one cycle starting every `spacing` over the whole pool, so transitions
/// are evenly spread: member `k` starts cycle `j` at slot `j * pool + k`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Toggle {
    pub pool: usize,
    pub spacing_us: u64,
    pub hold_us: u64,
}

impl Toggle {
    /// A pool big enough for `cycles_per_sec` cycles a second when each
    /// member needs `hold + gap` per cycle (the gap lets a logged-out tab
    /// reconnect, or an expiry land, before the next cycle). No pool at a
    /// rate of 0.
    pub fn new(cycles_per_sec: f64, hold: Duration, gap: Duration) -> Toggle {
        if cycles_per_sec <= 0.0 {
            return Toggle {
                pool: 0,
                spacing_us: u64::MAX,
                hold_us: hold.as_micros() as u64,
            };
        }
        let cycle = (hold + gap).as_secs_f64();
        Toggle {
            pool: (cycles_per_sec * cycle).ceil().max(1.0) as usize,
            spacing_us: (1e6 / cycles_per_sec).round() as u64,
            hold_us: hold.as_micros() as u64,
        }
    }

    /// When member `k` starts cycle `j`, µs after the schedule's origin.
    pub fn start_us(&self, k: usize, j: u64) -> u64 {
        (j * self.pool as u64 + k as u64).saturating_mul(self.spacing_us)
    }
}

/// Hold of a logout toggler, and the time it gets to reconnect.
pub const LOGOUT_HOLD: Duration = Duration::from_secs(5);
pub const LOGOUT_GAP: Duration = Duration::from_secs(3);
/// Time between an expiry toggler's offline and its next online.
pub const EXPIRY_GAP: Duration = Duration::from_secs(5);

/// Who is who among the soak's users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Users with a tab of their own (everyone but the abusers).
    pub tabs: usize,
    pub logout: Toggle,
    pub expiry: Toggle,
    pub reloaders: usize,
    pub steady: usize,
    pub idle: usize,
    /// Users `u{tabs}..` are the abusive tabs'.
    pub abusers: usize,
}

impl Layout {
    /// Half the scheduled transitions come from logouts, half from expiry;
    /// of everyone else, a quarter reload, half keep interacting, a quarter
    /// sit idle.
    ///
    /// # Errors
    /// Too few tabs for the schedule.
    pub fn new(
        tabs: usize,
        transitions_per_sec: f64,
        idle_timeout: Duration,
        abusers: usize,
    ) -> anyhow::Result<Layout> {
        // Two transitions per cycle, two pools.
        let cycles = transitions_per_sec / 4.0;
        let logout = Toggle::new(cycles, LOGOUT_HOLD, LOGOUT_GAP);
        let expiry = Toggle::new(cycles, idle_timeout, EXPIRY_GAP);
        let togglers = logout.pool + expiry.pool;
        anyhow::ensure!(
            tabs >= togglers + 4,
            "{tabs} tabs are too few: the schedule alone needs {togglers}"
        );
        let rest = tabs - togglers;
        let reloaders = rest / 4;
        let steady = rest / 2;
        Ok(Layout {
            tabs,
            logout,
            expiry,
            reloaders,
            steady,
            idle: rest - reloaders - steady,
            abusers,
        })
    }

    /// Users in the directory: every tab's plus the abusers'.
    pub fn users(&self) -> usize {
        self.tabs + self.abusers
    }

    pub fn range(&self, class: Class) -> Range<usize> {
        let l = self.logout.pool;
        let e = l + self.expiry.pool;
        let r = e + self.reloaders;
        let s = r + self.steady;
        match class {
            Class::LogoutToggler => 0..l,
            Class::ExpiryToggler => l..e,
            Class::Reloader => e..r,
            Class::Steady => r..s,
            Class::Idle => s..self.tabs,
            Class::Abuser => self.tabs..self.users(),
        }
    }

    pub fn class(&self, i: usize) -> Class {
        const ALL: [Class; 6] = [
            Class::LogoutToggler,
            Class::ExpiryToggler,
            Class::Reloader,
            Class::Steady,
            Class::Idle,
            Class::Abuser,
        ];
        ALL.into_iter()
            .find(|&c| self.range(c).contains(&i))
            .unwrap_or(Class::Abuser)
    }

    /// The tabs worker processes hold: everyone but the scheduled users.
    pub fn population(&self) -> Range<usize> {
        self.range(Class::ExpiryToggler).end..self.tabs
    }

    /// The members of roster team `k` of `teams`: up to ten users of each
    /// class with tabs, different for each team, so every roster watches
    /// transitions and users who must have none.
    pub fn team_members(&self, k: usize, teams: usize) -> Vec<usize> {
        let mut members = Vec::new();
        for c in [
            Class::LogoutToggler,
            Class::ExpiryToggler,
            Class::Reloader,
            Class::Steady,
            Class::Idle,
        ] {
            let r = self.range(c);
            let m = (r.len() / teams.max(1)).min(10);
            members.extend(r.start + k * m..r.start + (k + 1) * m);
        }
        members
    }
}

/// The transitions a watcher may see of a user of `class`, as `(at least,
/// at most)`, given whether the user was online in the watcher's first
/// snapshot and how many transitions the load generator caused for them.
/// Users who keep interacting come online once when their first tab
/// connects (a tab that never connected, in a run stopped early, owes
/// nothing: deltas lost on the way show up against the final snapshot).
pub fn allowance(class: Class, online_at_snapshot: bool, caused: u64) -> (u64, u64) {
    match class {
        Class::LogoutToggler | Class::ExpiryToggler => (caused, caused),
        Class::Reloader | Class::Steady => (0, u64::from(!online_at_snapshot)),
        Class::Idle | Class::Abuser => (0, 0),
    }
}

/// Missing and spurious transitions: what was owed and not seen, and what
/// was seen beyond what was allowed.
pub fn judge((least, most): (u64, u64), seen: u64) -> (u64, u64) {
    (least.saturating_sub(seen), seen.saturating_sub(most))
}

/// The wait before a tab's next reload, given a uniform draw `u` in
/// [0, 1): exponential with mean `mean_ms`, so reloads arrive as a Poisson
/// process at the same rate from the first second (a uniform wait would
/// start the crowd at half its rate).
pub fn reload_wait_ms(mean_ms: u64, u: f64) -> u64 {
    let u = u.clamp(0.0, 1.0 - f64::EPSILON);
    (-(1.0 - u).ln() * mean_ms as f64).round() as u64
}

/// RSS growth from `warm` to `end`, in percent.
pub fn growth_pct(warm_kib: u64, end_kib: u64) -> f64 {
    if warm_kib == 0 {
        return f64::NAN;
    }
    (end_kib as f64 - warm_kib as f64) * 100.0 / warm_kib as f64
}

/// The first sample at or after the end of the warm-up: the baseline that
/// growth is measured from. Samples are `(seconds into the run, RSS)`.
pub fn warm_sample(samples: &[(f64, u64)], warmup_secs: f64) -> Option<(f64, u64)> {
    samples
        .iter()
        .copied()
        .find(|&(t, _)| t + 0.5 >= warmup_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_spreads_cycles_evenly_and_leaves_each_member_its_gap() {
        let t = Toggle::new(1.0, Duration::from_secs(5), Duration::from_secs(3));
        assert_eq!(t.pool, 8);
        assert_eq!(t.spacing_us, 1_000_000);
        // Slots go round the pool: one start a second.
        let starts: Vec<u64> = (0..3)
            .flat_map(|j| (0..t.pool).map(move |k| (j, k)))
            .map(|(j, k)| t.start_us(k, j))
            .collect();
        assert!(starts.windows(2).all(|w| w[1] - w[0] == 1_000_000));
        for k in 0..t.pool {
            let next = t.start_us(k, 1) - t.start_us(k, 0);
            assert_eq!(next, t.pool as u64 * t.spacing_us);
            assert!(next >= t.hold_us + 3_000_000);
        }
    }

    #[test]
    fn fractional_rates_round_the_pool_up() {
        let t = Toggle::new(0.3, Duration::from_secs(60), Duration::from_secs(5));
        assert_eq!(t.pool, 20); // 0.3 × 65 = 19.5
        assert!(t.pool as u64 * t.spacing_us >= 65_000_000);
        let none = Toggle::new(0.0, Duration::from_secs(5), Duration::from_secs(3));
        assert_eq!(none.pool, 0);
    }

    #[test]
    fn every_index_has_one_class_in_layout_order() {
        let l = Layout::new(2000, 4.0, Duration::from_secs(60), 4).unwrap();
        assert_eq!((l.logout.pool, l.expiry.pool), (8, 65));
        assert_eq!(l.reloaders + l.steady + l.idle, 2000 - 73);
        assert_eq!(l.users(), 2004);
        let mut counts = std::collections::HashMap::new();
        for i in 0..l.users() {
            *counts.entry(l.class(i)).or_insert(0) += 1;
        }
        assert_eq!(counts[&Class::LogoutToggler], 8);
        assert_eq!(counts[&Class::ExpiryToggler], 65);
        assert_eq!(counts[&Class::Reloader], l.reloaders);
        assert_eq!(counts[&Class::Abuser], 4);
        assert_eq!(l.class(0), Class::LogoutToggler);
        assert_eq!(l.class(73), Class::Reloader);
        assert_eq!(l.class(1999), Class::Idle);
        assert_eq!(l.population(), 73..2000);
        assert!(Layout::new(50, 4.0, Duration::from_secs(60), 0).is_err());
    }

    #[test]
    fn teams_hold_every_class_and_do_not_overlap() {
        let l = Layout::new(19_000, 4.0, Duration::from_secs(60), 4).unwrap();
        let a = l.team_members(0, 3);
        let b = l.team_members(1, 3);
        // Logout pool of 8 over 3 teams: 2 each; the others 10 each.
        assert_eq!(a.len(), 2 + 10 + 10 + 10 + 10);
        assert!(a.iter().all(|i| !b.contains(i)));
        for c in [Class::LogoutToggler, Class::ExpiryToggler, Class::Idle] {
            assert!(a.iter().any(|&i| l.class(i) == c));
        }
    }

    #[test]
    fn allowances_by_class() {
        assert_eq!(allowance(Class::LogoutToggler, false, 7), (7, 7));
        assert_eq!(allowance(Class::ExpiryToggler, true, 2), (2, 2));
        assert_eq!(allowance(Class::Steady, false, 0), (0, 1));
        assert_eq!(allowance(Class::Reloader, true, 0), (0, 0));
        assert_eq!(allowance(Class::Idle, false, 3), (0, 0));
        assert_eq!(allowance(Class::Abuser, false, 0), (0, 0));
        assert_eq!(judge((3, 3), 1), (2, 0));
        assert_eq!(judge((3, 3), 5), (0, 2));
        assert_eq!(judge((0, 1), 0), (0, 0));
        assert_eq!(judge((0, 1), 3), (0, 2));
        assert_eq!(judge((2, 2), 2), (0, 0));
    }

    #[test]
    fn reload_waits_are_exponential_with_the_given_mean() {
        assert_eq!(reload_wait_ms(1000, 0.0), 0);
        // The median of an exponential is mean × ln 2.
        assert_eq!(reload_wait_ms(1000, 0.5), 693);
        let n = 10_000;
        let mean = (0..n)
            .map(|k| reload_wait_ms(1000, (k as f64 + 0.5) / n as f64))
            .sum::<u64>() as f64
            / n as f64;
        assert!((mean - 1000.0).abs() < 10.0, "{mean}");
        assert!(reload_wait_ms(1000, 1.0) < 40_000);
    }

    #[test]
    fn growth_is_measured_from_the_first_sample_after_warm_up() {
        let s = [(60.0, 100), (120.0, 110), (180.0, 121)];
        assert_eq!(warm_sample(&s, 120.0), Some((120.0, 110)));
        assert_eq!(warm_sample(&s, 100.0), Some((120.0, 110)));
        assert_eq!(warm_sample(&s, 200.0), None);
        assert!((growth_pct(110, 121) - 10.0).abs() < 1e-9);
        assert!(growth_pct(110, 99) < 0.0);
        assert!(growth_pct(0, 10).is_nan());
    }
}
