//! The lane controller at scale, against the mocked API server of the operator's tests:
//! one lane group of 1,000 synthetic services × 20 lanes (three pods each) whose
//! generated objects are in place; one canary pod turns unready or ready again, and the
//! controller takes that pod into its held inputs (converting it alone) and reconciles
//! the group (compile what the change touches, compare with the generated objects in
//! their watch caches, apply what differs, write the status). What is timed is that
//! reconcile, from the pod as its watch delivers it; the generated objects' cache is
//! brought up to date between rounds, as its watch would.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/fake.rs"]
mod fake;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use fake::FakeApi;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::DynamicObject;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher::Event;
use lanes_compile::Flavor;
use lanes_model::lane::{ASMSwimLane, ASMSwimLaneGroup};
use lanes_model::synthetic::{GROUP, NAMESPACE, Shape, canary_lane_of, mesh};
use lanes_operator::held::Held;
use lanes_operator::lanes::{Existing, GeneratedCache, istio_resource, reconcile_group};
use serde::de::DeserializeOwned;
use serde_json::json;

/// The allocator of the `lanes` binary, so this measures what the binary runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn typed<K: DeserializeOwned>(api: &FakeApi, api_version: &str, kind: &str) -> Vec<Arc<K>> {
    api.list(api_version, kind)
        .into_iter()
        .map(|v| Arc::new(serde_json::from_value(v).unwrap()))
        .collect()
}

fn reconcile(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _entered = rt.enter();
    let (api, client) = FakeApi::start();
    let (loaded, diags) = lanes_model::decode_str(
        "synthetic",
        &mesh(Shape {
            services: 1_000,
            lanes: 20,
            pods: true,
        }),
    );
    assert!(diags.is_empty(), "{diags:?}");
    for l in loaded {
        api.put(l.object.raw);
    }
    const LANES: &str = "istio.alibabacloud.com/v1";
    let mut held = Held::new(Flavor::Asm);
    held.replace::<Service, _>(typed::<Service>(&api, "v1", "Service"))
        .unwrap();
    held.replace::<Pod, _>(typed::<Pod>(&api, "v1", "Pod"))
        .unwrap();
    held.replace::<ASMSwimLane, _>(typed::<ASMSwimLane>(&api, LANES, "ASMSwimLane"))
        .unwrap();
    // The group as the controller's cache holds it: read again after its status is written.
    let read_group = || -> ASMSwimLaneGroup {
        serde_json::from_value(api.get(LANES, "ASMSwimLaneGroup", "", GROUP).unwrap()).unwrap()
    };
    let mut writers = ["VirtualService", "DestinationRule"]
        .map(|kind| Writer::<DynamicObject>::new(istio_resource(kind)));
    let memo = Default::default();
    let cache = GeneratedCache::new(
        [
            ("VirtualService", writers[0].as_reader()),
            ("DestinationRule", writers[1].as_reader()),
        ],
        memo,
    );
    let run = |group: &ASMSwimLaneGroup, held: &mut Held| {
        let compiled = held.compile(group).unwrap();
        let existing = Existing::Cached(&cache);
        rt.block_on(reconcile_group(&client, group, &compiled, existing))
            .unwrap()
    };
    let first = run(&read_group(), &mut held);
    assert_eq!(first.applied.len(), 2 * 1_000 + 20, "{:?}", first.skipped);
    const ISTIO: &str = "networking.istio.io/v1alpha3";
    for (writer, kind) in writers
        .iter_mut()
        .zip(["VirtualService", "DestinationRule"])
    {
        writer.apply_watcher_event(&Event::Init);
        for v in api.list(ISTIO, kind) {
            writer.apply_watcher_event(&Event::InitApply(serde_json::from_value(v).unwrap()));
        }
        writer.apply_watcher_event(&Event::InitDone);
    }
    let group = read_group();
    assert!(
        group.status.is_some(),
        "the first reconcile wrote the status"
    );
    let second = run(&group, &mut held);
    assert!(second.applied.is_empty(), "{:?}", second.applied);

    let name = format!("svc-00500-{}-2", canary_lane_of(500, 20));
    let mut ready = true;
    let wholes = held.full_compiles;
    let mut group_ = c.benchmark_group("operator");
    group_.sample_size(10);
    group_.bench_function("one_pod_change_1000_services_x20_lanes", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                ready = !ready;
                let mut pod = api.get("v1", "Pod", NAMESPACE, &name).unwrap();
                pod["status"]["conditions"] =
                    json!([{"type": "Ready", "status": if ready { "True" } else { "False" }}]);
                api.put(pod);
                let pod: Pod =
                    serde_json::from_value(api.get("v1", "Pod", NAMESPACE, &name).unwrap())
                        .unwrap();
                api.clear_requests();
                let started = Instant::now();
                held.put(&pod).unwrap();
                let changes = run(&group, &mut held);
                spent += started.elapsed();
                assert_eq!(held.full_compiles, wholes, "a pod change compiles in part");
                assert_eq!(changes.applied.len(), 1, "the service's DestinationRule");
                assert!(
                    !api.requests().iter().any(|r| r.path.ends_with("/status")),
                    "the status stands: nothing in it changed"
                );
                let (_, ns_name) = changes.applied[0].split_once(' ').unwrap();
                let (ns, name) = ns_name.split_once('/').unwrap();
                let applied = api.get(ISTIO, "DestinationRule", ns, name).unwrap();
                writers[1]
                    .apply_watcher_event(&Event::Apply(serde_json::from_value(applied).unwrap()));
                black_box(changes);
            }
            spent
        })
    });
    group_.finish();
}

criterion_group!(benches, reconcile);
criterion_main!(benches);
