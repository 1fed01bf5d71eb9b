//! The attendance report: per user per local day the time online, first
//! online, last offline, periods and the longest gap, with totals per user
//! and per team, as JSON (serde) and as the `;`-separated CSV.
//!
//! One pass over each user's intervals through [`days::pieces`]: the day
//! boundaries are computed once per range, never per piece, and nothing is
//! allocated per piece unless the pieces themselves are asked for. The
//! benchmark is 10,000 users × 31 days × 10 periods a day.

use std::collections::HashMap;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::Serialize;

use super::days::{self, Day, PieceEnd};
use super::range::Span;
use super::Interval;

/// One user to report on, with their intervals (sorted by `from`, never
/// overlapping, as the history keeps them).
#[derive(Debug, Clone)]
pub(crate) struct ReportUser {
    pub id: String,
    pub name: String,
    pub teams: Vec<String>,
    pub intervals: Vec<Interval>,
}

/// One team to total, with the ids of its members.
#[derive(Debug, Clone)]
pub(crate) struct ReportTeam {
    pub id: String,
    pub name: String,
    pub members: Vec<String>,
}

/// The report, serialized as the JSON of the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub(crate) struct Report {
    pub time_zone: String,
    #[serde(serialize_with = "as_text")]
    #[schema(value_type = String, format = Date)]
    pub from: Date,
    #[serde(serialize_with = "as_text")]
    #[schema(value_type = String, format = Date)]
    pub to: Date,
    pub generated_at: u64,
    pub users: Vec<UserReport>,
    pub teams: Vec<TeamReport>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub(crate) struct UserReport {
    pub id: String,
    pub name: String,
    pub teams: Vec<String>,
    /// Only the days with at least one online period, in order.
    pub days: Vec<DayReport>,
    pub total: UserTotal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub(crate) struct DayReport {
    #[serde(serialize_with = "as_text")]
    #[schema(value_type = String, format = Date)]
    pub date: Date,
    pub online_ms: u64,
    /// Start of the day's first piece (the day's start when a period began
    /// the day before).
    pub first_online: u64,
    /// End of the day's last piece; the day's end when that period goes on
    /// past it; `None` (null) when the user is still online now.
    pub last_offline: Option<u64>,
    pub periods: u32,
    /// Longest offline gap between two consecutive pieces of the day (0 with
    /// one piece).
    pub longest_gap_ms: u64,
    /// The pieces `[from, to]`, only when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intervals: Option<Vec<(u64, u64)>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub(crate) struct UserTotal {
    pub online_ms: u64,
    pub days_present: u32,
    /// Online periods in the range; one that crosses midnight counts once.
    pub periods: u32,
    /// The longest of the days' gaps.
    pub longest_gap_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub(crate) struct TeamReport {
    pub id: String,
    pub name: String,
    /// How many members the team has.
    pub members: u32,
    /// Sum over the members in the report.
    pub online_ms: u64,
    pub periods: u32,
}

fn as_text<S: serde::Serializer>(date: &Date, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(date)
}

/// The attendance report over `span`'s days at `now_ms` (an open interval
/// ends now), for a tenant in `time_zone` (its IANA name, as shown).
///
/// Users are sorted by name then id; teams likewise. A team's totals add up
/// those of its members found in `users`, so the caller passes every member
/// it may read, whatever the `user` filter, when the team's figures are to
/// cover the whole team. `with_intervals` adds each day's pieces.
pub(crate) fn attendance(
    time_zone: &str,
    span: &Span,
    users: Vec<ReportUser>,
    teams: &[ReportTeam],
    now_ms: u64,
    with_intervals: bool,
) -> Report {
    let mut users: Vec<UserReport> = users
        .into_iter()
        .map(|u| {
            let (days, total) = user_days(&u.intervals, &span.days, now_ms, with_intervals);
            UserReport {
                id: u.id,
                name: u.name,
                teams: u.teams,
                days,
                total,
            }
        })
        .collect();
    users.sort_unstable_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));

    let totals: HashMap<&str, &UserTotal> =
        users.iter().map(|u| (u.id.as_str(), &u.total)).collect();
    let mut teams: Vec<TeamReport> = teams
        .iter()
        .map(|t| {
            let mut team = TeamReport {
                id: t.id.clone(),
                name: t.name.clone(),
                members: u32::try_from(t.members.len()).unwrap_or(u32::MAX),
                online_ms: 0,
                periods: 0,
            };
            for total in t.members.iter().filter_map(|m| totals.get(m.as_str())) {
                team.online_ms += total.online_ms;
                team.periods = team.periods.saturating_add(total.periods);
            }
            team
        })
        .collect();
    teams.sort_unstable_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));

    Report {
        time_zone: time_zone.to_string(),
        from: span.first_day,
        to: span.last_day,
        generated_at: now_ms,
        users,
        teams,
    }
}

