//! The `from`/`to` query values of the history and the report, checked and
//! turned into a span of time and the local days it touches.
//!
//! A value is a day `YYYY-MM-DD` in the tenant's zone (`from`: its first
//! instant; `to`, inclusive: the next day's first instant) or an RFC 3339
//! instant. Both default to today. Every refusal names its field and says
//! what to send instead, because the message goes back to the caller as is.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::Timestamp;

use super::days::{self, Day};

/// The longest range a request may cover, in local days.
pub(crate) const MAX_DAYS: i32 = 366;

/// How much of a refused value goes into the message.
const MAX_ECHO_CHARS: usize = 40;

/// A checked range: `[from_ms, to_ms)`, and its local days.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Span {
    pub from_ms: u64,
    /// Exclusive.
    pub to_ms: u64,
    /// The local day `from_ms` falls in.
    pub first_day: Date,
    /// The local day of the span's last instant (`to_ms - 1`).
    pub last_day: Date,
    /// Every local day from `first_day` to `last_day`, the first and the last
    /// cut to the span.
    pub days: Vec<Day>,
}

/// Why a `from`/`to` pair is refused (HTTP 400 with [`RangeError::field`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RangeError {
    #[error(
        "`{field}` is \"{value}\": expected a day YYYY-MM-DD (in the tenant's time zone, \
         e.g. 2026-11-03) or an RFC 3339 instant (e.g. 2026-11-03T12:00:00Z or \
         2026-11-03T09:00:00-03:00)"
    )]
    Malformed { field: &'static str, value: String },
    #[error("`{field}` is {value}, outside the supported range (1970 to 9999)")]
    OutOfRange { field: &'static str, value: String },
    #[error("`from` is after `to`: the range would start at {from} and end at {to}")]
    Reversed {
        field: &'static str,
        from: String,
        to: String,
    },
    #[error("the range is empty: it starts and ends at {at} (a day `to` includes that day)")]
    Empty { field: &'static str, at: String },
    #[error(
        "`from` starts before the history kept: the oldest day kept is {oldest} \
         (history is kept {retention_days} days)"
    )]
    BeforeRetention { oldest: Date, retention_days: u32 },
    #[error("the range covers {days} days, more than the {MAX_DAYS} allowed")]
    TooLong { days: i32 },
}

impl RangeError {
    /// The query parameter at fault: `from` or `to`.
    pub(crate) fn field(&self) -> &'static str {
        match self {
            RangeError::Malformed { field, .. }
            | RangeError::OutOfRange { field, .. }
            | RangeError::Reversed { field, .. }
            | RangeError::Empty { field, .. } => field,
            RangeError::BeforeRetention { .. } => "from",
            RangeError::TooLong { .. } => "to",
        }
    }
}

/// One bound as asked: a local day or an instant.
#[derive(Debug, Clone, Copy)]
enum Bound {
    Day(Date),
    Instant(Timestamp),
}

