//! How long after a pod turns ready the gateway routes to it, in `lanes up`'s own
//! wiring: a real redb store holding one synthetic lane group (`--services` × 20 lanes,
//! three pods per service), the route feed (`routes::run`) and the data plane follower
//! (`pods::follow`) feeding one `Mesh`, as `lanes up` runs them. Each round takes one
//! service's only canary pod unready, waits until the mesh drops it, then marks it ready
//! and times until the gateway's routing for that lane holds its address. Prints JSON:
//! the p50/p99/max over `--changes` rounds, in milliseconds, and the process's peak RSS.
//!
//! `cargo run --release -p lanes-runtime --example readiness_latency -- --services 1000`

#![allow(clippy::expect_used)]

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lanes_compile::Flavor;
use lanes_model::synthetic::{NAMESPACE, Shape, canary_lane_of, service_name};
use lanes_model::{Kind, ObjectKey};
use lanes_runtime::pods::INBOUND_PORT;
use lanes_runtime::routes::Snapshot;
use lanes_store::Store;
use serde_json::json;
use tokio::sync::watch;

/// The allocator of the `lanes` binary, so this measures what the binary runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Whether the mesh routes lane `lane` of `service` to `address`.
fn routes_to(mesh: &lanes_proxy::Mesh, service: &str, lane: &str, address: SocketAddr) -> bool {
    mesh.routing()
        .service_for_host(service, NAMESPACE)
        .and_then(|s| s.subset(lane))
        .is_some_and(|s| s.endpoints.contains(&address))
}

async fn until(mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "the mesh did not follow in 30 s");
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

#[tokio::main]
async fn main() {
    let services = arg("--services", 1000);
    let changes = arg("--changes", 100);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(&dir.path().join("lanes.redb")).expect("store"));
    let loaded = lanes_runtime::synthetic::load(
        &store,
        Shape {
            services,
            lanes: 20,
            pods: true,
        },
    )
    .expect("load the mesh");
    let pods: Vec<(ObjectKey, serde_json::Value)> = loaded
        .iter()
        .filter(|o| o.kind == Kind::Pod)
        .map(|o| (o.key(), o.raw["status"].clone()))
        .collect();

    let (stop_tx, stop_rx) = watch::channel(false);
    let (snap_tx, snap_rx) = watch::channel(Arc::new(Snapshot::default()));
    let metrics = Arc::new(lanes_proxy::Metrics::new());
    let data_plane = lanes_proxy::Mesh::new(lanes_proxy::Settings::default(), metrics);
    let feed = tokio::spawn(lanes_runtime::routes::run(
        store.clone(),
        Flavor::Asm,
        snap_tx,
        stop_rx,
    ));
    let follow = tokio::spawn(lanes_runtime::pods::follow(data_plane.clone(), snap_rx));

    let mut latencies = Vec::with_capacity(changes);
    for round in 0..changes {
        let i = (round * 7919) % services;
        let (svc, lane) = (service_name(i), canary_lane_of(i, 20));
        let name = format!("{svc}-{lane}-2");
        let (key, ready) = pods
            .iter()
            .find(|(k, _)| k.name == name)
            .cloned()
            .expect("the canary pod");
        let ip: IpAddr = ready["podIP"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("pod address");
        let address = SocketAddr::new(ip, INBOUND_PORT);
        until(|| routes_to(&data_plane, &svc, &lane, address)).await;
        let mut unready = ready.clone();
        unready["conditions"] = json!([{"type": "Ready", "status": "False"}]);
        store
            .write(|txn| txn.replace_status(&key, unready, None))
            .expect("unready");
        until(|| !routes_to(&data_plane, &svc, &lane, address)).await;
        let t0 = Instant::now();
        store
            .write(|txn| txn.replace_status(&key, ready, None))
            .expect("ready");
        until(|| routes_to(&data_plane, &svc, &lane, address)).await;
        latencies.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    let _ = stop_tx.send(true);
    feed.abort();
    follow.abort();
    latencies.sort_by(f64::total_cmp);
    let q = |p: f64| {
        latencies[((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1]
    };
    println!(
        "{}",
        json!({
            "services": services, "lanes": 20, "changes": changes,
            "ready_to_routed_ms": {"p50": q(0.5), "p99": q(0.99), "max": q(1.0)},
            "peak_rss_mib": peak_rss_mib(),
        })
    );
}
