//! `lanes proxy --config FILE`: the data plane as a standalone process, from a file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A minimal HTTP/1.1 upstream on a thread: answers `<name> lane=<route header>`.
fn upstream(name: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in l.incoming() {
            let Ok(mut s) = stream else { continue };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(s.try_clone().unwrap());
                loop {
                    let mut lane = String::new();
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("x-asm-prefer-tag:")
                        {
                            lane = v.trim().to_string();
                        }
                    }
                    let body = format!("{name} lane={lane}");
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if s.write_all(resp.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn get(addr: &str, lane: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET /mock HTTP/1.1\r\nHost: example.com\r\nx-asm-prefer-tag: {lane}\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_gateway_from_a_config_file_routes_by_lane() {
    let base = upstream("mocka-v1");
    let canary = upstream("mocka-v2");
    let seed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/seed");
    let loaded = lanes_model::load_paths(&[seed]).unwrap();
    let objects: Vec<_> = loaded.iter().map(|l| &l.object).collect();
    let pod = |tag: &str| lanes_model::mesh::PodView {
        name: tag.into(),
        namespace: "default".into(),
        labels: [
            ("app".to_string(), "mocka".to_string()),
            ("ASM_TRAFFIC_TAG".to_string(), tag.to_string()),
        ]
        .into(),
        ready: true,
        ip: None,
    };
    let routes = lanes_compile::compile(
        &objects,
        &[pod("base"), pod("canary")],
        lanes_compile::Flavor::Asm,
    )
    .routes;
    // YAML is a superset of JSON: the test writes the file as JSON.
    let config = serde_json::json!({
        "role": "gateway",
        "listeners": {"gateway": "127.0.0.1:0", "admin": "127.0.0.1:0"},
        "routes": routes,
        "endpoints": [
            {"service": "mocka", "address": base.to_string(), "labels": {"app": "mocka", "ASM_TRAFFIC_TAG": "base"}},
            {"service": "mocka", "address": canary.to_string(), "labels": {"app": "mocka", "ASM_TRAFFIC_TAG": "canary"}},
        ],
        "settings": {"requestTimeoutMs": 2000},
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proxy.yaml");
    std::fs::write(&path, serde_json::to_string_pretty(&config).unwrap()).unwrap();

    let mut child = Proc(
        Command::new(env!("CARGO_BIN_EXE_lanes"))
            .args([
                "proxy",
                "--config",
                path.to_str().unwrap(),
                "--threads",
                "1",
                "--access-log",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let mut gateway = String::new();
    let mut admin = String::new();
    while gateway.is_empty() || admin.is_empty() {
        let line = lines.next().unwrap().unwrap();
        if let Some(a) = line.strip_prefix("lanes proxy: gateway listening on ") {
            gateway = a.to_string();
        }
        if let Some(a) = line.strip_prefix("lanes proxy: admin listening on ") {
            admin = a.to_string();
        }
    }
    let answer = get(&gateway, "canary");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("mocka-v2 lane=canary"), "{answer}");
    let answer = get(&gateway, "base");
    assert!(answer.ends_with("mocka-v1 lane=base"), "{answer}");
    // --access-log: one JSON line per hop on standard output, in the README's format.
    let logged: Vec<serde_json::Value> = (0..2)
        .map(|_| serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap())
        .collect();
    for (entry, lane) in logged.iter().zip(["canary", "base"]) {
        assert_eq!(entry["role"], "gateway", "{entry}");
        assert_eq!(entry["service"], "mocka", "{entry}");
        assert_eq!(entry["namespace"], "default", "{entry}");
        assert_eq!(entry["lane"], lane, "{entry}");
        assert_eq!(entry["subset"], lane, "{entry}");
        assert_eq!(entry["status"], 200, "{entry}");
        assert_eq!(entry["traceId"].as_str().unwrap().len(), 32, "{entry}");
        assert_eq!(entry["spanId"].as_str().unwrap().len(), 16, "{entry}");
        assert!(entry["durationNano"].as_u64().unwrap() > 0, "{entry}");
        assert!(
            entry.get("parentSpanId").is_none(),
            "the client sent no trace: {entry}"
        );
    }

    let mut s = TcpStream::connect(&admin).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut metrics = String::new();
    s.read_to_string(&mut metrics).unwrap();
    assert!(
        metrics.contains("lanes_requests_total{role=\"gateway\",service=\"mocka\""),
        "{metrics}"
    );

    // SIGTERM stops it cleanly.
    let pid = child.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

/// What `lanes proxy --config` says on standard error when it refuses the file `text`.
fn refusal(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proxy.yaml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_lanes"))
        .args(["proxy", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{text:?} was accepted");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_bad_config_file_is_refused_with_the_reason() {
    let err = refusal("role: sidecar\nlisteners:\n  inbound: 127.0.0.1:0\n");
    assert!(err.contains("pod: the sidecar role needs its pod"), "{err}");
    let err = refusal(
        "role: gateway\nlisteners:\n  gateway: 127.0.0.1:0\nsettings:\n  upgradeIdleTimeoutMs: 0\n",
    );
    assert!(
        err.contains("settings.upgradeIdleTimeoutMs: must be greater than 0"),
        "{err}"
    );
}