/// One user's days present and totals.
fn user_days(
    intervals: &[Interval],
    days: &[Day],
    now_ms: u64,
    with_intervals: bool,
) -> (Vec<DayReport>, UserTotal) {
    let mut out: Vec<DayReport> = Vec::new();
    let mut total = UserTotal::default();
    // The day being filled: its index in `days` and where its last piece ended.
    let mut current: Option<(usize, u64)> = None;
    let mut last_interval = None;
    for piece in days::pieces(intervals, days, now_ms) {
        if last_interval != Some(piece.interval) {
            last_interval = Some(piece.interval);
            total.periods += 1;
        }
        let last_offline = match piece.end {
            PieceEnd::Ended | PieceEnd::Continues => Some(piece.to_ms),
            PieceEnd::Now => None,
        };
        let length = piece.to_ms - piece.from_ms;
        match (current, out.last_mut()) {
            (Some((day, last_to)), Some(report)) if day == piece.day => {
                report.online_ms += length;
                report.periods += 1;
                report.longest_gap_ms = report
                    .longest_gap_ms
                    .max(piece.from_ms.saturating_sub(last_to));
                report.last_offline = last_offline;
                if let Some(pieces) = &mut report.intervals {
                    pieces.push((piece.from_ms, piece.to_ms));
                }
            }
            _ => out.push(DayReport {
                date: days[piece.day].date,
                online_ms: length,
                first_online: piece.from_ms,
                last_offline,
                periods: 1,
                longest_gap_ms: 0,
                intervals: with_intervals.then(|| {
                    // Ten periods a day is the common case: one allocation.
                    let mut pieces = Vec::with_capacity(16);
                    pieces.push((piece.from_ms, piece.to_ms));
                    pieces
                }),
            }),
        }
        current = Some((piece.day, piece.to_ms));
    }
    for day in &out {
        total.online_ms += day.online_ms;
        total.longest_gap_ms = total.longest_gap_ms.max(day.longest_gap_ms);
    }
    total.days_present = u32::try_from(out.len()).unwrap_or(u32::MAX);
    (out, total)
}

/// The CSV header, as SPEC §11 names the columns.
const CSV_HEADER: [&str; 8] = [
    "user",
    "name",
    "date",
    "time_online",
    "first_online",
    "last_offline",
    "periods",
    "longest_gap",
];

/// The report as CSV for a spreadsheet: UTF-8 with a BOM, `;`-separated,
/// CRLF line ends (a Brazilian Excel opens it as it opens the import file).
/// One row per user per day present (times `HH:MM:SS` in `tz`, `24:00:00`
/// for a period that goes on past midnight, empty while still online;
/// durations `H:MM:SS`, seconds rounded down), then the user's `total` row;
/// then one `team:<id>` row per team.
///
/// Text cells starting with `=`, `+`, `-`, `@`, a tab or a carriage return
/// get a leading `'`, so a name cannot be a spreadsheet formula.
pub(crate) fn to_csv(report: &Report, tz: &TimeZone) -> Vec<u8> {
    let rows: usize =
        1 + report.teams.len() + report.users.iter().map(|u| 1 + u.days.len()).sum::<usize>();
    let mut out = Vec::with_capacity(80 * rows);
    out.extend_from_slice("\u{feff}".as_bytes());
    let mut w = csv::WriterBuilder::new()
        .delimiter(b';')
        .terminator(csv::Terminator::CRLF)
        .from_writer(out);
    // Writing to a Vec cannot fail, and every record has the header's
    // eight fields: the `expect`s below cannot fire.
    w.write_record(CSV_HEADER).expect("CSV into a Vec");
    let mut cells: [String; 8] = Default::default();
    for user in &report.users {
        for day in &user.days {
            for c in &mut cells {
                c.clear();
            }
            guarded(&mut cells[0], &user.id);
            guarded(&mut cells[1], &user.name);
            date_cell(&mut cells[2], day.date);
            duration(&mut cells[3], day.online_ms);
            clock(&mut cells[4], day.first_online, day.date, tz);
            if let Some(at) = day.last_offline {
                clock(&mut cells[5], at, day.date, tz);
            }
            number(&mut cells[6], u64::from(day.periods));
            duration(&mut cells[7], day.longest_gap_ms);
            w.write_record(&cells).expect("CSV into a Vec");
        }
        for c in &mut cells {
            c.clear();
        }
        guarded(&mut cells[0], &user.id);
        guarded(&mut cells[1], &user.name);
        cells[2].push_str("total");
        duration(&mut cells[3], user.total.online_ms);
        number(&mut cells[6], u64::from(user.total.periods));
        duration(&mut cells[7], user.total.longest_gap_ms);
        w.write_record(&cells).expect("CSV into a Vec");
    }
    for team in &report.teams {
        for c in &mut cells {
            c.clear();
        }
        cells[0].push_str("team:");
        cells[0].push_str(&team.id);
        guarded(&mut cells[1], &team.name);
        cells[2].push_str("total");
        duration(&mut cells[3], team.online_ms);
        number(&mut cells[6], u64::from(team.periods));
        w.write_record(&cells).expect("CSV into a Vec");
    }
    w.into_inner().expect("flushing into a Vec")
}