/// Checks `from`/`to` (absent: today) in the tenant's zone `tz`, at `now_ms`,
/// against a history kept `retention_days` days (today minus that many days
/// is the oldest day kept).
///
/// # Errors
///
/// A [`RangeError`]: a malformed value, `from` after `to`, an empty range, a
/// range starting before the oldest day kept, or covering more than
/// [`MAX_DAYS`] local days.
pub(crate) fn parse(
    from: Option<&str>,
    to: Option<&str>,
    tz: &TimeZone,
    now_ms: u64,
    retention_days: u32,
) -> Result<Span, RangeError> {
    let now = i64::try_from(now_ms)
        .ok()
        .and_then(|ms| Timestamp::from_millisecond(ms).ok())
        .unwrap_or(Timestamp::MAX);
    let today = tz.to_datetime(now).date();
    let from_bound = match from {
        Some(v) => bound("from", v)?,
        None => Bound::Day(today),
    };
    let to_bound = match to {
        Some(v) => bound("to", v)?,
        None => Bound::Day(today),
    };
    let from_ms = match from_bound {
        Bound::Day(d) => day_start("from", d, d, tz)?,
        Bound::Instant(t) => instant_ms("from", t)?,
    };
    let to_ms = match to_bound {
        Bound::Day(d) => match d.tomorrow() {
            Ok(next) => day_start("to", d, next, tz)?,
            Err(_) => return Err(out_of_range("to", d)),
        },
        Bound::Instant(t) => instant_ms("to", t)?,
    };
    // When only `to` was given, it is the one that is off.
    let order_field = if from.is_none() { "to" } else { "from" };
    if from_ms > to_ms {
        return Err(RangeError::Reversed {
            field: order_field,
            from: show(from_ms, tz),
            to: show(to_ms, tz),
        });
    }
    if from_ms == to_ms {
        return Err(RangeError::Empty {
            field: "to",
            at: show(from_ms, tz),
        });
    }
    // A retention too long for jiff's calendar keeps everything.
    let oldest = jiff::Span::new()
        .try_days(i64::from(retention_days))
        .ok()
        .and_then(|back| today.checked_sub(back).ok());
    if let Some(oldest) = oldest {
        let kept_from = days::start_ms(oldest, tz).unwrap_or(i64::MIN);
        if (from_ms as i64) < kept_from {
            return Err(RangeError::BeforeRetention {
                oldest,
                retention_days,
            });
        }
    }
    let first_day = local_date(from_ms, tz);
    let last_day = local_date(to_ms - 1, tz);
    let count = last_day
        .since(first_day)
        .map(|span| span.get_days() + 1)
        .unwrap_or(i32::MAX);
    if count > MAX_DAYS {
        return Err(RangeError::TooLong { days: count });
    }
    let mut days =
        days::local_days(first_day, last_day, tz).map_err(|e| out_of_range("to", e.0))?;
    if let Some(first) = days.first_mut() {
        first.start_ms = from_ms;
    }
    if let Some(last) = days.last_mut() {
        last.end_ms = to_ms;
    }
    Ok(Span {
        from_ms,
        to_ms,
        first_day,
        last_day,
        days,
    })
}

/// A value as a day (exactly `YYYY-MM-DD`) or an RFC 3339 instant.
fn bound(field: &'static str, value: &str) -> Result<Bound, RangeError> {
    let malformed = || RangeError::Malformed {
        field,
        value: echo(value),
    };
    if is_day_shape(value.as_bytes()) {
        value.parse().map(Bound::Day).map_err(|_| malformed())
    } else if is_rfc3339_shape(value.as_bytes()) {
        value.parse().map(Bound::Instant).map_err(|_| malformed())
    } else {
        Err(malformed())
    }
}

/// The first instant of `start_of` (the day itself for `from`, the next one
/// for an inclusive `to`), refused as out of range for `asked`.
fn day_start(
    field: &'static str,
    asked: Date,
    start_of: Date,
    tz: &TimeZone,
) -> Result<u64, RangeError> {
    days::start_ms(start_of, tz)
        .ok()
        .and_then(|ms| u64::try_from(ms).ok())
        .ok_or_else(|| out_of_range(field, asked))
}

fn instant_ms(field: &'static str, t: Timestamp) -> Result<u64, RangeError> {
    u64::try_from(t.as_millisecond()).map_err(|_| RangeError::OutOfRange {
        field,
        value: t.to_string(),
    })
}

fn out_of_range(field: &'static str, d: Date) -> RangeError {
    RangeError::OutOfRange {
        field,
        value: d.to_string(),
    }
}

fn local_date(ms: u64, tz: &TimeZone) -> Date {
    // `ms` came from a valid timestamp, so it converts back.
    let t = Timestamp::from_millisecond(ms as i64).unwrap_or(Timestamp::MAX);
    tz.to_datetime(t).date()
}

