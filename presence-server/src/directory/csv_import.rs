//! The CSV import of SPEC §3: `;`-separated, UTF-8 with or without BOM, a
//! header naming the columns in any order, every value kept as text; an
//! optional `teams` column sets each user's memberships
//! (`support:member|sales:supervisor`).

use std::collections::{HashMap, HashSet};

use presence_protocol::admin::{RowError, UserPut};
use presence_protocol::{MembershipRole, Profile};

use crate::directory::{ops, DirectoryError};
use crate::directory::{TenantDir, Write};
use presence_protocol::UserState;

/// The user's fields first (`id`, `name`, then the optional ones), then
/// `teams`, which is not a field of the user record.
const COLUMNS: [&str; 9] = [
    "id",
    "name",
    "nickname",
    "email",
    "phone",
    "profile",
    "available",
    "away_message",
    "teams",
];

/// One data row: its line in the file (the header is line 1), the user id,
/// the fields it sets and, when the file has a `teams` column, every team
/// the user is to be in (memberships not listed are removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub line: u64,
    pub id: String,
    pub body: UserPut,
    pub teams: Option<Vec<(String, MembershipRole)>>,
}

/// A `teams` cell: `team[:role]` separated by `|`, role `member` (the
/// default), `supervisor` or `both`. The role is what follows the last
/// `:`, so a team id holding a `:` is written with its role.
fn parse_teams(cell: &str) -> Result<Vec<(String, MembershipRole)>, String> {
    let mut out: Vec<(String, MembershipRole)> = Vec::new();
    for part in cell.split('|').map(str::trim).filter(|p| !p.is_empty()) {
        let (team, role) = match part.rsplit_once(':') {
            None => (part, MembershipRole::Member),
            Some((team, role)) => {
                let role = match role.trim().to_ascii_lowercase().as_str() {
                    "member" => MembershipRole::Member,
                    "supervisor" => MembershipRole::Supervisor,
                    "both" => MembershipRole::Both,
                    _ => {
                        return Err(format!(
                            "{part:?}: expected member, supervisor or both after ':'"
                        ))
                    }
                };
                (team.trim(), role)
            }
        };
        if !crate::directory::valid_id(team) {
            return Err(format!("{team:?} is not a team id"));
        }
        if out.iter().any(|(t, _)| t == team) {
            return Err(format!("team {team:?} is listed twice"));
        }
        out.push((team.to_owned(), role));
    }
    Ok(out)
}

fn err(line: u64, column: Option<&str>, reason: impl Into<String>) -> RowError {
    RowError {
        row: line,
        column: column.map(str::to_owned),
        reason: reason.into(),
    }
}

/// Line numbers as an editor shows them: `\n`, `\r\n` and a lone `\r` each
/// end a line, as they end a record.
///
/// Not the csv crate's `Position::line`: that counts only `\n`, where the
/// previous record ended, before the blank lines and the `\n` of a `\r\n`
/// that precede the record, so every row of a CRLF file (Excel's export)
/// was reported one line early.
struct Lines<'a> {
    data: &'a [u8],
    /// Bytes before `at` are counted: `line` is the line `at` is on.
    at: usize,
    line: u64,
}

impl Lines<'_> {
    /// The line of the record the csv reader places at `byte`: that of its
    /// first byte that does not end a line. Records come in order, so each
    /// byte is counted once.
    fn of(&mut self, byte: u64) -> u64 {
        let mut start = usize::try_from(byte).map_or(self.data.len(), |b| b.min(self.data.len()));
        while matches!(self.data.get(start), Some(b'\r' | b'\n')) {
            start += 1;
        }
        if start < self.at {
            (self.at, self.line) = (0, 1);
        }
        let ends = self.data[self.at..start]
            .iter()
            .enumerate()
            .filter(|&(i, &b)| {
                b == b'\n' || (b == b'\r' && self.data.get(self.at + i + 1) != Some(&b'\n'))
            })
            .count();
        self.line += ends as u64;
        self.at = start;
        self.line
    }
}

