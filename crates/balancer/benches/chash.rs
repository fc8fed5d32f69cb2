//! Nanoseconds per `chash` pick (APISIX's ring: CRC32 of the key, binary search over 160 points
//! per weight unit), as the mqtt-proxy route does once per connection with the client id.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use sg_balancer::{Algorithm, Balancer, NodeSpec, Tried};

fn nodes(count: usize) -> Vec<NodeSpec> {
    (0..count)
        .map(|i| NodeSpec {
            host: format!("10.0.{}.{}", i / 250, i % 250 + 1),
            port: 1883,
            weight: 1,
            priority: 0,
        })
        .collect()
}

/// Client ids of the usual shape, so picks land all over the ring.
fn keys() -> Vec<Vec<u8>> {
    (0..1024)
        .map(|i| format!("sensor-{i:06}-eu-west-1").into_bytes())
        .collect()
}

fn pick(c: &mut Criterion) {
    let keys = keys();
    let mut group = c.benchmark_group("chash_pick");
    for count in [2, 10, 100] {
        let balancer = Balancer::new(Algorithm::Chash, nodes(count), None);
        let tried = Tried::default();
        group.bench_with_input(
            BenchmarkId::new("nodes", count),
            &balancer,
            |b, balancer| {
                let mut i = 0;
                b.iter(|| {
                    i = (i + 1) % keys.len();
                    balancer.pick(black_box(&keys[i]), &tried).map(|p| p.index)
                })
            },
        );
    }
    // A retry after a failed connect: the first node is skipped and the ring walked on.
    let balancer = Balancer::new(Algorithm::Chash, nodes(10), None);
    let retries: Vec<(usize, Tried)> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| {
            let mut tried = Tried::default();
            tried.insert(balancer.pick(key, &tried).expect("a node").index);
            (i, tried)
        })
        .collect();
    group.bench_function("nodes/10/retry", |b| {
        let mut j = 0;
        b.iter(|| {
            j = (j + 1) % retries.len();
            let (i, tried) = &retries[j];
            balancer.pick(black_box(&keys[*i]), tried).map(|p| p.index)
        })
    });
    group.finish();
}

fn build(c: &mut Criterion) {
    c.bench_function("chash_build/nodes/10", |b| {
        b.iter(|| Balancer::new(Algorithm::Chash, black_box(nodes(10)), None))
    });
}

criterion_group!(benches, pick, build);
criterion_main!(benches);
