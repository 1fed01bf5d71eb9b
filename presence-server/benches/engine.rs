//! The presence rule's hot paths: an activity frame for a user who is
//! already online (the common case), a transition (offline → online), and
//! the expiry sweep of many users at once.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use presence_server::Engine;

const T: u64 = 60_000;
const USERS: u64 = 10_000;

fn online_engine(users: u64, now: u64) -> Engine<u64> {
    let mut e = Engine::new(T);
    for u in 0..users {
        e.activity(&u, now, 0);
    }
    e
}

fn activity(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(USERS));
    g.bench_function("activity of online users (10k frames)", |b| {
        let mut e = online_engine(USERS, 1_000);
        let mut now = 1_000;
        b.iter(|| {
            now += 1;
            for u in 0..USERS {
                black_box(e.activity(&u, now, 0));
            }
        })
    });
    g.bench_function("transition offline to online (10k users)", |b| {
        b.iter_batched(
            || Engine::<u64>::new(T),
            |mut e| {
                for u in 0..USERS {
                    black_box(e.activity(&u, 1_000, 0));
                }
                e
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("expiry sweep (10k users due)", |b| {
        b.iter_batched(
            || online_engine(USERS, 1_000),
            |mut e| black_box(e.expire(1_000 + T)),
            BatchSize::LargeInput,
        )
    });
    g.bench_function("expiry tick with nothing due (10k online)", |b| {
        let mut e = online_engine(USERS, 1_000);
        b.iter(|| black_box(e.expire(1_500)))
    });
    g.finish();
}

criterion_group!(benches, activity);
criterion_main!(benches);
