//! Golden round trips: each wire message against the exact JSON of SPEC §5/§6.

use presence_protocol::admin::*;
use presence_protocol::*;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use uuid::Uuid;

/// Parses `golden` into `T`, checks it equals `value`, and that `value`
/// serialises back to exactly `golden` (as JSON values, so key order is free).
fn check<T>(value: T, golden: Value)
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let parsed: T = serde_json::from_value(golden.clone()).expect("golden parses");
    assert_eq!(parsed, value, "parsed golden differs");
    let back = serde_json::to_value(&value).expect("serialises");
    assert_eq!(back, golden, "serialised value differs from golden");
}

const TAB: &str = "6f1c2b1e-8f5d-4c55-9a57-0b1e6cf1b9f0";

fn tab() -> Uuid {
    TAB.parse().unwrap()
}

#[test]
fn hello() {
    check(
        ClientMessage::Hello {
            token: "a.b.c".into(),
            tab: tab(),
            idle_ms: 120,
            client: Some("erp/1.2".into()),
        },
        json!({"type":"hello","token":"a.b.c","tab":TAB,"idle_ms":120,"client":"erp/1.2"}),
    );
}

#[test]
fn hello_without_client() {
    check(
        ClientMessage::Hello {
            token: "t".into(),
            tab: tab(),
            idle_ms: 0,
            client: None,
        },
        json!({"type":"hello","token":"t","tab":TAB,"idle_ms":0}),
    );
}

#[test]
fn activity_subscribe_unsubscribe_refresh_logout() {
    check(
        ClientMessage::Activity { idle_ms: 5 },
        json!({"type":"activity","idle_ms":5}),
    );
    check(
        ClientMessage::Subscribe {
            id: ReqId::Num(1),
            roster: Roster::Directory,
        },
        json!({"type":"subscribe","id":1,"roster":"directory"}),
    );
    check(
        ClientMessage::Subscribe {
            id: ReqId::Str("a".into()),
            roster: Roster::Attendants,
        },
        json!({"type":"subscribe","id":"a","roster":"attendants"}),
    );
    check(
        ClientMessage::Unsubscribe {
            id: ReqId::Num(2),
            roster: Roster::Team("sales".into()),
        },
        json!({"type":"unsubscribe","id":2,"roster":"team:sales"}),
    );
    check(
        ClientMessage::Refresh { token: "x".into() },
        json!({"type":"refresh","token":"x"}),
    );
    check(ClientMessage::Logout, json!({"type":"logout"}));
}

#[test]
fn bad_client_frames_are_errors() {
    for bad in [
        json!({"type":"nope"}),
        json!({"type":"activity","idle_ms":"5"}),
        json!({"type":"activity","idle_ms":-1}),
        json!({"type":"subscribe","id":1,"roster":"team:"}),
        json!({"type":"subscribe","id":1,"roster":"everyone"}),
        json!({"type":"hello","token":"t","tab":"not-a-uuid","idle_ms":0}),
        json!({"idle_ms":5}),
    ] {
        assert!(
            serde_json::from_value::<ClientMessage>(bad.clone()).is_err(),
            "{bad} parsed"
        );
    }
}

fn entry() -> Entry {
    Entry {
        id: "u1".into(),
        nickname: "Ann".into(),
        name: Some("Ann Smith".into()),
        status: Status::Online,
        since: 10,
        last_seen: 9,
        v: 3,
        available: true,
        away_message: String::new(),
        profile: Some(Profile::Admin),
        teams: Some(vec![Membership {
            id: "crm".into(),
            role: MembershipRole::Both,
        }]),
        state: Some(UserState::Active),
    }
}

#[test]
fn welcome() {
    check(
        ServerMessage::Welcome {
            user: WelcomeUser {
                id: "u1".into(),
                tenant: "acme".into(),
                name: "Ann Smith".into(),
                nickname: "Ann".into(),
                profile: Profile::Standard,
                attendant: true,
                teams: vec![Membership {
                    id: "crm".into(),
                    role: MembershipRole::Member,
                }],
            },
            tab: tab(),
            idle_timeout_ms: 60000,
            activity_interval_ms: 10000,
            server_time: 1234,
        },
        json!({"type":"welcome","user":{"id":"u1","tenant":"acme","name":"Ann Smith","nickname":"Ann",
            "profile":"standard","attendant":true,"teams":[{"id":"crm","as":"member"}]},
            "tab":TAB,"idle_timeout_ms":60000,"activity_interval_ms":10000,"server_time":1234}),
    );
}

