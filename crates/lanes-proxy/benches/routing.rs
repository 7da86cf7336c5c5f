//! Micro-benchmarks of the request path's pure parts: ingress rule matching, lane
//! resolution, subset choice, and the correlation table.

#![allow(clippy::expect_used)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, Method, Uri};
use lanes_compile::{Flavor, compile};
use lanes_model::mesh::PodView;
use lanes_proxy::correlation::CorrelationTable;
use lanes_proxy::matching::RequestView;
use lanes_proxy::{Endpoint, Routing};

/// The allocator of the `lanes` binary, so this measures what the binary runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn routing() -> Routing {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/seed");
    let loaded = lanes_model::load_paths(&[root]).expect("seed manifests");
    let objects: Vec<_> = loaded.iter().map(|l| &l.object).collect();
    let mut pods = Vec::new();
    let mut endpoints = Vec::new();
    for (i, (svc, lane)) in [
        ("mocka", "base"),
        ("mocka", "canary"),
        ("mockb", "base"),
        ("mockc", "base"),
        ("mockc", "canary"),
    ]
    .iter()
    .enumerate()
    {
        let labels: BTreeMap<String, String> = [("app", *svc), ("ASM_TRAFFIC_TAG", *lane)]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        pods.push(PodView {
            name: format!("p{i}"),
            namespace: "default".into(),
            labels: labels.clone(),
            ready: true,
            ip: None,
        });
        endpoints.push(Endpoint {
            service: svc.to_string(),
            namespace: "default".into(),
            address: SocketAddr::from(([127, 0, 0, 2 + i as u8], 15006)),
            labels,
            ready: true,
            pod: None,
        });
    }
    let out = compile(&objects, &pods, Flavor::Asm);
    Routing::build(&out.routes, &endpoints).expect("routing")
}

fn benches(c: &mut Criterion) {
    let routing = routing();
    let uri: Uri = "/mock".parse().expect("uri");
    let mut headers = HeaderMap::new();
    headers.insert("x-asm-prefer-tag", "canary".parse().expect("header"));
    headers.insert("my-request-id", "10002".parse().expect("header"));
    headers.insert("user-agent", "curl/8".parse().expect("header"));
    let view = RequestView {
        method: &Method::GET,
        uri: &uri,
        authority: "gateway.example.com",
        headers: &headers,
        source_labels: None,
    };
    c.bench_function("ingress_rule_match (2 lanes, canary rule wins)", |b| {
        b.iter(|| black_box(routing.ingress(black_box(&view))).is_some())
    });

    let table = CorrelationTable::new(100_000, Duration::from_secs(60));
    table.record("10002", "canary".into());
    let group = &routing.groups[0];
    let mut trace_only = HeaderMap::new();
    trace_only.insert("my-request-id", "10002".parse().expect("header"));
    let pod_labels: BTreeMap<String, String> =
        [("ASM_TRAFFIC_TAG".to_string(), "base".to_string())].into();
    c.bench_function("resolve_lane (route header)", |b| {
        b.iter(|| {
            routing.resolve_lane(
                group,
                black_box(&headers),
                |t| table.lookup(t),
                Some(&pod_labels),
            )
        })
    });
    c.bench_function("resolve_lane (trace correlation)", |b| {
        b.iter(|| {
            routing.resolve_lane(
                group,
                black_box(&trace_only),
                |t| table.lookup(t),
                Some(&pod_labels),
            )
        })
    });

    let canary: Arc<str> = "canary".into();
    c.bench_function("host lookup + choose subset (fallback)", |b| {
        b.iter(|| {
            let svc = routing.service_for_host(black_box("mockb:8000"), "default");
            black_box(svc.map(|s| routing.choose(s, Some(&canary)).is_ok()))
        })
    });

    let mut i = 0u64;
    c.bench_function("correlation record (unique ids, full table)", |b| {
        b.iter(|| {
            i += 1;
            table.record(&i.to_string(), canary.clone());
        })
    });
    c.bench_function("correlation lookup (hit)", |b| {
        b.iter(|| table.lookup(black_box("10002")))
    });
}

criterion_group!(routing_benches, benches);
criterion_main!(routing_benches);