/// Parses the file; every problem is reported with its line and column.
pub fn parse(data: &[u8]) -> Result<Vec<Row>, Vec<RowError>> {
    let data = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data);
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(b';')
        .has_headers(true)
        .from_reader(data);
    let header = match rdr.byte_headers() {
        Ok(h) => h.clone(),
        Err(e) => return Err(vec![err(1, None, format!("unreadable header: {e}"))]),
    };
    let mut errors = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    let names: Vec<String> = header
        .iter()
        .map(|h| String::from_utf8_lossy(h).trim().to_ascii_lowercase())
        .collect();
    for (i, name) in names.iter().enumerate() {
        match COLUMNS.iter().find(|c| **c == name) {
            None => errors.push(err(1, Some(name), "unknown column")),
            Some(c) if index.insert(c, i).is_some() => {
                errors.push(err(1, Some(name), "duplicate column"))
            }
            Some(_) => {}
        }
    }
    for required in ["id", "name"] {
        if !index.contains_key(required) {
            errors.push(err(1, Some(required), "required column missing"));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut rows = Vec::new();
    let mut seen = HashSet::new();
    let mut lines = Lines {
        data,
        at: 0,
        line: 1,
    };
    for rec in rdr.byte_records() {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| lines.of(p.byte()));
                errors.push(err(line, None, e.to_string()));
                continue;
            }
        };
        let line = rec.position().map_or(0, |p| lines.of(p.byte()));
        if rec.iter().all(|f| f.is_empty()) {
            continue;
        }
        let mut text = HashMap::new();
        let mut ok = true;
        for (col, &i) in &index {
            match std::str::from_utf8(rec.get(i).unwrap_or_default()) {
                Ok(v) => {
                    text.insert(*col, v.to_owned());
                }
                Err(_) => {
                    errors.push(err(line, Some(col), "not valid UTF-8"));
                    ok = false;
                }
            }
        }
        if !ok {
            continue;
        }
        let id = text.remove("id").unwrap_or_default();
        if !seen.insert(id.clone()) {
            errors.push(err(
                line,
                Some("id"),
                format!("id {id:?} appears twice in the file"),
            ));
            continue;
        }
        let profile = match text.remove("profile").as_deref().map(str::trim) {
            None | Some("") => None,
            Some(p) => match p.to_ascii_lowercase().as_str() {
                "admin" => Some(Profile::Admin),
                "standard" => Some(Profile::Standard),
                "restricted" => Some(Profile::Restricted),
                _ => {
                    errors.push(err(
                        line,
                        Some("profile"),
                        "expected admin, standard or restricted",
                    ));
                    continue;
                }
            },
        };
        let available = match text.remove("available").as_deref().map(str::trim) {
            None | Some("") => None,
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "sim" => Some(true),
                "false" | "0" | "no" | "não" | "nao" => Some(false),
                _ => {
                    errors.push(err(line, Some("available"), "expected true or false"));
                    continue;
                }
            },
        };
        let teams = match text.remove("teams").as_deref().map(parse_teams) {
            None => None,
            Some(Ok(t)) => Some(t),
            Some(Err(reason)) => {
                errors.push(err(line, Some("teams"), reason));
                continue;
            }
        };
        let body = UserPut {
            name: text.remove("name"),
            nickname: text.remove("nickname"),
            email: text.remove("email"),
            phone: text.remove("phone"),
            profile,
            available,
            away_message: text.remove("away_message"),
        };
        rows.push(Row {
            line,
            id,
            body,
            teams,
        });
    }
    if errors.is_empty() {
        Ok(rows)
    } else {
        Err(errors)
    }
}

/// What importing `rows` into `dir` would write, or every row that is wrong.
pub struct Plan {
    pub writes: Vec<Write>,
    pub created: u64,
    pub updated: u64,
    /// Every row that cannot be imported, in file order: rows with a bad
    /// value and rows that would create a user beyond the plan's limit.
    pub errors: Vec<RowError>,
    /// How many of `errors` are bad values (the rest are over the limit):
    /// a file with any is bad input (400); one that is only too big for
    /// the plan is a conflict with the tenant (409, SPEC §6).
    pub invalid: usize,
    /// Active users the import would leave, when that exceeds the plan's
    /// `user_limit`.
    pub over_limit: Option<u64>,
}