#[test]
fn snapshot_with_and_without_stats() {
    let stats = Stats {
        online: 1,
        offline: 2,
        active: 3,
        inactive: 4,
    };
    check(
        ServerMessage::Snapshot {
            id: ReqId::Num(7),
            roster: Roster::Directory,
            users: vec![entry()],
            stats: Some(stats),
        },
        json!({"type":"snapshot","id":7,"roster":"directory","users":[{"id":"u1","nickname":"Ann",
            "name":"Ann Smith","status":"online","since":10,"last_seen":9,"v":3,"available":true,
            "away_message":"","profile":"admin","teams":[{"id":"crm","as":"both"}],"state":"active"}],
            "stats":{"online":1,"offline":2,"active":3,"inactive":4}}),
    );
    let public = Entry {
        name: None,
        profile: None,
        teams: None,
        state: None,
        ..entry()
    };
    check(
        ServerMessage::Snapshot {
            id: ReqId::Num(8),
            roster: Roster::Attendants,
            users: vec![public],
            stats: None,
        },
        json!({"type":"snapshot","id":8,"roster":"attendants","users":[{"id":"u1","nickname":"Ann",
            "status":"online","since":10,"last_seen":9,"v":3,"available":true,"away_message":""}]}),
    );
}

#[test]
fn deltas() {
    check(
        ServerMessage::Presence {
            roster: Roster::Team("t1".into()),
            user: "u1".into(),
            status: Status::Offline,
            at: 99,
            v: 4,
        },
        json!({"type":"presence","roster":"team:t1","user":"u1","status":"offline","at":99,"v":4}),
    );
    check(
        ServerMessage::UserRemoved {
            roster: Roster::Attendants,
            user: "u1".into(),
        },
        json!({"type":"user_removed","roster":"attendants","user":"u1"}),
    );
    check(
        ServerMessage::Stats {
            roster: Roster::Directory,
            stats: Stats {
                online: 1,
                offline: 0,
                active: 1,
                inactive: 0,
            },
        },
        json!({"type":"stats","roster":"directory","online":1,"offline":0,"active":1,"inactive":0}),
    );
    let e = entry();
    check(
        ServerMessage::User {
            roster: Roster::Directory,
            user: e.clone(),
        },
        json!({"type":"user","roster":"directory","user":serde_json::to_value(&e).unwrap()}),
    );
}

#[test]
fn errors() {
    check(
        ServerMessage::Error {
            id: Some(ReqId::Num(3)),
            code: ErrorCode::Forbidden,
            message: "no".into(),
            roster: None,
        },
        json!({"type":"error","id":3,"code":"forbidden","message":"no"}),
    );
    check(
        ServerMessage::Error {
            id: None,
            code: ErrorCode::RateLimited,
            message: "slow down".into(),
            roster: None,
        },
        json!({"type":"error","id":null,"code":"rate_limited","message":"slow down"}),
    );
    check(
        ServerMessage::Error {
            id: None,
            code: ErrorCode::Revoked,
            message: "gone".into(),
            roster: Some(Roster::Attendants),
        },
        json!({"type":"error","id":null,"code":"revoked","message":"gone","roster":"attendants"}),
    );
}

#[test]
fn admin_bodies() {
    check(
        TenantPut {
            user_limit: 10,
            event_retention_s: None,
            time_zone: None,
            history_retention_days: None,
        },
        json!({"user_limit":10}),
    );
    check(
        TenantPut {
            user_limit: 10,
            event_retention_s: Some(3600),
            time_zone: Some("America/Sao_Paulo".into()),
            history_retention_days: Some(30),
        },
        json!({"user_limit":10,"event_retention_s":3600,"time_zone":"America/Sao_Paulo","history_retention_days":30}),
    );
    check(
        UserPut {
            name: Some("Ann".into()),
            phone: Some("011999".into()),
            profile: Some(Profile::Restricted),
            ..Default::default()
        },
        json!({"name":"Ann","phone":"011999","profile":"restricted"}),
    );
    check(
        TeamPut {
            name: "Sales".into(),
            crm: true,
            active: true,
        },
        json!({"name":"Sales","crm":true,"active":true}),
    );
    check(
        MemberPut {
            role: MembershipRole::Supervisor,
        },
        json!({"as":"supervisor"}),
    );
    check(
        IdsBody {
            ids: vec!["a".into()],
        },
        json!({"ids":["a"]}),
    );
    check(
        ImportReport {
            dry_run: true,
            rows: 2,
            created: 0,
            updated: 0,
            errors: vec![RowError {
                row: 3,
                column: Some("profile".into()),
                reason: "bad".into(),
            }],
        },
        json!({"dry_run":true,"rows":2,"created":0,"updated":0,
            "errors":[{"row":3,"column":"profile","reason":"bad"}]}),
    );
    check(
        ApiError {
            error: ApiErrorBody {
                code: "not_found".into(),
                message: "x".into(),
                details: None,
            },
        },
        json!({"error":{"code":"not_found","message":"x"}}),
    );
    assert!(serde_json::from_value::<TeamPut>(json!({"name":"x","bogus":1})).is_err());
    assert!(serde_json::from_value::<MemberPut>(json!({"as":"owner"})).is_err());
}