/// `text`, with a leading `'` when a spreadsheet would read it as a formula
/// (OWASP's advice for CSV injection).
fn guarded(cell: &mut String, text: &str) {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        cell.push('\'');
    }
    cell.push_str(text);
}

/// `H:MM:SS`, hours unbounded, seconds rounded down.
fn duration(cell: &mut String, ms: u64) {
    let s = ms / 1000;
    number(cell, s / 3600);
    cell.push(':');
    two_digits(cell, s / 60 % 60);
    cell.push(':');
    two_digits(cell, s % 60);
}

/// `HH:MM:SS` of `ms` in `tz`; `24:00:00` when it is the end of `date` (the
/// next day's start, where a period went on past midnight).
fn clock(cell: &mut String, ms: u64, date: Date, tz: &TimeZone) {
    let t = Timestamp::from_millisecond(ms as i64).unwrap_or(Timestamp::MAX);
    let local = tz.to_datetime(t);
    if local.date() > date {
        cell.push_str("24:00:00");
    } else {
        two_digits(cell, local.hour().unsigned_abs().into());
        cell.push(':');
        two_digits(cell, local.minute().unsigned_abs().into());
        cell.push(':');
        two_digits(cell, local.second().unsigned_abs().into());
    }
}

// Digits written by hand: `write!` was most of the CSV's time for the
// 310,000 rows of the benchmark.

/// `n` in decimal.
fn number(cell: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[i..] {
        cell.push(char::from(d));
    }
}

/// `n` (below 100) with a leading zero.
fn two_digits(cell: &mut String, n: u64) {
    cell.push(char::from(b'0' + (n / 10 % 10) as u8));
    cell.push(char::from(b'0' + (n % 10) as u8));
}

