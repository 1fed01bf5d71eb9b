//! The bodies of the `cargo fuzz` targets in `presence-server/fuzz/`, one
//! `pub fn <target>(data: &[u8])` each, with the properties it checks.
//!
//! Public (hidden from the docs) because two harnesses run the same code: the
//! fuzz crate under libFuzzer on nightly, and `tests/fuzz_corpus.rs`, which
//! replays every committed corpus and regression input on stable in
//! `cargo test`, so an input the fuzzer once found stays a test without the
//! nightly toolchain. A property that does not hold panics; that is what both
//! harnesses report.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey};
use presence_protocol::admin::UserPut;
use presence_protocol::{
    ClientMessage, ErrorCode, Profile, ReqId, Roster, ServerMessage, UserState,
};
use serde_json::Value;

use crate::auth::{Claims, Verifier, LEEWAY_SECS};
use crate::directory::csv_import::{self, Row};
use crate::directory::{TenantDir, TenantRecord, UserRecord, Write};

/// The client frame decoder as `net/session.rs` runs it on a text frame: UTF-8
/// first (the codec refuses a text frame that is not), then `ClientMessage`
/// from the JSON text.
///
/// A frame that parses re-serialises and parses back to the same message,
/// the `Value` path (what the session's `bad_frame` uses) agrees with it,
/// and its roster name round-trips. A frame that does not parse goes
/// through the session's own `bad_frame`, and the `error` reply built from
/// what it returns round-trips.
pub fn client_message(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match serde_json::from_str::<ClientMessage>(text) {
        Ok(msg) => {
            let json = serde_json::to_string(&msg).expect("a client message serialises");
            let again: ClientMessage = serde_json::from_str(&json)
                .unwrap_or_else(|e| panic!("{json} does not parse back: {e}"));
            assert_eq!(again, msg, "{json} parses back to another message");
            let value: Value = serde_json::from_str(text).expect("a frame that parsed is JSON");
            assert_eq!(
                serde_json::from_value::<ClientMessage>(value).ok().as_ref(),
                Some(&msg),
                "from_value disagrees with from_str on {text:?}"
            );
            match &msg {
                ClientMessage::Subscribe { id, roster }
                | ClientMessage::Unsubscribe { id, roster } => {
                    assert_eq!(msg.req_id(), Some(id));
                    let name = roster.to_string();
                    assert_eq!(name.parse::<Roster>().as_ref(), Ok(roster), "{name}");
                }
                _ => assert_eq!(msg.req_id(), None),
            }
        }
        Err(_) => {
            // What the session answers a frame it cannot parse.
            let (id, message) = crate::net::session::bad_frame(text);
            if let Some(id) = &id {
                let json = serde_json::to_string(id).expect("a request id serialises");
                assert_eq!(serde_json::from_str::<ReqId>(&json).ok().as_ref(), Some(id));
            }
            let reply = ServerMessage::Error {
                id,
                code: ErrorCode::BadRequest,
                message,
                roster: None,
            };
            let json = reply.to_json();
            let back: ServerMessage = serde_json::from_str(&json)
                .unwrap_or_else(|e| panic!("error reply {json} does not parse back: {e}"));
            assert_eq!(back, reply);
        }
    }
}

/// The tenant a CSV import is planned against: room for 4 active users,
/// 2 active and 1 inactive already, so a file can create, update, reach the
/// limit and update a user who is not active.
fn seeded_dir() -> TenantDir {
    let tenant = "acme".to_owned();
    let mut dir = TenantDir::new(TenantRecord {
        id: tenant.clone(),
        user_limit: 4,
        event_retention_s: None,
        time_zone: None,
        history_retention_days: None,
    });
    for (id, state) in [
        ("0042", UserState::Active),
        ("ann", UserState::Active),
        ("old", UserState::Inactive),
    ] {
        dir.apply(&Write::User {
            tenant: tenant.clone(),
            user: UserRecord {
                id: id.into(),
                name: format!("{id} name"),
                nickname: String::new(),
                email: format!("{id}@x.test"),
                phone: "0119".into(),
                profile: Profile::Standard,
                available: true,
                away_message: String::new(),
                state,
            },
        });
    }
    // A team for the `teams` column to name; ann is in it.
    dir.apply(&Write::Team {
        tenant: tenant.clone(),
        team: crate::directory::TeamRecord {
            id: "sales".into(),
            name: "Sales".into(),
            crm: true,
            active: true,
        },
    });
    dir.apply(&Write::Member {
        tenant,
        team: "sales".into(),
        user: "ann".into(),
        role: presence_protocol::MembershipRole::Member,
    });
    dir
}

