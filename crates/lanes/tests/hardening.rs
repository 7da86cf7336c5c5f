//! What an adversarial run of `lanes up` broke (issue 13), one test per finding, each
//! reproducing it against the real daemon.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// Finding 1 (isolation), the token half: a fresh `lanes up` makes a token, says where
/// it is, keeps it private; the CLI finds it without flags; a request without it gets
/// 401 as a `Status`, `/metrics` included; `bearer` in any case is accepted.
#[test]
fn finding_1_the_api_always_wants_a_token_and_the_cli_finds_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(bin())
        .args(["up", "--api", "127.0.0.1:0", "--gateway", "127.0.0.1:0"])
        .args(["--pod-network", "127.251.0.0/16"])
        .current_dir(dir.path())
        .env_remove("LANES_TOKEN")
        .env_remove("LANES_STATE_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut api, mut token_line) = (String::new(), String::new());
    while api.is_empty() || token_line.is_empty() {
        let line = lines.next().unwrap().unwrap();
        if let Some(a) = line.strip_prefix("lanes up: API listening on ") {
            api = a.to_string();
        }
        if line.starts_with("lanes up: API token in ") {
            token_line = line;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let file = dir.path().join(".lanes/token");
    assert!(token_line.contains(".lanes/token"), "{token_line}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let token = std::fs::read_to_string(&file).unwrap().trim().to_string();
    assert!(token.len() >= 32);

    for path in ["/api/services", "/metrics"] {
        let (status, headers, body) = http_get(&api, path, &[]);
        assert_eq!(status, 401, "{path}: {body}");
        assert!(headers.contains(&("content-type".into(), "application/json".into())));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["kind"], "Status");
        assert_eq!(v["code"], 401);
        let wrong = format!("Bearer {}x", token);
        assert_eq!(http_get(&api, path, &[("authorization", &wrong)]).0, 401);
        let lower = format!("bearer {token}");
        assert_eq!(http_get(&api, path, &[("authorization", &lower)]).0, 200);
    }
    assert_eq!(http_get(&api, "/healthz", &[]).0, 200);

    // The CLI, run where `lanes up` was started, finds the token with no flag.
    let out = Command::new(bin())
        .args(["get", "svc", "-A"])
        .current_dir(dir.path())
        .env("LANES_SERVER", &api)
        .env_remove("LANES_TOKEN")
        .env_remove("LANES_STATE_DIR")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Elsewhere, without it, the CLI says what is missing.
    let out = Command::new(bin())
        .args(["get", "svc"])
        .current_dir(std::env::temp_dir())
        .env("LANES_SERVER", &api)
        .env_remove("LANES_TOKEN")
        .env_remove("LANES_STATE_DIR")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bearer token"));
    let _ = child.kill();
    let _ = child.wait();
}