#[test]
fn team_defaults_to_active_non_crm() {
    let t: TeamPut = serde_json::from_value(json!({"name":"x"})).unwrap();
    assert_eq!(
        t,
        TeamPut {
            name: "x".into(),
            crm: false,
            active: true
        }
    );
}

#[test]
fn admin_views() {
    let stats = Stats {
        online: 1,
        offline: 1,
        active: 2,
        inactive: 0,
    };
    check(
        TenantView {
            id: "acme".into(),
            user_limit: 5,
            event_retention_s: 259_200,
            time_zone: "UTC".into(),
            history_retention_days: 90,
            stats,
        },
        json!({"id":"acme","user_limit":5,"event_retention_s":259200,"time_zone":"UTC","history_retention_days":90,"stats":{"online":1,"offline":1,"active":2,"inactive":0}}),
    );
    let user = UserView {
        id: "u1".into(),
        name: "Ann".into(),
        nickname: "ann".into(),
        email: "a@x".into(),
        phone: "0119".into(),
        profile: Profile::Standard,
        available: false,
        away_message: "on leave".into(),
        state: UserState::Inactive,
        status: Status::Offline,
        since: 5,
        last_seen: 4,
        v: 2,
        teams: vec![],
    };
    let user_json = json!({"id":"u1","name":"Ann","nickname":"ann","email":"a@x","phone":"0119",
        "profile":"standard","available":false,"away_message":"on leave","state":"inactive",
        "status":"offline","since":5,"last_seen":4,"v":2,"teams":[]});
    check(user.clone(), user_json.clone());
    check(
        UserPage {
            users: vec![user.clone()],
            next_cursor: Some("u1".into()),
        },
        json!({"users":[user_json.clone()],"next_cursor":"u1"}),
    );
    check(
        UserPage {
            users: vec![],
            next_cursor: None,
        },
        json!({"users":[]}),
    );
    check(
        BulkResult {
            changed: vec!["a".into()],
            unchanged: vec!["b".into()],
        },
        json!({"changed":["a"],"unchanged":["b"]}),
    );
    check(
        TeamView {
            id: "t".into(),
            name: "T".into(),
            crm: true,
            active: false,
            members: vec![TeamMemberView {
                user: "u1".into(),
                role: MembershipRole::Both,
            }],
        },
        json!({"id":"t","name":"T","crm":true,"active":false,"members":[{"user":"u1","as":"both"}]}),
    );
    check(
        EligibleList {
            team: "t".into(),
            users: vec!["u1".into()],
        },
        json!({"team":"t","users":["u1"]}),
    );
    check(
        ServerMessage::Unsubscribed {
            id: ReqId::Str("x".into()),
            roster: Roster::Directory,
        },
        json!({"type":"unsubscribed","id":"x","roster":"directory"}),
    );
}

#[test]
fn presence_query_and_result() {
    check(
        PresenceQuery {
            ids: vec!["u1".into(), "ghost".into()],
        },
        json!({"ids":["u1","ghost"]}),
    );
    check(
        PresenceQueryResult {
            users: vec![UserStatus {
                id: "u1".into(),
                status: Status::Online,
                since: 5,
                last_seen: 7,
                v: 3,
            }],
            unknown: vec!["ghost".into()],
        },
        json!({"users":[{"id":"u1","status":"online","since":5,"last_seen":7,"v":3}],
            "unknown":["ghost"]}),
    );
    check(
        PresenceQueryResult {
            users: vec![],
            unknown: vec![],
        },
        json!({"users":[],"unknown":[]}),
    );
    assert!(serde_json::from_value::<PresenceQuery>(json!({"ids":["a"],"bogus":1})).is_err());
    assert!(serde_json::from_value::<PresenceQuery>(json!({"ids":"a"})).is_err());
    assert!(serde_json::from_value::<PresenceQuery>(json!({})).is_err());
}