/// The text columns of a row, in the order `write_back` writes them.
fn text_fields(b: &UserPut) -> [(&'static str, Option<&str>); 5] {
    [
        ("name", b.name.as_deref()),
        ("nickname", b.nickname.as_deref()),
        ("email", b.email.as_deref()),
        ("phone", b.phone.as_deref()),
        ("away_message", b.away_message.as_deref()),
    ]
}

fn record_field<'a>(u: &'a UserRecord, column: &str) -> &'a str {
    match column {
        "name" => &u.name,
        "nickname" => &u.nickname,
        "email" => &u.email,
        "phone" => &u.phone,
        "away_message" => &u.away_message,
        _ => unreachable!("text_fields names only these columns"),
    }
}

fn profile_text(p: Option<Profile>) -> &'static str {
    match p {
        None => "",
        Some(Profile::Admin) => "admin",
        Some(Profile::Standard) => "standard",
        Some(Profile::Restricted) => "restricted",
    }
}

fn available_text(a: Option<bool>) -> &'static str {
    match a {
        None => "",
        Some(true) => "true",
        Some(false) => "false",
    }
}

/// Parsed rows written back by the csv crate (`;`, quoting where needed),
/// with the text columns the file had (those of `first`), plus `profile`
/// and `available`.
fn write_back(first: &Row, rows: &[Row]) -> Vec<u8> {
    let mut w = csv::WriterBuilder::new()
        .delimiter(b';')
        .from_writer(Vec::new());
    let present: Vec<&str> = text_fields(&first.body)
        .iter()
        .filter(|(_, v)| v.is_some())
        .map(|(c, _)| *c)
        .collect();
    let mut header = vec!["id"];
    header.extend(&present);
    header.extend(["profile", "available"]);
    // Writing into a Vec cannot fail.
    w.write_record(&header).expect("writes to a Vec");
    for row in rows {
        let mut rec = vec![row.id.as_str()];
        rec.extend(
            text_fields(&row.body)
                .iter()
                .filter(|(c, _)| present.contains(c))
                .map(|(_, v)| v.unwrap_or_default()),
        );
        rec.extend([
            profile_text(row.body.profile),
            available_text(row.body.available),
        ]);
        w.write_record(&rec).expect("writes to a Vec");
    }
    w.into_inner().expect("a Vec writer flushes")
}

/// Every value is kept as text: written back by the csv crate, the rows
/// parse to the same ids and values (a row whose written fields are all
/// empty is a blank line and is skipped).
fn written_back_parses_to_the_same_values(first: &Row, rows: &[Row]) {
    let written = write_back(first, rows);

    let again = csv_import::parse(&written).unwrap_or_else(|e| {
        panic!(
            "{:?} written back is refused: {e:?}",
            String::from_utf8_lossy(&written)
        )
    });
    let expected: Vec<_> = rows
        .iter()
        .filter(|r| {
            // A row whose written fields are all empty is a blank line.
            !r.id.is_empty()
                || r.body.profile.is_some()
                || r.body.available.is_some()
                || text_fields(&r.body)
                    .iter()
                    .any(|(_, v)| v.is_some_and(|v| !v.is_empty()))
        })
        .map(|r| (&r.id, &r.body))
        .collect();
    let got: Vec<_> = again.iter().map(|r| (&r.id, &r.body)).collect();
    assert_eq!(got, expected, "values changed when written back");
}