/// `YYYY-MM-DD` (years of the history are 1970 to 9999).
fn date_cell(cell: &mut String, date: Date) {
    let year = u64::from(date.year().unsigned_abs());
    two_digits(cell, year / 100);
    two_digits(cell, year % 100);
    cell.push('-');
    two_digits(cell, u64::from(date.month().unsigned_abs()));
    cell.push('-');
    two_digits(cell, u64::from(date.day().unsigned_abs()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::range;
    use crate::history::test_support::{arb_intervals, ms, HOUR};
    use presence_protocol::Reason;
    use proptest::prelude::*;
    use serde_json::json;

    const MIN: u64 = 60_000;

    fn tz(name: &str) -> TimeZone {
        jiff::tz::db().get(name).unwrap()
    }

    fn closed(from: &str, to: &str) -> Interval {
        Interval {
            from: ms(from),
            to: Some(ms(to)),
            reason: Some(Reason::Idle),
        }
    }

    fn open(from: &str) -> Interval {
        Interval {
            from: ms(from),
            to: None,
            reason: None,
        }
    }

    fn user(id: &str, name: &str, teams: &[&str], intervals: Vec<Interval>) -> ReportUser {
        ReportUser {
            id: id.into(),
            name: name.into(),
            teams: teams.iter().map(|t| t.to_string()).collect(),
            intervals,
        }
    }

    fn team(id: &str, name: &str, members: &[&str]) -> ReportTeam {
        ReportTeam {
            id: id.into(),
            name: name.into(),
            members: members.iter().map(|m| m.to_string()).collect(),
        }
    }

    /// The days 2026-11-03 and 2026-11-04 in São Paulo (-03, no DST).
    fn sp_span() -> Span {
        range::parse(
            Some("2026-11-03"),
            Some("2026-11-04"),
            &tz("America/Sao_Paulo"),
            ms("2026-11-05T12:00:00Z"),
            90,
        )
        .unwrap()
    }

    #[test]
    fn the_json_has_the_contract_shape() {
        let now = ms("2026-11-05T12:00:00Z");
        let users = vec![user(
            "u1",
            "Ana",
            &["t1"],
            vec![
                closed("2026-11-03T09:00:00-03:00", "2026-11-03T12:00:00-03:00"),
                closed("2026-11-03T13:00:00-03:00", "2026-11-03T18:00:00-03:00"),
            ],
        )];
        let report = attendance(
            "America/Sao_Paulo",
            &sp_span(),
            users,
            &[team("t1", "Sales", &["u1", "u2"])],
            now,
            true,
        );
        let got = serde_json::to_value(&report).unwrap();
        assert_eq!(
            got,
            json!({
                "time_zone": "America/Sao_Paulo", "from": "2026-11-03", "to": "2026-11-04",
                "generated_at": now,
                "users": [{"id": "u1", "name": "Ana", "teams": ["t1"],
                    "days": [{"date": "2026-11-03", "online_ms": 8 * HOUR,
                        "first_online": ms("2026-11-03T09:00:00-03:00"),
                        "last_offline": ms("2026-11-03T18:00:00-03:00"),
                        "periods": 2, "longest_gap_ms": HOUR,
                        "intervals": [
                            [ms("2026-11-03T09:00:00-03:00"), ms("2026-11-03T12:00:00-03:00")],
                            [ms("2026-11-03T13:00:00-03:00"), ms("2026-11-03T18:00:00-03:00")],
                        ]}],
                    "total": {"online_ms": 8 * HOUR, "days_present": 1, "periods": 2, "longest_gap_ms": HOUR}}],
                "teams": [{"id": "t1", "name": "Sales", "members": 2, "online_ms": 8 * HOUR, "periods": 2}],
            })
        );
        // Without `intervals=true` the pieces are left out of the JSON.
        let report = attendance("UTC", &sp_span(), vec![], &[], now, false);
        assert!(report.users.is_empty());
        let users = vec![user(
            "u1",
            "Ana",
            &[],
            vec![closed(
                "2026-11-03T09:00:00-03:00",
                "2026-11-03T10:00:00-03:00",
            )],
        )];
        let report = attendance("UTC", &sp_span(), users, &[], now, false);
        let day = &serde_json::to_value(&report).unwrap()["users"][0]["days"][0];
        assert!(day.get("intervals").is_none(), "{day}");
    }

    #[test]
    fn a_period_across_local_midnight_counts_on_both_days_and_once_in_the_total() {
        let users = vec![user(
            "u1",
            "Ana",
            &[],
            vec![closed(
                "2026-11-03T22:00:00-03:00",
                "2026-11-04T02:00:00-03:00",
            )],
        )];
        let r = attendance(
            "America/Sao_Paulo",
            &sp_span(),
            users,
            &[],
            ms("2026-11-05T12:00:00Z"),
            true,
        );
        let days = &r.users[0].days;
        assert_eq!(days.len(), 2);
        let midnight = ms("2026-11-04T00:00:00-03:00");
        assert_eq!(days[0].date, jiff::civil::date(2026, 11, 3));
        assert_eq!(days[0].online_ms, 2 * HOUR);
        assert_eq!(
            days[0].last_offline,
            Some(midnight),
            "the day's end when it goes on past midnight"
        );
        assert_eq!(days[1].first_online, midnight);
        assert_eq!(days[1].online_ms, 2 * HOUR);
        assert_eq!(days[1].last_offline, Some(ms("2026-11-04T02:00:00-03:00")));
        assert_eq!(
            r.users[0].total,
            UserTotal {
                online_ms: 4 * HOUR,
                days_present: 2,
                periods: 1,
                longest_gap_ms: 0
            }
        );
    }

    #[test]
    fn a_period_across_the_fall_back_change_is_four_hours() {
        let ny = tz("America/New_York");
        let now = ms("2026-11-02T12:00:00Z");
        let span = range::parse(Some("2026-11-01"), None, &ny, now, 90).unwrap();
        assert_eq!(span.days[0].end_ms - span.days[0].start_ms, 25 * HOUR);
        let users = vec![user(
            "u1",
            "Ana",
            &[],
            vec![closed(
                "2026-11-01T00:30:00-04:00",
                "2026-11-01T03:30:00-05:00",
            )],
        )];
        let r = attendance("America/New_York", &span, users, &[], now, false);
        assert_eq!(r.users[0].days[0].online_ms, 4 * HOUR);
        let csv = String::from_utf8(to_csv(&r, &ny)).unwrap();
        assert!(
            csv.contains("u1;Ana;2026-11-01;4:00:00;00:30:00;03:30:00;1;0:00:00\r\n"),
            "{csv}"
        );
    }

    #[test]
    fn longest_gap_is_between_pieces_of_the_same_day() {
        let users = vec![user(
            "u1",
            "Ana",
            &[],
            vec![
                closed("2026-11-03T08:00:00-03:00", "2026-11-03T09:00:00-03:00"),
                closed("2026-11-03T09:10:00-03:00", "2026-11-03T10:00:00-03:00"),
                closed("2026-11-03T12:00:00-03:00", "2026-11-03T12:30:00-03:00"),
                closed("2026-11-03T12:45:00-03:00", "2026-11-03T18:00:00-03:00"),
                // The night between the days is not a gap of either day.
                closed("2026-11-04T08:00:00-03:00", "2026-11-04T09:00:00-03:00"),
            ],
        )];
        let r = attendance(
            "America/Sao_Paulo",
            &sp_span(),
            users,
            &[],
            ms("2026-11-05T12:00:00Z"),
            false,
        );
        let u = &r.users[0];
        assert_eq!(u.days[0].longest_gap_ms, 2 * HOUR);
        assert_eq!(u.days[0].periods, 4);
        assert_eq!(u.days[1].longest_gap_ms, 0, "one piece: no gap");
        assert_eq!(u.total.longest_gap_ms, 2 * HOUR);
        assert_eq!(u.total.periods, 5);
    }

    #[test]
    fn still_online_now_has_no_last_offline_and_ends_now() {
        let sp = tz("America/Sao_Paulo");
        let now = ms("2026-11-04T10:00:00-03:00");
        let span = range::parse(Some("2026-11-03"), Some("2026-11-05"), &sp, now, 90).unwrap();
        let users = vec![user(
            "u1",
            "Ana",
            &[],
            vec![open("2026-11-03T20:00:00-03:00")],
        )];
        let r = attendance("America/Sao_Paulo", &span, users, &[], now, true);
        let days = &r.users[0].days;
        assert_eq!(days.len(), 2, "nothing on the day that has not come yet");
        assert_eq!(days[0].last_offline, Some(ms("2026-11-04T00:00:00-03:00")));
        assert_eq!(days[1].last_offline, None);
        assert_eq!(days[1].online_ms, 10 * HOUR);
        assert_eq!(
            days[1].intervals,
            Some(vec![(ms("2026-11-04T00:00:00-03:00"), now)])
        );
        let csv = String::from_utf8(to_csv(&r, &sp)).unwrap();
        assert!(
            csv.contains("u1;Ana;2026-11-03;4:00:00;20:00:00;24:00:00;1;0:00:00\r\n"),
            "{csv}"
        );
        assert!(
            csv.contains("u1;Ana;2026-11-04;10:00:00;00:00:00;;1;0:00:00\r\n"),
            "{csv}"
        );
    }

    #[test]
    fn users_sort_by_name_then_id_and_absent_users_have_no_days() {
        let iv = || {
            vec![closed(
                "2026-11-03T09:00:00-03:00",
                "2026-11-03T10:00:00-03:00",
            )]
        };
        let users = vec![
            user("u3", "Bia", &[], iv()),
            user("u2", "Ana", &[], vec![]),
            user("u1", "Bia", &[], iv()),
        ];
        let r = attendance("America/Sao_Paulo", &sp_span(), users, &[], 0, false);
        let order: Vec<&str> = r.users.iter().map(|u| u.id.as_str()).collect();
        assert_eq!(order, ["u2", "u1", "u3"]);
        assert!(r.users[0].days.is_empty());
        assert_eq!(r.users[0].total, UserTotal::default());
    }

    #[test]
    fn teams_total_their_members_in_the_report() {
        let iv = |h: u64| {
            vec![Interval {
                from: ms("2026-11-03T12:00:00Z"),
                to: Some(ms("2026-11-03T12:00:00Z") + h * HOUR),
                reason: None,
            }]
        };
        let users = vec![
            user("u1", "Ana", &["t1", "t2"], iv(1)),
            user("u2", "Bia", &["t1"], iv(2)),
            user("u3", "Caio", &["t2"], iv(4)),
        ];
        let teams = [
            team("t2", "Support", &["u1", "u3", "gone"]),
            team("t1", "Sales", &["u1", "u2"]),
            team("t3", "Empty", &[]),
        ];
        let r = attendance(
            "UTC",
            &sp_span(),
            users,
            &teams,
            ms("2026-11-05T12:00:00Z"),
            false,
        );
        let got: Vec<(&str, u32, u64, u32)> = r
            .teams
            .iter()
            .map(|t| (t.id.as_str(), t.members, t.online_ms, t.periods))
            .collect();
        assert_eq!(
            got,
            [
                ("t3", 0, 0, 0),
                ("t1", 2, 3 * HOUR, 2),
                ("t2", 3, 5 * HOUR, 2)
            ]
        );
    }

    #[test]
    fn csv_starts_with_the_bom_and_reads_back_to_the_same_figures() {
        let sp = tz("America/Sao_Paulo");
        let users = vec![
            user(
                "u1",
                "Silva; \"Ana\"\nMaria",
                &["t1"],
                vec![
                    closed("2026-11-03T09:00:00-03:00", "2026-11-03T12:00:30.999-03:00"),
                    closed("2026-11-03T13:15:00-03:00", "2026-11-04T01:00:00-03:00"),
                ],
            ),
            user(
                "=HYPERLINK(\"x\")",
                "=1+1",
                &["t1"],
                vec![closed(
                    "2026-11-04T08:00:00-03:00",
                    "2026-11-04T08:01:00-03:00",
                )],
            ),
            user("u3", "+55 11", &[], vec![]),
            user("u4", "-x", &[], vec![]),
            user("u5", "@SUM(A1)", &[], vec![]),
        ];
        let teams = [team("t1", "=Vendas;SP", &["u1", "=HYPERLINK(\"x\")"])];
        let r = attendance(
            "America/Sao_Paulo",
            &sp_span(),
            users,
            &teams,
            ms("2026-11-05T12:00:00Z"),
            false,
        );
        let bytes = to_csv(&r, &sp);
        assert!(bytes.starts_with(b"\xEF\xBB\xBFuser;name;date;time_online;first_online;last_offline;periods;longest_gap\r\n"));

        let mut rd = csv::ReaderBuilder::new()
            .delimiter(b';')
            .has_headers(true)
            .from_reader(&bytes[3..]);
        let rows: Vec<Vec<String>> = rd
            .records()
            .map(|r| r.unwrap().iter().map(str::to_string).collect())
            .collect();
        let row = |cells: &[&str]| cells.iter().map(|c| c.to_string()).collect::<Vec<_>>();
        assert_eq!(
            rows,
            [
                row(&["u3", "'+55 11", "total", "0:00:00", "", "", "0", "0:00:00"]),
                row(&["u4", "'-x", "total", "0:00:00", "", "", "0", "0:00:00"]),
                row(&[
                    "'=HYPERLINK(\"x\")",
                    "'=1+1",
                    "2026-11-04",
                    "0:01:00",
                    "08:00:00",
                    "08:01:00",
                    "1",
                    "0:00:00"
                ]),
                row(&[
                    "'=HYPERLINK(\"x\")",
                    "'=1+1",
                    "total",
                    "0:01:00",
                    "",
                    "",
                    "1",
                    "0:00:00"
                ]),
                row(&[
                    "u5",
                    "'@SUM(A1)",
                    "total",
                    "0:00:00",
                    "",
                    "",
                    "0",
                    "0:00:00"
                ]),
                row(&[
                    "u1",
                    "Silva; \"Ana\"\nMaria",
                    "2026-11-03",
                    "13:45:30",
                    "09:00:00",
                    "24:00:00",
                    "2",
                    "1:14:29"
                ]),
                row(&[
                    "u1",
                    "Silva; \"Ana\"\nMaria",
                    "2026-11-04",
                    "1:00:00",
                    "00:00:00",
                    "01:00:00",
                    "1",
                    "0:00:00"
                ]),
                row(&[
                    "u1",
                    "Silva; \"Ana\"\nMaria",
                    "total",
                    "14:45:30",
                    "",
                    "",
                    "2",
                    "1:14:29"
                ]),
                row(&[
                    "team:t1",
                    "'=Vendas;SP",
                    "total",
                    "14:46:30",
                    "",
                    "",
                    "3",
                    ""
                ]),
            ]
        );
        // The figures are the JSON's, to the second.
        let u1 = r.users.iter().find(|u| u.id == "u1").unwrap();
        assert_eq!(u1.days[0].online_ms / 1000, 13 * 3600 + 45 * 60 + 30);
        assert_eq!(u1.total.online_ms, 14 * HOUR + 45 * MIN + 30_999);
    }

    #[test]
    fn csv_cells_are_written_digit_by_digit() {
        let mut cell = String::new();
        duration(&mut cell, 400 * HOUR + 5 * MIN + 9_999);
        assert_eq!(cell, "400:05:09");
        cell.clear();
        duration(&mut cell, 999);
        assert_eq!(cell, "0:00:00");
        cell.clear();
        number(&mut cell, u64::MAX);
        assert_eq!(cell, u64::MAX.to_string());
        cell.clear();
        date_cell(&mut cell, jiff::civil::date(1970, 1, 9));
        assert_eq!(cell, "1970-01-09");
    }

    proptest! {
        #[test]
        fn a_users_days_add_up_to_their_intervals_clipped_to_the_span(
            (intervals, now) in arb_intervals("2026-10-31T00:00:00Z", 20 * HOUR, 40 * HOUR, 16),
            zone in prop::sample::select(vec!["UTC", "America/Sao_Paulo", "America/New_York", "Asia/Kathmandu"]),
            from_h in 0u64..48,
            to_h in 1u64..240,
        ) {
            let tz = tz(zone);
            let start = ms("2026-11-01T00:00:00Z") + from_h * HOUR;
            let from = Timestamp::from_millisecond(start as i64).unwrap().to_string();
            let to = Timestamp::from_millisecond((start + to_h * HOUR) as i64).unwrap().to_string();
            let span = range::parse(Some(&from), Some(&to), &tz, now.max(start), 366).unwrap();
            let expected: u64 = intervals
                .iter()
                .map(|iv| iv.to.unwrap_or(now).min(span.to_ms).saturating_sub(iv.from.max(span.from_ms)))
                .sum();
            let r = attendance(zone, &span, vec![ReportUser { id: "u".into(), name: "U".into(), teams: vec![], intervals }], &[], now, true);
            let u = &r.users[0];
            prop_assert_eq!(u.days.iter().map(|d| d.online_ms).sum::<u64>(), expected);
            prop_assert_eq!(u.total.online_ms, expected);
            for d in &u.days {
                let pieces = d.intervals.as_ref().unwrap();
                prop_assert_eq!(pieces.len() as u32, d.periods);
                prop_assert_eq!(d.first_online, pieces[0].0);
                prop_assert!(d.periods > 0 && d.online_ms > 0);
                let gaps = pieces.windows(2).map(|w| w[1].0 - w[0].1).max().unwrap_or(0);
                prop_assert_eq!(d.longest_gap_ms, gaps);
            }
            // Every day's CSV time online is its online_ms in whole seconds.
            let bytes = to_csv(&r, &tz);
            let mut rd = csv::ReaderBuilder::new().delimiter(b';').from_reader(&bytes[3..]);
            let seconds: Vec<u64> = rd
                .records()
                .map(|rec| {
                    let rec = rec.unwrap();
                    let parts: Vec<u64> = rec[3].split(':').map(|p| p.parse().unwrap()).collect();
                    parts[0] * 3600 + parts[1] * 60 + parts[2]
                })
                .collect();
            let mut want: Vec<u64> = u.days.iter().map(|d| d.online_ms / 1000).collect();
            want.push(u.total.online_ms / 1000);
            prop_assert_eq!(seconds, want);
        }
    }
}
