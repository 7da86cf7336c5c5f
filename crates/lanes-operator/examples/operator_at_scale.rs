//! `lanes operator`, the real binary, at scale: a mocked API server over loopback HTTP
//! (the operator tests' own) holding one synthetic lane group of N services × L lanes
//! with three ready pods each; the operator generates its objects, then one canary pod
//! at a time turns unready or ready again, and each change is timed until the
//! operator's DestinationRule for that service reflects it. Printed as JSON: the time
//! to generate everything, the change-to-applied times, and the operator process's CPU
//! seconds and peak RSS (from /proc).
//!
//! `cargo run --release -p lanes-operator --example operator_at_scale -- \
//!     --lanes-bin target/release/lanes --services 1000 --lanes 20 --changes 50`

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/fake.rs"]
mod fake;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lanes_model::synthetic::{GROUP, NAMESPACE, Shape, canary_lane_of, mesh, service_name};
use serde_json::{Value, json};

const ISTIO: &str = "networking.istio.io/v1alpha3";

struct Args {
    lanes_bin: String,
    services: usize,
    lanes: usize,
    changes: usize,
}

fn args() -> Args {
    let mut a = Args {
        lanes_bin: "target/release/lanes".into(),
        services: 1_000,
        lanes: 20,
        changes: 50,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    for pair in argv.chunks(2) {
        let value = pair.get(1).cloned().unwrap_or_default();
        match pair[0].as_str() {
            "--lanes-bin" => a.lanes_bin = value,
            "--services" => a.services = value.parse().expect("--services N"),
            "--lanes" => a.lanes = value.parse().expect("--lanes N"),
            "--changes" => a.changes = value.parse().expect("--changes N"),
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

/// Waits up to `limit` for `f` to hold, polling every millisecond.
fn wait(limit: Duration, what: &str, mut f: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !f() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
    started.elapsed()
}

/// Peak RSS (MiB) and CPU seconds of a running process.
fn usage(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let hwm_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which ends with the last ')'): utime is the 12th.
    let rest: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = rest[11].parse::<f64>().unwrap() + rest[12].parse::<f64>().unwrap();
    (hwm_kib / 1024.0, ticks / 100.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn operator(bin: &str, kubeconfig: &std::path::Path) -> Child {
    Command::new(bin)
        .args([
            "operator",
            "--flavor",
            "asm",
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .env("KUBECONFIG", kubeconfig)
        .env("POD_NAME", "lanes-operator-scale")
        .env("POD_NAMESPACE", "lanes-system")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the lanes binary (--lanes-bin)")
}

fn main() {
    let a = args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (api, addr) = fake::FakeApi::on_loopback(&rt);
    let shape = Shape {
        services: a.services,
        lanes: a.lanes,
        pods: true,
    };
    let (loaded, diags) = lanes_model::decode_str("synthetic", &mesh(shape));
    assert!(diags.is_empty(), "{diags:?}");
    for l in loaded {
        api.put(l.object.raw);
    }
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, fake::kubeconfig(addr)).unwrap();

    let mut child = operator(&a.lanes_bin, &kubeconfig);
    let expected = 2 * a.services + a.lanes;
    let generated =
        || api.list(ISTIO, "VirtualService").len() + api.list(ISTIO, "DestinationRule").len();
    let all = wait(Duration::from_secs(300), "every object generated", || {
        generated() == expected
    });
    api.clear_requests();

    let dr = |i: usize| format!("trafficlabel-dr-{GROUP}-{NAMESPACE}-{}", service_name(i));
    let subsets = |i: usize| -> usize {
        api.get(ISTIO, "DestinationRule", "istio-system", &dr(i))
            .and_then(|v| v["spec"]["subsets"].as_array().map(Vec::len))
            .unwrap_or(0)
    };
    let mut times = Vec::new();
    for n in 0..a.changes {
        // A different service each time; every other round the pod comes back.
        let i = (n / 2 * 37) % a.services;
        let pod = format!("{}-{}-2", service_name(i), canary_lane_of(i, a.lanes));
        let ready = n % 2 == 1;
        let before = subsets(i);
        let status = json!({"status": {"conditions": [
            {"type": "Ready", "status": if ready { "True" } else { "False" }}]}});
        api.merge("v1", "Pod", NAMESPACE, &pod, &status, true);
        let took = wait(Duration::from_secs(30), "the DestinationRule", || {
            subsets(i) != before
        });
        times.push(took.as_secs_f64() * 1e3);
        api.clear_requests();
    }
    // Settle, then read the process's figures.
    std::thread::sleep(Duration::from_millis(500));
    let (peak_rss_mib, cpu_s) = usage(child.id());
    let _ = child.kill();
    let _ = child.wait();
    times.sort_by(f64::total_cmp);
    let out: Value = json!({
        "services": a.services,
        "lanes": a.lanes,
        "generated": expected,
        "generate_all_s": all.as_secs_f64(),
        "change_to_applied_ms": {
            "p50": percentile(&times, 0.5),
            "p99": percentile(&times, 0.99),
            "max": times.last().copied().unwrap_or(0.0),
        },
        "changes": a.changes,
        "cpu_s": cpu_s,
        "peak_rss_mib": peak_rss_mib,
    });
    println!("{out}");
}