/// The CSV import: `csv_import::parse`, then `plan` against a seeded tenant.
///
/// Every error names a line of the file; rows come in file order after the
/// header, with distinct ids and the same columns; every value is kept as
/// text (written back by the csv crate, the rows parse to the same values);
/// a plan writes one user per valid row, carrying each value verbatim,
/// counts creations and updates as the directory says, and a plan without
/// errors stays within the tenant's user limit.
pub fn csv_import(data: &[u8]) {
    // `\n`, `\r\n` and a lone `\r` end a line, as they end a record.
    let line_ends = data
        .iter()
        .enumerate()
        .filter(|&(i, &b)| b == b'\n' || (b == b'\r' && data.get(i + 1) != Some(&b'\n')))
        .count();
    let lines = 1 + line_ends as u64;
    let rows = match csv_import::parse(data) {
        Err(errors) => {
            assert!(!errors.is_empty(), "refused without a reason");
            for e in &errors {
                assert!(
                    (1..=lines).contains(&e.row),
                    "error on line {} of a {lines}-line file: {e:?}",
                    e.row
                );
            }
            return;
        }
        Ok(rows) => rows,
    };
    let mut previous = 1;
    let mut ids = HashSet::new();
    for row in &rows {
        assert!(
            row.line > previous && row.line <= lines,
            "row on line {} after line {previous} of a {lines}-line file",
            row.line
        );
        previous = row.line;
        assert!(ids.insert(row.id.as_str()), "id {:?} twice", row.id);
        let columns = |r: &Row| text_fields(&r.body).map(|(_, v)| v.is_some());
        assert_eq!(columns(row), columns(&rows[0]), "rows with other columns");
    }

    if let Some(first) = rows.first() {
        written_back_parses_to_the_same_values(first, &rows);
    }

    let dir = seeded_dir();
    let plan = csv_import::plan(&dir, &rows);
    let users = plan
        .writes
        .iter()
        .filter(|w| matches!(w, Write::User { .. }))
        .count();
    assert_eq!(plan.created + plan.updated, users as u64);
    assert!(plan.errors.len() <= rows.len(), "more errors than rows");
    let row_lines: HashSet<u64> = rows.iter().map(|r| r.line).collect();
    for e in &plan.errors {
        assert!(
            row_lines.contains(&e.row),
            "plan error on no row's line: {e:?}"
        );
    }
    let by_id: HashMap<&str, &Row> = rows.iter().map(|r| (r.id.as_str(), r)).collect();
    let (mut created, mut updated) = (0, 0);
    for w in &plan.writes {
        let (Write::Member {
            user: uid, team, ..
        }
        | Write::DeleteMember {
            user: uid, team, ..
        }) = w
        else {
            continue;
        };
        let row = by_id
            .get(uid.as_str())
            .unwrap_or_else(|| panic!("a membership of {uid:?}, on no row"));
        assert!(
            row.teams.is_some(),
            "teams of {uid:?} changed without a teams column"
        );
        assert!(
            dir.teams.contains_key(team),
            "a membership of an unknown team {team:?}"
        );
    }
    for w in &plan.writes {
        let Write::User { tenant, user } = w else {
            continue;
        };
        assert_eq!(tenant, &dir.tenant.id);
        let row = by_id
            .get(user.id.as_str())
            .unwrap_or_else(|| panic!("a write for {:?}, on no row", user.id));
        for (column, value) in text_fields(&row.body) {
            if let Some(v) = value {
                assert_eq!(record_field(user, column), v, "{column} not kept verbatim");
            }
        }
        if let Some(p) = row.body.profile {
            assert_eq!(user.profile, p);
        }
        if let Some(a) = row.body.available {
            assert_eq!(user.available, a);
        }
        match dir.users.get(&user.id) {
            Some(old) => {
                updated += 1;
                assert_eq!(user.state, old.state, "an import changed a user's state");
            }
            None => {
                created += 1;
                assert_eq!(user.state, UserState::Active);
            }
        }
    }
    assert_eq!((created, updated), (plan.created, plan.updated));
    if plan.errors.is_empty() {
        assert_eq!(users, rows.len(), "a row without write or error");
        let mut after = dir.clone();
        for w in &plan.writes {
            after.apply(w);
        }
        assert!(after.count_in_state(UserState::Active) <= dir.tenant.user_limit);
    }
}

