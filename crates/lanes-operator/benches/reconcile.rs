//! The lane controller at scale, against the mocked API server of the operator's tests:
//! one lane group of 1,000 synthetic services × 20 lanes (three pods each) whose
//! generated objects are in place; one canary pod turns unready or ready again, and the
//! controller rebuilds its inputs from the watch caches (converting only what changed)
//! and reconciles the group (compile, read the generated objects, apply what differs,
//! write the status). What is timed is that reconcile.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/fake.rs"]
mod fake;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use fake::FakeApi;
use k8s_openapi::api::core::v1::{Pod, Service};
use lanes_compile::Flavor;
use lanes_model::lane::{ASMSwimLane, ASMSwimLaneGroup};
use lanes_model::synthetic::{GROUP, NAMESPACE, Shape, canary_lane_of, mesh};
use lanes_operator::lanes::{Conversions, Inputs, reconcile_group};
use serde::de::DeserializeOwned;
use serde_json::json;

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
    let services = typed::<Service>(&api, "v1", "Service");
    let mut pods = typed::<Pod>(&api, "v1", "Pod");
    let lanes = typed::<ASMSwimLane>(&api, LANES, "ASMSwimLane");
    let group: ASMSwimLaneGroup =
        serde_json::from_value(api.get(LANES, "ASMSwimLaneGroup", "", GROUP).unwrap()).unwrap();
    let mut kept = Conversions::default();
    let run = |pods: &[Arc<Pod>], kept: &mut Conversions| {
        let inputs =
            Inputs::from_caches(services.clone(), pods.to_vec(), lanes.clone(), kept).unwrap();
        rt.block_on(reconcile_group(&client, Flavor::Asm, &group, &inputs))
            .unwrap()
    };
    let first = run(&pods, &mut kept);
    assert_eq!(first.applied.len(), 2 * 1_000 + 20, "{:?}", first.skipped);

    let name = format!("svc-00500-{}-2", canary_lane_of(500, 20));
    let at = pods
        .iter()
        .position(|p| p.metadata.name.as_deref() == Some(&name))
        .expect("the canary pod");
    let mut ready = true;
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
                pods[at] = Arc::new(
                    serde_json::from_value(api.get("v1", "Pod", NAMESPACE, &name).unwrap())
                        .unwrap(),
                );
                api.clear_requests();
                let started = Instant::now();
                let changes = run(&pods, &mut kept);
                spent += started.elapsed();
                assert_eq!(changes.applied.len(), 1, "the service's DestinationRule");
                black_box(changes);
            }
            spent
        })
    });
    group_.finish();
}

criterion_group!(benches, reconcile);
criterion_main!(benches);