/// An instant as the caller's clock on the wall shows it, with its offset.
fn show(ms: u64, tz: &TimeZone) -> String {
    let t = Timestamp::from_millisecond(ms as i64).unwrap_or(Timestamp::MAX);
    t.display_with_offset(tz.to_offset(t)).to_string()
}

/// At most [`MAX_ECHO_CHARS`] of a refused value, so a huge query string
/// does not come back in the message.
fn echo(value: &str) -> String {
    match value.char_indices().nth(MAX_ECHO_CHARS) {
        Some((end, _)) => format!("{}…", &value[..end]),
        None => value.to_string(),
    }
}

fn digits(b: &[u8]) -> bool {
    b.iter().all(u8::is_ascii_digit)
}

fn is_day_shape(b: &[u8]) -> bool {
    b.len() == 10
        && digits(&b[0..4])
        && b[4] == b'-'
        && digits(&b[5..7])
        && b[7] == b'-'
        && digits(&b[8..10])
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` (RFC 3339 §5.6; `t`, `z` and
/// a space for `T` allowed, as the RFC does), so the wider syntaxes the
/// parser would take (week dates, bracketed zones) are refused.
fn is_rfc3339_shape(b: &[u8]) -> bool {
    if b.len() < 20 || !is_day_shape(&b[..10]) {
        return false;
    }
    let time = &b[10..];
    if !matches!(time[0], b'T' | b't' | b' ')
        || !digits(&time[1..3])
        || time[3] != b':'
        || !digits(&time[4..6])
        || time[6] != b':'
        || !digits(&time[7..9])
    {
        return false;
    }
    let mut rest = &time[9..];
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 || n > 9 {
            return false;
        }
        rest = &frac[n..];
    }
    match rest {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => digits(&[*h1, *h2, *m1, *m2]),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn tz(name: &str) -> TimeZone {
        jiff::tz::db().get(name).unwrap()
    }

    fn ms(s: &str) -> u64 {
        s.parse::<Timestamp>().unwrap().as_millisecond() as u64
    }

    fn sp() -> TimeZone {
        tz("America/Sao_Paulo")
    }

    /// 2026-12-01 10:00 in São Paulo.
    fn now() -> u64 {
        ms("2026-12-01T13:00:00Z")
    }

    fn ok(from: Option<&str>, to: Option<&str>) -> Span {
        parse(from, to, &sp(), now(), 90).unwrap()
    }

    fn err(from: Option<&str>, to: Option<&str>) -> (&'static str, String) {
        let e = parse(from, to, &sp(), now(), 90).unwrap_err();
        (e.field(), e.to_string())
    }

    #[test]
    fn days_cover_the_local_days_with_to_inclusive() {
        let s = ok(Some("2026-11-03"), Some("2026-11-04"));
        assert_eq!(s.from_ms, ms("2026-11-03T00:00:00-03:00"));
        assert_eq!(s.to_ms, ms("2026-11-05T00:00:00-03:00"));
        assert_eq!(
            (s.first_day, s.last_day),
            (date(2026, 11, 3), date(2026, 11, 4))
        );
        assert_eq!(s.days.len(), 2);
        assert_eq!(s.days[0].start_ms, s.from_ms);
        assert_eq!(s.days[0].end_ms, s.days[1].start_ms);
        assert_eq!(s.days[1].end_ms, s.to_ms);
    }

    #[test]
    fn absent_bounds_mean_today_in_the_tenant_zone() {
        // 01:00Z on 2 December is still 1 December in São Paulo.
        let s = parse(None, None, &sp(), ms("2026-12-02T01:00:00Z"), 90).unwrap();
        assert_eq!(s.from_ms, ms("2026-12-01T00:00:00-03:00"));
        assert_eq!(s.to_ms, ms("2026-12-02T00:00:00-03:00"));
        assert_eq!(
            (s.first_day, s.last_day),
            (date(2026, 12, 1), date(2026, 12, 1))
        );
        let s = ok(Some("2026-11-30"), None);
        assert_eq!(s.to_ms, ms("2026-12-02T00:00:00-03:00"));
        assert_eq!(s.days.len(), 2);
    }

    #[test]
    fn rfc3339_instants_with_offsets_are_exact_and_cut_the_days() {
        let s = ok(
            Some("2026-11-03T09:00:00-03:00"),
            Some("2026-11-04T12:30:00.5Z"),
        );
        assert_eq!(s.from_ms, ms("2026-11-03T12:00:00Z"));
        assert_eq!(s.to_ms, ms("2026-11-04T12:30:00Z") + 500);
        assert_eq!(
            (s.first_day, s.last_day),
            (date(2026, 11, 3), date(2026, 11, 4))
        );
        assert_eq!(s.days[0].start_ms, s.from_ms);
        assert_eq!(s.days[0].end_ms, ms("2026-11-04T03:00:00Z"));
        assert_eq!(s.days[1].end_ms, s.to_ms);
        // An instant that ends exactly at local midnight touches one day.
        let s = ok(Some("2026-11-03"), Some("2026-11-04T00:00:00-03:00"));
        assert_eq!(s.last_day, date(2026, 11, 3));
        assert_eq!(s.days.len(), 1);
        // A space for `T`, as RFC 3339 allows.
        let s = ok(Some("2026-11-03 12:00:00+00:00"), Some("2026-11-03"));
        assert_eq!(s.from_ms, ms("2026-11-03T12:00:00Z"));
        // Day and instant mixed; lowercase separators.
        let s = ok(Some("2026-11-03t12:00:00z"), Some("2026-11-03"));
        assert_eq!(s.from_ms, ms("2026-11-03T12:00:00Z"));
    }

    #[test]
    fn malformed_values_name_their_field_and_the_accepted_formats() {
        for bad in [
            "",
            "yesterday",
            "2026-11-3",
            "03/11/2026",
            "2026-13-01",
            "2026-02-30",
            "2026-11-03T12:00:00",
            "2026-11-03T12:00Z",
            "2026-11-03T25:00:00Z",
            "2026-11-03T12:00:00+0300",
            "2026-W45-2",
            "2026-11-03T12:00:00Z[America/Sao_Paulo]",
            "20261103",
            " 2026-11-03",
            "2026-11-0é",
            "2026-11-03T12:00:00ééé",
            "éééééééééééé",
        ] {
            let (field, msg) = err(Some(bad), None);
            assert_eq!(field, "from", "{bad:?}");
            assert!(msg.contains(&format!("\"{bad}\"")), "{msg}");
            assert!(
                msg.contains("YYYY-MM-DD") && msg.contains("RFC 3339"),
                "{msg}"
            );
            let (field, msg) = err(Some("2026-11-03"), Some(bad));
            assert_eq!(field, "to", "{bad:?}");
            assert!(msg.starts_with("`to` is"), "{msg}");
        }
    }

    #[test]
    fn a_long_malformed_value_is_cut_in_the_message() {
        let long = "x".repeat(10_000);
        let (_, msg) = err(Some(&long), None);
        assert!(msg.len() < 400, "{msg}");
        assert!(msg.contains(&format!("\"{}…\"", "x".repeat(40))));
    }

    #[test]
    fn from_after_to_is_refused() {
        let (field, msg) = err(Some("2026-11-05"), Some("2026-11-03"));
        assert_eq!(field, "from");
        assert_eq!(
            msg,
            "`from` is after `to`: the range would start at 2026-11-05T00:00:00-03:00 \
             and end at 2026-11-04T00:00:00-03:00"
        );
        let (field, _) = err(Some("2026-11-03T12:00:01Z"), Some("2026-11-03T12:00:00Z"));
        assert_eq!(field, "from");
        // Only `to` given, before today: `to` is at fault.
        let (field, msg) = err(None, Some("2026-11-03"));
        assert_eq!(field, "to");
        assert!(msg.starts_with("`from` is after `to`"), "{msg}");
    }

    #[test]
    fn an_empty_range_is_refused() {
        let (field, msg) = err(
            Some("2026-11-03T12:00:00Z"),
            Some("2026-11-03T09:00:00-03:00"),
        );
        assert_eq!(field, "to");
        assert_eq!(
            msg,
            "the range is empty: it starts and ends at 2026-11-03T09:00:00-03:00 \
             (a day `to` includes that day)"
        );
    }

    #[test]
    fn a_range_before_the_retention_is_refused() {
        // Today 2026-12-01 minus 90 days: 2026-09-02 is the oldest day kept.
        assert_eq!(ok(Some("2026-09-02"), None).first_day, date(2026, 9, 2));
        let (field, msg) = err(Some("2026-09-01"), Some("2026-09-05"));
        assert_eq!(field, "from");
        assert_eq!(
            msg,
            "`from` starts before the history kept: the oldest day kept is 2026-09-02 \
             (history is kept 90 days)"
        );
        // One millisecond before the oldest day's start.
        let (field, _) = err(Some("2026-09-02T02:59:59.999Z"), None);
        assert_eq!(field, "from");
        // A retention of 0 keeps today only.
        let e = parse(Some("2026-11-30"), None, &sp(), now(), 0).unwrap_err();
        assert_eq!(
            e,
            RangeError::BeforeRetention {
                oldest: date(2026, 12, 1),
                retention_days: 0
            }
        );
    }

    #[test]
    fn a_range_over_366_days_is_refused() {
        let tz = sp();
        let now = ms("2027-12-31T12:00:00Z");
        assert_eq!(
            parse(Some("2027-01-01"), Some("2027-12-31"), &tz, now, 3650)
                .unwrap()
                .days
                .len(),
            365
        );
        assert_eq!(
            parse(Some("2024-01-01"), Some("2024-12-31"), &tz, now, 3650)
                .unwrap()
                .days
                .len(),
            366
        );
        let e = parse(Some("2026-01-01"), Some("2027-01-02"), &tz, now, 3650).unwrap_err();
        assert_eq!(e.field(), "to");
        assert_eq!(
            e.to_string(),
            "the range covers 367 days, more than the 366 allowed"
        );
        // Counted in local days touched, even when shorter than 366 × 24 h.
        let e = parse(
            Some("2026-01-01T23:00:00-03:00"),
            Some("2027-01-02T01:00:00-03:00"),
            &tz,
            now,
            3650,
        )
        .unwrap_err();
        assert_eq!(e, RangeError::TooLong { days: 367 });
    }

    #[test]
    fn dates_outside_the_supported_range_are_refused() {
        let e = parse(Some("1969-12-31"), None, &TimeZone::UTC, now(), u32::MAX).unwrap_err();
        assert_eq!(e.field(), "from");
        assert_eq!(
            e.to_string(),
            "`from` is 1969-12-31, outside the supported range (1970 to 9999)"
        );
        let e = parse(
            Some("2026-11-03"),
            Some("9999-12-31"),
            &TimeZone::UTC,
            now(),
            90,
        )
        .unwrap_err();
        assert_eq!(e.field(), "to");
        let e = parse(
            Some("1969-12-31T23:00:00Z"),
            None,
            &TimeZone::UTC,
            now(),
            u32::MAX,
        )
        .unwrap_err();
        assert_eq!(e.field(), "from");
    }

    #[test]
    fn a_day_without_midnight_starts_at_one() {
        let s = parse(
            Some("2018-11-04"),
            Some("2018-11-04"),
            &sp(),
            ms("2018-11-05T12:00:00Z"),
            90,
        )
        .unwrap();
        assert_eq!(s.from_ms, ms("2018-11-04T01:00:00-02:00"));
        assert_eq!(s.to_ms - s.from_ms, 23 * 3_600_000);
    }
}