/// The secret of the HS256 verifier the `token` target checks against.
pub const HS256_SECRET: &[u8] = b"fuzz-hs256-secret";

/// The committed test keys (`fuzz/keys/`, made once with openssl).
pub const RS256_PUBLIC_PEM: &[u8] = include_bytes!("../fuzz/keys/rs256_public.pem");
pub const RS256_PRIVATE_PEM: &[u8] = include_bytes!("../fuzz/keys/rs256_private.pem");
pub const ES256_PUBLIC_PEM: &[u8] = include_bytes!("../fuzz/keys/es256_public.pem");
pub const ES256_PRIVATE_PEM: &[u8] = include_bytes!("../fuzz/keys/es256_private.pem");

/// One configured verifier and the key that signs for it.
struct KeyPair {
    alg: Algorithm,
    verifier: Verifier,
    signer: EncodingKey,
    /// What an attacker knows: the secret (HS256) or the public PEM.
    public: &'static [u8],
}

fn key_pairs() -> &'static [KeyPair; 3] {
    static KEYS: OnceLock<[KeyPair; 3]> = OnceLock::new();
    KEYS.get_or_init(|| {
        [
            KeyPair {
                alg: Algorithm::HS256,
                verifier: Verifier::hs256(HS256_SECRET),
                signer: EncodingKey::from_secret(HS256_SECRET),
                public: HS256_SECRET,
            },
            KeyPair {
                alg: Algorithm::RS256,
                verifier: Verifier::from_public_key_pem(RS256_PUBLIC_PEM)
                    .expect("the committed RSA public key parses"),
                signer: EncodingKey::from_rsa_pem(RS256_PRIVATE_PEM)
                    .expect("the committed RSA private key parses"),
                public: RS256_PUBLIC_PEM,
            },
            KeyPair {
                alg: Algorithm::ES256,
                verifier: Verifier::from_public_key_pem(ES256_PUBLIC_PEM)
                    .expect("the committed EC public key parses"),
                signer: EncodingKey::from_ec_pem(ES256_PRIVATE_PEM)
                    .expect("the committed EC private key parses"),
                public: ES256_PUBLIC_PEM,
            },
        ]
    })
}

/// How a `token` input is read (its first byte, `/ 3 % 4`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenMode {
    /// The rest is the token text (lossy UTF-8, as a JSON string would be).
    Text = 0,
    /// The rest is `header 0xFF payload 0xFF signature`, raw bytes that are
    /// base64url-encoded here.
    Parts = 1,
    /// The rest is `header 0xFF payload`, signed here with the verifier's own
    /// key: the fuzzer reaches the claims and their validation, which a
    /// token with a made-up signature never does.
    Signed = 2,
    /// Like `Signed`, but HS256 with the verifier's public key as the secret
    /// (algorithm confusion): an RS256 or ES256 verifier must refuse it.
    Confused = 3,
}