#[test]
fn feed_events_and_pages() {
    let event = |cursor, status, v, reason| Event {
        id: Event::id_of("acme", "u1", v),
        cursor,
        tenant: "acme".into(),
        user: "u1".into(),
        status,
        at: 1_767_225_600_123,
        v,
        reason,
    };
    check(
        event(41, Status::Online, 7, Reason::Activity),
        json!({"id":"acme:u1:7","cursor":41,"tenant":"acme","user":"u1","status":"online","at":1_767_225_600_123_u64,"v":7,"reason":"activity"}),
    );
    check(
        EventPage {
            events: vec![event(42, Status::Offline, 8, Reason::NodeLost)],
            next: 42,
        },
        json!({"events":[{"id":"acme:u1:8","cursor":42,"tenant":"acme","user":"u1","status":"offline","at":1_767_225_600_123_u64,"v":8,"reason":"node_lost"}],"next":42}),
    );
    check(
        EventPage {
            events: vec![],
            next: 9,
        },
        json!({"events":[],"next":9}),
    );
    check(EventsGone { oldest: 17 }, json!({"oldest":17}));
    for (r, name) in [
        (Reason::Activity, "activity"),
        (Reason::Idle, "idle"),
        (Reason::Logout, "logout"),
        (Reason::Deactivated, "deactivated"),
        (Reason::Deleted, "deleted"),
        (Reason::NodeLost, "node_lost"),
        (Reason::Reconciled, "reconciled"),
    ] {
        check(r, json!(name));
        assert_eq!((r.as_str(), Reason::parse(name)), (name, Some(r)));
    }
    assert_eq!(Reason::parse("vacation"), None);
}

#[test]
fn batch_bodies_and_report() {
    check(
        BatchBody {
            items: vec![
                BatchItem::UpsertUser {
                    id: "u1".into(),
                    user: UserPut {
                        name: Some("Ana".into()),
                        email: Some("ana@x".into()),
                        ..Default::default()
                    },
                },
                BatchItem::DeleteUser { id: "u2".into() },
                BatchItem::UpsertTeam {
                    id: "sales".into(),
                    team: TeamPut {
                        name: "Sales".into(),
                        crm: true,
                        active: true,
                    },
                },
                BatchItem::DeleteTeam { id: "old".into() },
                BatchItem::UpsertMember {
                    team: "sales".into(),
                    user: "u1".into(),
                    role: MembershipRole::Both,
                },
                BatchItem::DeleteMember {
                    team: "sales".into(),
                    user: "u3".into(),
                },
            ],
        },
        json!({"items":[
            {"op":"upsert_user","id":"u1","user":{"name":"Ana","email":"ana@x"}},
            {"op":"delete_user","id":"u2"},
            {"op":"upsert_team","id":"sales","team":{"name":"Sales","crm":true,"active":true}},
            {"op":"delete_team","id":"old"},
            {"op":"upsert_member","team":"sales","user":"u1","as":"both"},
            {"op":"delete_member","team":"sales","user":"u3"},
        ]}),
    );
    check(
        BatchReport {
            dry_run: true,
            items: 2,
            users: BatchCounts {
                created: 1,
                updated: 0,
                deleted: 0,
            },
            teams: BatchCounts::default(),
            members: BatchCounts::default(),
            errors: vec![ItemError {
                item: 1,
                code: "not_found".into(),
                field: Some("team".into()),
                reason: "unknown team \"x\"".into(),
            }],
        },
        json!({"dry_run":true,"items":2,
            "users":{"created":1,"updated":0,"deleted":0},
            "teams":{"created":0,"updated":0,"deleted":0},
            "members":{"created":0,"updated":0,"deleted":0},
            "errors":[{"item":1,"code":"not_found","field":"team","reason":"unknown team \"x\""}]}),
    );
    for bad in [
        json!({"items":[{"op":"upsert_member","team":"t","user":"u","as":"owner"}]}),
        json!({"items":[{"op":"delete_user","id":"u","extra":1}]}),
        json!({"items":[{"op":"rename_user","id":"u"}]}),
        json!({"items":[], "dry_run": true}),
    ] {
        assert!(
            serde_json::from_value::<BatchBody>(bad.clone()).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn history_bodies() {
    use presence_protocol::history::{HistoryInterval, HistoryView};
    check(
        HistoryView {
            user: "ann".into(),
            time_zone: "America/Sao_Paulo".into(),
            from: 1_000,
            to: 9_000,
            intervals: vec![
                HistoryInterval {
                    from: 1_000,
                    to: Some(2_000),
                    status: Status::Online,
                    reason: Some(presence_protocol::Reason::NodeLost),
                },
                HistoryInterval {
                    from: 2_000,
                    to: None,
                    status: Status::Offline,
                    reason: None,
                },
            ],
            erased_at: None,
        },
        json!({"user":"ann","time_zone":"America/Sao_Paulo","from":1000,"to":9000,"intervals":[
            {"from":1000,"to":2000,"status":"online","reason":"node_lost"},
            {"from":2000,"to":null,"status":"offline","reason":null}],"erased_at":null}),
    );
}
