//! The compiler at scale: one lane group of 100, 1,000 and 5,000 synthetic services ×
//! 20 lanes with three pods per service (`lanes_model::synthetic`). YAML decoding and
//! pod conversion happen once, outside the measurement: what is timed is `compile`.
//!
//! `LANES_SCALE_SERVICES` (a comma-separated list, such as `5000`) builds and checks only
//! those sizes: criterion's name filter skips the measurement of the others but not
//! their set-up, whose one checking compile a profiler run under valgrind would count.

#![allow(clippy::expect_used)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use lanes_compile::{Flavor, compile};
use lanes_model::mesh::assumed_pods;
use lanes_model::synthetic::{Shape, mesh};

/// The allocator of the `lanes` binary, so this measures what the binary runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn scale(c: &mut Criterion) {
    let mut group = c.benchmark_group("compile");
    group.sample_size(20);
    for services in sizes() {
        let text = mesh(Shape {
            services,
            lanes: 20,
            pods: true,
        });
        let (loaded, diags) = lanes_model::decode_str("synthetic", &text);
        assert!(diags.is_empty(), "{diags:?}");
        let objects: Vec<_> = loaded.iter().map(|l| &l.object).collect();
        let pods = assumed_pods(objects.iter().copied());
        // Every service holds the baseline and its own canary lane.
        let out = compile(&objects, &pods, Flavor::Asm);
        let subsets: usize = out.routes.groups[0]
            .services
            .iter()
            .map(|s| s.subsets.len())
            .sum();
        assert_eq!(subsets, 2 * services);
        group.throughput(Throughput::Elements(services as u64));
        group.bench_with_input(
            BenchmarkId::new("services_x20_lanes", services),
            &services,
            |b, _| b.iter(|| black_box(compile(black_box(&objects), &pods, Flavor::Asm))),
        );
    }
    group.finish();
}

/// The group sizes to measure: `LANES_SCALE_SERVICES`, or 100, 1,000 and 5,000.
fn sizes() -> Vec<usize> {
    match std::env::var("LANES_SCALE_SERVICES") {
        Ok(list) => list
            .split(',')
            .map(|n| {
                n.trim().parse().unwrap_or_else(|e| {
                    panic!("LANES_SCALE_SERVICES: {n:?} is not a number of services: {e}")
                })
            })
            .collect(),
        Err(_) => vec![100, 1_000, 5_000],
    }
}

criterion_group!(benches, scale);
criterion_main!(benches);
