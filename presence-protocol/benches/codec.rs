//! Encoding and decoding the frames that dominate traffic: `activity` in,
//! `presence` out.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use presence_protocol::{ClientMessage, Roster, ServerMessage, Status};

fn codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("protocol");
    g.throughput(Throughput::Elements(1));
    let activity = r#"{"type":"activity","idle_ms":1234}"#;
    g.bench_function("decode activity", |b| {
        b.iter(|| black_box(serde_json::from_str::<ClientMessage>(black_box(activity)).unwrap()))
    });
    let presence = ServerMessage::Presence {
        roster: Roster::Team("support".into()),
        user: "user-000123".into(),
        status: Status::Online,
        at: 1_795_432_203_000,
        v: 42,
    };
    g.bench_function("encode presence", |b| {
        b.iter(|| black_box(black_box(&presence).to_json()))
    });
    let encoded = presence.to_json();
    g.bench_function("decode presence", |b| {
        b.iter(|| black_box(serde_json::from_str::<ServerMessage>(black_box(&encoded)).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