/// The first byte of a `token` input for this verifier (0 HS256, 1 RS256,
/// 2 ES256) and mode.
pub fn token_selector(verifier: u8, mode: TokenMode) -> u8 {
    mode as u8 * 3 + verifier
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What a correct issuer would sign: a header naming `alg` and an object
/// with the hub's claims only, not expiring within a minute.
fn well_formed(header: &[u8], payload: &[u8], alg: Algorithm, now: u64) -> bool {
    let header_ok =
        serde_json::from_slice::<jsonwebtoken::Header>(header).is_ok_and(|h| h.alg == alg);
    let keys_ok =
        serde_json::from_slice::<serde_json::Map<String, Value>>(payload).is_ok_and(|m| {
            m.keys()
                .all(|k| ["sub", "tid", "exp", "iat"].contains(&k.as_str()))
        });
    let claims_ok = serde_json::from_slice::<Claims>(payload).is_ok_and(|c| c.exp > now + 60);
    header_ok && keys_ok && claims_ok
}

/// The JWT path of `hello` and `refresh`: `auth::Verifier::verify` with an
/// HS256, an RS256 and an ES256 verifier.
///
/// The first byte picks the verifier (`% 3`) and the [`TokenMode`]. A token
/// is accepted only under the verifier's algorithm, before `exp` (+ leeway),
/// with exactly the claims its payload holds; a well-formed token signed
/// with the right key is accepted; one signed HS256 with a public key is not.
pub fn token(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let keys = &key_pairs()[usize::from(selector % 3)];
    let mode = match selector / 3 % 4 {
        0 => TokenMode::Text,
        1 => TokenMode::Parts,
        2 => TokenMode::Signed,
        _ => TokenMode::Confused,
    };
    let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
    let split = |n| {
        let mut parts = rest.splitn(n, |&b| b == 0xFF);
        let mut next = || parts.next().unwrap_or_default();
        [next(), next(), next()]
    };
    let mut signed_parts = None;
    let token = match mode {
        TokenMode::Text => String::from_utf8_lossy(rest).into_owned(),
        TokenMode::Parts => {
            let [header, payload, signature] = split(3);
            format!("{}.{}.{}", b64(header), b64(payload), b64(signature))
        }
        TokenMode::Signed | TokenMode::Confused => {
            let [header, payload, _] = split(2);
            signed_parts = Some((header, payload));
            let confusion;
            let (key, alg) = match mode {
                TokenMode::Signed => (&keys.signer, keys.alg),
                _ => {
                    confusion = EncodingKey::from_secret(keys.public);
                    (&confusion, Algorithm::HS256)
                }
            };
            let message = format!("{}.{}", b64(header), b64(payload));
            // A header that does not name the verifier's algorithm is refused
            // before the signature is read: such an input gets a made-up one,
            // as RSA signing costs ~100 ms under the fuzzer's instrumentation.
            let read = mode == TokenMode::Confused
                || serde_json::from_slice::<jsonwebtoken::Header>(header)
                    .is_ok_and(|h| h.alg == keys.alg);
            let signature = if read {
                jsonwebtoken::crypto::sign(message.as_bytes(), key, alg)
                    .expect("signing with the committed keys does not fail")
            } else {
                "c2ln".to_owned()
            };
            format!("{message}.{signature}")
        }
    };
    let now = now_secs();
    let result = keys.verifier.verify(&token);
    if let Ok(claims) = &result {
        let header = jsonwebtoken::decode_header(&token).expect("an accepted token has a header");
        assert_eq!(header.alg, keys.alg, "accepted under another algorithm");
        assert!(
            claims.exp.saturating_add(LEEWAY_SECS) >= now,
            "accepted after exp: {claims:?}"
        );
        let segments: Vec<&str> = token.split('.').collect();
        assert_eq!(segments.len(), 3, "accepted {token:?}");
        let payload = URL_SAFE_NO_PAD
            .decode(segments[1])
            .expect("an accepted payload is base64url");
        let from_payload: Claims =
            serde_json::from_slice(&payload).expect("an accepted payload holds the claims");
        assert_eq!(&from_payload, claims, "claims other than the payload's");
    }
    match (mode, signed_parts) {
        (TokenMode::Signed, Some((header, payload)))
            if well_formed(header, payload, keys.alg, now) =>
        {
            assert!(
                result.is_ok(),
                "a well-formed token refused: {result:?}, {token}"
            );
        }
        (TokenMode::Confused, _) if keys.alg != Algorithm::HS256 => {
            assert!(result.is_err(), "HS256 signed with the public key accepted");
        }
        _ => {}
    }
}

/// The WebSocket frame decoder (`ws::codec`), on bytes as a client (or an
/// attacker) sends them. The first byte picks the message size limit (so
/// small limits are reached), the second how the rest is cut into reads.
///
/// Any input ends in messages and then at most one typed error; what the
/// decoder reports does not depend on how the bytes were cut into reads; no
/// text message exceeds the limit; nothing is buffered beyond the limit (and
/// 125 bytes of a control frame); once a close frame is decoded, the rest is
/// ignored; and every text message decoded, encoded again as a masked
/// client frame, decodes to itself.
pub fn frame_codec(data: &[u8]) {
    use crate::net::ws::codec::{Decoder, FrameError, Message};

    let [limit_byte, chop_byte, rest @ ..] = data else {
        return;
    };
    let limit = usize::from(*limit_byte) * 64;
    let chop = usize::from(*chop_byte).max(1);

    fn run(
        limit: usize,
        pieces: &mut dyn Iterator<Item = &[u8]>,
    ) -> (Vec<Message>, Option<FrameError>) {
        let mut d = Decoder::new(limit);
        let mut out = Vec::new();
        for mut piece in pieces {
            while !piece.is_empty() {
                let was_closed = d.closed();
                let (n, r) = d.feed(piece);
                assert!(n <= piece.len(), "consumed {n} of {}", piece.len());
                match r {
                    Err(e) => return (out, Some(e)),
                    Ok(None) => assert_eq!(n, piece.len(), "stopped early without a message"),
                    Ok(Some(m)) => {
                        assert!(!was_closed, "a message after the close: {m:?}");
                        assert!(n > 0, "a message from no bytes");
                        if let Message::Text(t) = &m {
                            assert!(t.len() <= limit, "{} bytes over {limit}", t.len());
                        }
                        out.push(m);
                    }
                }
                piece = &piece[n..];
            }
        }
        (out, None)
    }

    let whole = run(limit, &mut std::iter::once(rest));
    let cut = run(limit, &mut rest.chunks(chop));
    let bytewise = run(limit, &mut rest.chunks(1));
    assert_eq!(
        whole, cut,
        "cutting into {chop}-byte reads changed the outcome"
    );
    assert_eq!(whole, bytewise, "byte-by-byte reads changed the outcome");
    for m in &whole.0 {
        if let Message::Text(t) = m {
            let mask = [limit_byte ^ 0x5a, *chop_byte, 0x3c, 0xa5];
            let mut frame = vec![0x81];
            match t.len() {
                n if n < 126 => frame.push(0x80 | n as u8),
                n if n <= 0xffff => {
                    frame.push(0x80 | 126);
                    frame.extend((n as u16).to_be_bytes());
                }
                n => {
                    frame.push(0x80 | 127);
                    frame.extend((n as u64).to_be_bytes());
                }
            }
            frame.extend(mask);
            frame.extend(t.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
            let (again, err) = run(limit, &mut std::iter::once(frame.as_slice()));
            assert_eq!((again.as_slice(), err), (std::slice::from_ref(m), None));
        }
    }
}

/// The `from`/`to` of the history and report routes, as a stranger sends
/// them: `data` is `<from>\n<to>` (a missing part is left out), parsed in
/// UTC, São Paulo and New York at a fixed instant with a 90-day retention.
///
/// Never panics; a span it accepts is non-empty, at most 366 local days,
/// and its days are contiguous, in order and cover it exactly; a refusal
/// names `from` or `to`.
pub fn history_range(data: &[u8]) {
    use crate::history::range;
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(2, '\n');
    let from = parts.next().filter(|s| !s.is_empty());
    let to = parts.next().filter(|s| !s.is_empty());
    // 2026-11-30T15:00:00Z.
    let now_ms = 1_796_050_800_000;
    for zone in ["UTC", "America/Sao_Paulo", "America/New_York"] {
        let tz = jiff::tz::db().get(zone).expect("bundled zone");
        match range::parse(from, to, &tz, now_ms, 90) {
            Ok(span) => {
                assert!(span.from_ms < span.to_ms, "{text:?} in {zone}: {span:?}");
                let days = &span.days;
                assert!(
                    !days.is_empty() && days.len() <= 366,
                    "{text:?}: {} days",
                    days.len()
                );
                assert_eq!(days[0].start_ms, span.from_ms, "{text:?} in {zone}");
                assert_eq!(
                    days[days.len() - 1].end_ms,
                    span.to_ms,
                    "{text:?} in {zone}"
                );
                for w in days.windows(2) {
                    assert_eq!(w[0].end_ms, w[1].start_ms, "{text:?} in {zone}");
                    assert!(w[0].date < w[1].date, "{text:?} in {zone}");
                }
            }
            Err(e) => assert!(matches!(e.field(), "from" | "to"), "{e}"),
        }
    }
}