pub fn plan(dir: &TenantDir, rows: &[Row]) -> Plan {
    let mut p = Plan {
        writes: Vec::new(),
        created: 0,
        updated: 0,
        errors: Vec::new(),
        invalid: 0,
        over_limit: None,
    };
    let limit = dir.tenant.user_limit;
    let mut active = dir.count_in_state(UserState::Active);
    for row in rows {
        match ops::merged_user(dir, &row.id, &row.body) {
            Ok(user) => {
                if dir.users.contains_key(&row.id) {
                    p.updated += 1;
                } else {
                    p.created += 1;
                    active += 1;
                    if active > limit {
                        p.errors.push(err(
                            row.line,
                            None,
                            format!("the plan allows {limit} active users"),
                        ));
                    }
                }
                let active = user.state == UserState::Active;
                p.writes.push(Write::User {
                    tenant: dir.tenant.id.clone(),
                    user,
                });
                if let Some(teams) = &row.teams {
                    match memberships(dir, &row.id, active, teams) {
                        Ok(ws) => p.writes.extend(ws),
                        Err(reason) => {
                            p.invalid += 1;
                            p.errors.push(err(row.line, Some("teams"), reason));
                        }
                    }
                }
            }
            Err(DirectoryError::Invalid { field, reason }) => {
                p.invalid += 1;
                p.errors.push(err(row.line, Some(&field), reason));
            }
            Err(other) => {
                p.invalid += 1;
                p.errors.push(err(row.line, None, other.to_string()));
            }
        }
    }
    p.over_limit = (active > limit).then_some(active);
    p
}

