//! The route feed of `lanes up` at scale: a real redb store holding one lane group of
//! 1,000 synthetic services × 20 lanes with three pods each; one pod turns ready (or
//! unready) and the feed recompiles the route table the gateway and sidecars run. What
//! is timed is the feed's reconcile after the change, the store write excluded.

#![allow(clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use lanes_compile::Flavor;
use lanes_model::synthetic::{NAMESPACE, Shape, canary_lane_of};
use lanes_model::{Kind, ObjectKey};
use lanes_runtime::routes::RouteFeed;
use lanes_store::Store;
use serde_json::json;

/// The allocator of the `lanes` binary, so this measures what the binary runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn status(ready: bool) -> serde_json::Value {
    json!({"phase": "Running", "podIP": "10.0.0.2",
           "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]})
}

fn feed(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(&dir.path().join("lanes.redb")).expect("store"));
    lanes_runtime::synthetic::load(
        &store,
        Shape {
            services: 1_000,
            lanes: 20,
            pods: true,
        },
    )
    .expect("load the mesh");
    let pod = ObjectKey {
        kind: Kind::Pod,
        namespace: Some(NAMESPACE.to_string()),
        name: format!("svc-00500-{}-2", canary_lane_of(500, 20)),
    };
    let (_, mut rx) = store
        .watch(store.resource_version().expect("version"))
        .expect("watch");
    let mut feed = RouteFeed::new(Flavor::Asm);
    feed.refresh(&store).expect("first snapshot");
    let mut ready = true;
    let mut change = || {
        ready = !ready;
        store
            .write(|txn| txn.replace_status(&pod, status(ready), None))
            .expect("pod status");
        rx.try_recv().expect("the change's event")
    };
    let mut group = c.benchmark_group("route_feed");
    group.sample_size(30);
    // What the feed does on a change: take in the one changed object, compile.
    group.bench_function("one_pod_change_1000_services_x20_lanes", |b| {
        b.iter_batched(
            &mut change,
            |event| {
                assert!(feed.apply(&event));
                black_box(feed.snapshot())
            },
            BatchSize::PerIteration,
        )
    });
    // What it did before it kept the objects: read and validate the whole store.
    group.bench_function("full_read_1000_services_x20_lanes", |b| {
        b.iter(|| black_box(RouteFeed::new(Flavor::Asm).refresh(&store).expect("read")))
    });
    group.finish();
}

criterion_group!(benches, feed);
criterion_main!(benches);