/// The writes that leave `uid` in exactly `teams`: memberships not listed
/// go, listed ones are added or get their new role; teams must exist and
/// an inactive or deleted user can be in none.
fn memberships(
    dir: &TenantDir,
    uid: &str,
    active: bool,
    teams: &[(String, MembershipRole)],
) -> Result<Vec<Write>, String> {
    if let Some((t, _)) = teams.iter().find(|(t, _)| !dir.teams.contains_key(t)) {
        return Err(format!("unknown team {t:?}"));
    }
    if !active && !teams.is_empty() {
        return Err(format!("user {uid:?} is not active"));
    }
    let tenant = &dir.tenant.id;
    let mut out: Vec<Write> = dir
        .teams_of(uid)
        .filter(|(t, _)| !teams.iter().any(|(l, _)| l == *t))
        .map(|(t, _)| Write::DeleteMember {
            tenant: tenant.clone(),
            team: t.clone(),
            user: uid.to_owned(),
        })
        .collect();
    for (team, role) in teams {
        if dir.role_in(uid, team) != Some(*role) {
            out.push(Write::Member {
                tenant: tenant.clone(),
                team: team.clone(),
                user: uid.to_owned(),
                role: *role,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_text_quotes_bom_and_any_column_order() {
        let csv = "\u{feff}name;id;phone;available\n\"Silva; Ana\";007;0119;false\nBia;8;;\n";
        let rows = parse(csv.as_bytes()).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].id, "007");
        assert_eq!(rows[0].line, 2);
        assert_eq!(rows[0].body.name.as_deref(), Some("Silva; Ana"));
        assert_eq!(rows[0].body.phone.as_deref(), Some("0119"));
        assert_eq!(rows[0].body.available, Some(false));
        assert_eq!(rows[1].body.available, None);
    }

    #[test]
    fn reports_rows_and_columns() {
        let csv = "id;name;profile\n1;A;boss\n1;B;admin\n";
        let errs = parse(csv.as_bytes()).unwrap_err();
        assert_eq!(errs.len(), 2);
        assert_eq!(
            (errs[0].row, errs[0].column.as_deref()),
            (2, Some("profile"))
        );
        assert_eq!((errs[1].row, errs[1].column.as_deref()), (3, Some("id")));
        let errs = parse(b"name;colour\nA;red\n").unwrap_err();
        assert!(errs.iter().any(|e| e.column.as_deref() == Some("colour")));
        assert!(errs.iter().any(|e| e.column.as_deref() == Some("id")));
    }

    #[test]
    fn a_plan_beyond_the_user_limit_names_its_rows_apart_from_bad_values() {
        use crate::directory::TenantRecord;
        let dir = TenantDir::new(TenantRecord {
            id: "t".into(),
            user_limit: 1,
            event_retention_s: None,
            time_zone: None,
            history_retention_days: None,
        });
        let rows = parse(b"id;name;email\na;A;a@x\nb;B;b@x\nc;C;c@x\n").unwrap();
        let p = plan(&dir, &rows);
        assert_eq!((p.invalid, p.over_limit), (0, Some(3)));
        assert_eq!(p.errors.iter().map(|e| e.row).collect::<Vec<_>>(), [3, 4]);
        let rows = parse(b"id;name;email\na;A;a@x\nb;B;not-an-email\n").unwrap();
        let p = plan(&dir, &rows);
        assert_eq!((p.invalid, p.over_limit), (1, None));
    }

    #[test]
    fn a_teams_cell_lists_every_membership_and_is_checked() {
        let rows =
            parse(b"id;name;teams\n1;A;support:member| sales:Supervisor\n2;B;\n3;C;x:y:both|crm\n")
                .unwrap();
        assert_eq!(
            rows[0].teams,
            Some(vec![
                ("support".into(), MembershipRole::Member),
                ("sales".into(), MembershipRole::Supervisor)
            ])
        );
        assert_eq!(rows[1].teams, Some(vec![]));
        assert_eq!(
            rows[2].teams,
            Some(vec![
                ("x:y".into(), MembershipRole::Both),
                ("crm".into(), MembershipRole::Member)
            ])
        );
        assert_eq!(parse(b"id;name\n1;A\n").unwrap()[0].teams, None);
        for cell in ["support:boss", "a|a:both", "a/b"] {
            let errs = parse(format!("id;name;teams\n1;A;{cell}\n").as_bytes()).unwrap_err();
            assert_eq!(
                (errs[0].row, errs[0].column.as_deref()),
                (2, Some("teams")),
                "{cell}"
            );
        }
    }

    #[test]
    fn a_plan_sets_the_listed_teams_exactly() {
        use crate::directory::{TeamRecord, TenantRecord, UserRecord};
        let t = "t".to_string();
        let mut dir = TenantDir::new(TenantRecord {
            id: t.clone(),
            user_limit: 10,
            event_retention_s: None,
            time_zone: None,
            history_retention_days: None,
        });
        for team in ["a", "b", "c"] {
            dir.apply(&Write::Team {
                tenant: t.clone(),
                team: TeamRecord {
                    id: team.into(),
                    name: team.into(),
                    crm: false,
                    active: true,
                },
            });
        }
        let rows = parse(b"id;name;email\nu;U;u@x\nv;V;v@x\n").unwrap();
        for w in plan(&dir, &rows).writes {
            dir.apply(&w);
        }
        for (team, user) in [("a", "u"), ("b", "u")] {
            dir.apply(&Write::Member {
                tenant: t.clone(),
                team: team.into(),
                user: user.into(),
                role: MembershipRole::Member,
            });
        }
        let rows = parse(b"id;name;teams\nu;U;b:both|c\nv;V;\n").unwrap();
        let p = plan(&dir, &rows);
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        for w in p.writes {
            dir.apply(&w);
        }
        let teams = |u: &str| {
            dir.memberships_of(u)
                .into_iter()
                .map(|m| (m.id, m.role))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            teams("u"),
            [
                ("b".to_string(), MembershipRole::Both),
                ("c".to_string(), MembershipRole::Member)
            ]
        );
        assert_eq!(teams("v"), []);
        let rows = parse(b"id;name;teams\nu;U;zzz\n").unwrap();
        let p = plan(&dir, &rows);
        assert_eq!(
            p.errors
                .iter()
                .map(|e| (e.row, e.column.as_deref()))
                .collect::<Vec<_>>(),
            [(2, Some("teams"))]
        );
        assert_eq!(p.invalid, 1);
        let gone = UserRecord {
            state: presence_protocol::UserState::Inactive,
            ..dir.users["v"].clone()
        };
        dir.apply(&Write::User {
            tenant: t.clone(),
            user: gone,
        });
        let p = plan(&dir, &parse(b"id;name;teams\nv;V;a\n").unwrap());
        assert_eq!(p.errors[0].column.as_deref(), Some("teams"));
    }

    #[test]
    fn crlf_rows_are_numbered_like_lf_rows() {
        for eol in ["\n", "\r\n", "\r"] {
            let csv = format!("id;name{eol}1;A{eol}{eol}2;\"B{eol}B\"{eol}3;C{eol}");
            let rows = parse(csv.as_bytes()).unwrap();
            let lines: Vec<u64> = rows.iter().map(|r| r.line).collect();
            assert_eq!(lines, [2, 4, 6], "{eol:?}");
            let csv = format!("id;name{eol}1;A{eol}{eol}2{eol}");
            let errs = parse(csv.as_bytes()).unwrap_err();
            assert_eq!(errs[0].row, 4, "{eol:?}: {errs:?}");
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// Every column of the user but `id` and `name` (`teams`, last,
        /// has its own tests).
        const OPTIONAL: &[&str] = COLUMNS.split_at(2).1.split_at(6).0;
        const PROFILES: [(&str, Option<Profile>); 4] = [
            ("", None),
            ("admin", Some(Profile::Admin)),
            (" Standard", Some(Profile::Standard)),
            ("RESTRICTED", Some(Profile::Restricted)),
        ];
        const AVAILABLE: [(&str, Option<bool>); 5] = [
            ("", None),
            ("true", Some(true)),
            ("0", Some(false)),
            ("sim", Some(true)),
            ("Não", Some(false)),
        ];

        /// Text as an ERP exports it: numbers with leading zeros, the
        /// delimiter, quotes and line breaks, any printable Unicode.
        fn text() -> impl Strategy<Value = String> {
            prop_oneof!["0[0-9]{0,5}", "[ ;\"\r\na-zA-Z0-9]{0,8}", "\\PC{0,8}",]
        }

        /// A header: `id`, `name` and any of the other columns, in any order.
        fn columns() -> impl Strategy<Value = Vec<&'static str>> {
            proptest::sample::subsequence(OPTIONAL.to_vec(), 0..=OPTIONAL.len()).prop_flat_map(
                |mut c| {
                    c.extend(["id", "name"]);
                    Just(c).prop_shuffle()
                },
            )
        }

        /// One row: a text per text column, a name that is never empty,
        /// and an index into `PROFILES` and `AVAILABLE`.
        type Fields = ([String; 4], String, usize, usize);

        fn fields() -> impl Strategy<Value = Fields> {
            (
                [text(), text(), text(), text()],
                "[^;]\\PC{0,8}",
                0..PROFILES.len(),
                0..AVAILABLE.len(),
            )
        }

        fn value<'a>(column: &str, id: &'a str, f: &'a Fields) -> &'a str {
            let (texts, name, p, a) = f;
            match column {
                "id" => id,
                "name" => name,
                "nickname" => &texts[0],
                "email" => &texts[1],
                "phone" => &texts[2],
                "away_message" => &texts[3],
                "profile" => PROFILES[*p].0,
                "available" => AVAILABLE[*a].0,
                _ => unreachable!("columns() names only known columns"),
            }
        }

        /// `\n`, `\r\n` and a lone `\r` in a value (quoted, so never at a
        /// line's end in the file).
        fn line_ends(v: &str) -> u64 {
            (v.matches('\n').count() + v.matches('\r').count() - v.matches("\r\n").count()) as u64
        }

        proptest! {
            #[test]
            fn any_table_written_by_the_csv_crate_parses_back_as_text(
                columns in columns(),
                table in proptest::collection::btree_map(text(), fields(), 0..8),
                bom in any::<bool>(),
                crlf in any::<bool>(),
            ) {
                let mut w = csv::WriterBuilder::new()
                    .delimiter(b';')
                    .terminator(if crlf { csv::Terminator::CRLF } else { csv::Terminator::Any(b'\n') })
                    .from_writer(if bom { b"\xEF\xBB\xBF".to_vec() } else { Vec::new() });
                w.write_record(&columns).unwrap();
                for (id, f) in &table {
                    w.write_record(columns.iter().map(|c| value(c, id, f))).unwrap();
                }
                let data = w.into_inner().unwrap();
                let rows = parse(&data).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
                prop_assert_eq!(rows.len(), table.len());
                let has = |c: &str| columns.contains(&c);
                let text_of = |c: &str, id: &str, f: &Fields| has(c).then(|| value(c, id, f).to_owned());
                let mut line = 2;
                for (row, (id, f)) in rows.iter().zip(&table) {
                    prop_assert_eq!(&row.id, id);
                    prop_assert_eq!(row.line, line, "line of {:?}", id);
                    let expected = UserPut {
                        name: Some(f.1.clone()),
                        nickname: text_of("nickname", id, f),
                        email: text_of("email", id, f),
                        phone: text_of("phone", id, f),
                        profile: if has("profile") { PROFILES[f.2].1 } else { None },
                        available: if has("available") { AVAILABLE[f.3].1 } else { None },
                        away_message: text_of("away_message", id, f),
                    };
                    prop_assert_eq!(&row.body, &expected);
                    line += 1 + columns
                        .iter()
                        .map(|c| line_ends(value(c, id, f)))
                        .sum::<u64>();
                }
            }
        }
    }
}
