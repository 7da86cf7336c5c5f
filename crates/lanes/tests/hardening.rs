//! What an adversarial run of `lanes up` broke (issue 13), one test per finding, each
//! reproducing it against the real daemon.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Finding 1 (isolation), the token half: a fresh `lanes up` makes a token, says where
/// it is, keeps it private; the CLI finds it without flags; a request without it gets
/// 401 as a `Status`, `/metrics` included; `bearer` in any case is accepted.
#[test]
fn finding_1_the_api_always_wants_a_token_and_the_cli_finds_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(bin())
        .args(UP_ON_FREE_PORTS)
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

    for path in ["/api/v1/services", "/metrics"] {
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
    assert_eq!(
        http_get(&api, "/readyz", &[]).0,
        200,
        "the store takes writes"
    );

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

/// Sends requests back to back over `clients` keep-alive connections to the gateway for
/// `secs` seconds, alternating lanes: (answers 200 with the whole chain, failures).
async fn keep_alive_load(gateway: &str, clients: usize, secs: u64) -> (u64, Vec<String>) {
    use http_body_util::{BodyExt, Empty};
    let addr = gateway.trim_start_matches("http://").to_string();
    let until = tokio::time::Instant::now() + Duration::from_secs(secs);
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients {
        let addr = addr.clone();
        tasks.spawn(async move {
            let (mut ok, mut failed) = (0u64, Vec::new());
            let stream = match tokio::net::TcpStream::connect(&addr).await {
                Ok(s) => s,
                Err(e) => return (0, vec![format!("client {c}: connect: {e}")]),
            };
            let io = hyper_util::rt::TokioIo::new(stream);
            let (mut send, conn) = match hyper::client::conn::http1::handshake(io).await {
                Ok(x) => x,
                Err(e) => return (0, vec![format!("client {c}: handshake: {e}")]),
            };
            tokio::spawn(conn);
            let mut i = 0u64;
            while tokio::time::Instant::now() < until {
                let lane = if (c + i as usize).is_multiple_of(2) {
                    "base"
                } else {
                    "canary"
                };
                let req = http::Request::get("/mock")
                    .header("host", &addr)
                    .header("x-asm-prefer-tag", lane)
                    .header("my-request-id", format!("load-{c}-{i}"))
                    .body(Empty::<bytes::Bytes>::new())
                    .unwrap();
                i += 1;
                match send.send_request(req).await {
                    Ok(resp) => {
                        let status = resp.status();
                        let body = resp.into_body().collect().await.map(|b| b.to_bytes());
                        match body {
                            Ok(b)
                                if status == 200
                                    && versions(&String::from_utf8_lossy(&b)).len() == 3 =>
                            {
                                ok += 1
                            }
                            Ok(b) => {
                                failed.push(format!("{status} {}", String::from_utf8_lossy(&b)))
                            }
                            Err(e) => failed.push(format!("body: {e}")),
                        }
                    }
                    Err(e) => {
                        failed.push(format!("client {c}: {e}"));
                        break;
                    }
                }
            }
            (ok, failed)
        });
    }
    let (mut ok, mut failed) = (0, Vec::new());
    while let Some(r) = tasks.join_next().await {
        let (o, f) = r.unwrap();
        ok += o;
        failed.extend(f);
    }
    (ok, failed)
}

/// The soft limit on open files of a running process.
fn soft_open_files(pid: u32) -> u64 {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .to_string();
    line.split_whitespace().nth(3).unwrap().parse().unwrap()
}

/// Finding 2 (descriptors), the load half: started with `ulimit -Sn 1024`, `lanes up`
/// raises its limit, and 200 concurrent keep-alive clients through the gateway and the
/// seed's three-service chain for 10 s all get whole answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_2_two_hundred_keep_alive_clients_under_ulimit_1024_get_no_errors() {
    let d = Daemon::start_with_open_files(1024);
    let hard = {
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap()
            .to_string();
        line.split_whitespace()
            .nth(4)
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    assert_eq!(
        soft_open_files(d.child.id()),
        hard,
        "lanes up raised its soft limit"
    );
    d.ok(&["apply", "-f", "examples/seed/"]);
    tokio::task::block_in_place(|| settled(&d, 3));
    tokio::task::block_in_place(|| {
        eventually(Duration::from_secs(20), || {
            let (s, _, b) = http_get(&d.gateway, "/mock", &[("x-asm-prefer-tag", "canary")]);
            (s == 200 && versions(&b).len() == 3).then_some(())
        })
    });
    let (ok, failed) = keep_alive_load(&d.gateway, 200, 10).await;
    println!("200 clients, 10 s: {ok} answers, {} failures", failed.len());
    assert!(
        failed.is_empty(),
        "{} failures, first: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(ok >= 200, "every client got answers ({ok})");
}

/// Finding 2 (descriptors), the silent half: 20,000 connections to the gateway that
/// never send a byte (from two helper processes, 10,000 each) do not stop `/healthz`
/// from answering; they are refused past the gateway's cap and closed at the
/// first-byte deadline.
#[test]
fn finding_2_twenty_thousand_silent_connections_leave_healthz_answering() {
    let d = Daemon::start();
    let gw = d.gateway.trim_start_matches("http://").to_string();
    let (host, port) = gw.rsplit_once(':').unwrap();
    let script = repo().join("crates/lanes/tests/tools/silent_connections.py");
    let floods: Vec<_> = (0..2)
        .map(|_| {
            Command::new("python3")
                .arg(&script)
                .args([host, port, "10000", "8"])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let started = Instant::now();
    let (mut answered, mut slowest) = (0, Duration::ZERO);
    while started.elapsed() < Duration::from_secs(8) {
        let t = Instant::now();
        let (status, _, body) = http_get(&d.api, "/healthz", &[]);
        assert_eq!(status, 200, "/healthz during the flood: {body}");
        slowest = slowest.max(t.elapsed());
        answered += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut opened = 0;
    for f in floods {
        let out = f.wait_with_output().unwrap();
        opened += String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<u32>()
            .unwrap_or(0);
    }
    assert_eq!(opened, 20_000);
    println!(
        "/healthz answered {answered} times during 20,000 silent connections; slowest {slowest:?}"
    );
    assert!(answered > 50);
    // The gateway still serves once the flood is gone.
    let (status, _, _) = http_get(&d.gateway, "/", &[]);
    assert_eq!(status, 404, "no route yet, but an answer");
}

/// The seed without its Rollouts (so a template change rolls at once), settled.
fn seed_without_rollouts(d: &Daemon) {
    for f in ["00-gateway.yaml", "10-apps.yaml", "20-lanes.yaml"] {
        d.ok(&["apply", "-f", &format!("examples/seed/{f}")]);
    }
    settled(d, 3);
    routed(d);
}

/// A pod's IP by its app label.
fn pod_ip(d: &Daemon, app: &str) -> String {
    let pods: serde_json::Value =
        serde_json::from_str(&d.ok(&["get", "po", "-l", &format!("app={app}"), "-o", "json"]))
            .unwrap();
    pods["items"][0]["status"]["podIP"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Finding 1 (isolation), the exploit: through a pod's outbound sidecar, the API, the
/// gateway and other sidecars are out of reach (403), the apply the exploit sent never
/// lands, and pod processes do not run as root.
#[test]
fn finding_1_a_pod_cannot_reach_lanes_own_listeners_nor_run_as_root() {
    let d = Daemon::start();
    seed_without_rollouts(&d);
    let (a, b) = (pod_ip(&d, "mocka"), pod_ip(&d, "mockb"));
    let proxy = format!("{a}:15001");
    let api = d.api.trim_start_matches("http://").to_string();
    let gw = d.gateway.trim_start_matches("http://").to_string();
    let targets = [
        format!("http://{api}/apis/apps/v1/deployments"),
        format!(
            "http://localhost:{}/healthz",
            api.rsplit_once(':').unwrap().1
        ),
        format!("http://{gw}/mock"),
        format!("http://{b}:15006/"),
        format!("http://{a}:15001/"),
    ];
    for t in &targets {
        let (status, _, body) = http_get(&proxy, t, &[]);
        assert_eq!(status, 403, "{t} through the sidecar: {body}");
        assert!(body.contains("own listeners"), "{body}");
    }
    // A pod's own command runs as an unprivileged user (as root, `nobody`).
    apply_text(
        &d,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: whoami\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: whoami}\n  template:\n    metadata:\n      labels: {app: whoami}\n    spec:\n      containers:\n        - name: main\n          image: whoami\n          command: [sh, -c, 'id -u; exec sleep 600']\n",
    );
    let pod: String = eventually(Duration::from_secs(20), || {
        let names = d.ok(&["get", "po", "-l", "app=whoami", "-o", "name"]);
        names
            .lines()
            .next()
            .map(|n| n.trim_start_matches("pod/").to_string())
    });
    let uid = eventually(Duration::from_secs(20), || {
        let out = d.lanes(&["logs", &pod]);
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (!text.is_empty()).then_some(text)
    });
    // As root, `nobody` — unless the lanes binary sits where other users cannot reach
    // it (a private home directory): then lanes up warns and keeps its own user.
    let me = nix::unistd::Uid::effective();
    let reachable = {
        use std::os::unix::fs::PermissionsExt;
        std::path::Path::new(bin())
            .ancestors()
            .filter(|p| !p.as_os_str().is_empty())
            .all(|p| std::fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
    };
    let expected = if me.is_root() && reachable {
        65534
    } else {
        me.as_raw()
    };
    assert_eq!(uid, expected.to_string());
}

/// Finding 3 (loops): a request aimed at the sidecar's own listener is refused, and a
/// chain that calls itself (mockc's upstream is mocka) ends with 508 after a bounded
/// number of hops instead of growing until descriptors run out.
#[test]
fn finding_3_a_call_loop_ends_with_508() {
    let d = Daemon::start();
    seed_without_rollouts(&d);
    d.ok(&[
        "patch", "deployment", "mockc-v1", "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"default","env":[{"name":"upstream_url","value":"http://mocka:8000/"}]}]}}}}"#,
    ]);
    settled(&d, 3);
    let (status, _, body) = eventually(Duration::from_secs(30), || {
        let r = http_get(
            &d.gateway,
            "/mock",
            &[("x-asm-prefer-tag", "base"), ("my-request-id", "loop-1")],
        );
        (r.0 != 200).then_some(r)
    });
    assert_eq!(status, 508, "{body}");
    assert!(body.contains("refused as a loop"), "{body}");
    let calls = body.matches("-> mocka").count();
    println!("the loop was cut after {calls} rounds of the chain");
    assert!(
        (5..=20).contains(&calls),
        "{calls} rounds before the loop was cut"
    );
    // The daemon answers as before.
    let (status, _, _) = http_get(&d.api, "/healthz", &[]);
    assert_eq!(status, 200);
}

/// Sends a POST whose chunked body turns malformed after `good` bytes: the status
/// answered, or 0 when the connection was closed without one.
fn post_malformed_chunked(gateway: &str, lane: &str, id: &str, good: usize) -> u16 {
    use std::io::{Read, Write};
    let addr = gateway.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let head = format!(
        "POST /mock HTTP/1.1\r\nHost: {addr}\r\nx-asm-prefer-tag: {lane}\r\nmy-request-id: {id}\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let _ = s.write_all(head.as_bytes());
    let chunk = vec![b'x'; 8192];
    for _ in 0..good / chunk.len() {
        let _ = s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes());
        let _ = s.write_all(&chunk);
        let _ = s.write_all(b"\r\n");
    }
    let _ = s.write_all(b"zz-not-a-chunk-size\r\n\r\n");
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    String::from_utf8_lossy(&raw)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// The attempts counted on a service's subset with an outcome, from `/metrics`.
fn attempts(d: &Daemon, service: &str, subset: &str, outcome: &str) -> u64 {
    let bearer = format!("Bearer {}", d.token());
    let (_, _, text) = http_get(&d.api, "/metrics", &[("authorization", &bearer)]);
    text.lines()
        .filter(|l| l.starts_with("lanes_upstream_attempts_total{"))
        .filter(|l| {
            l.contains(&format!("service=\"{service}\""))
                && l.contains(&format!("subset=\"{subset}\""))
                && l.contains(&format!("outcome=\"{outcome}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Finding 4 (attribution): a request body that turns malformed after 64 KiB is the
/// client's failure — a 400 or a closed connection, counted as `client_error`, never as
/// a failure of the service — on the canary lane and the base lane alike.
#[test]
fn finding_4_a_malformed_body_is_the_clients_failure_not_the_services() {
    let d = Daemon::start();
    seed_without_rollouts(&d);
    for (i, lane) in ["canary", "base", "canary", "base"].iter().enumerate() {
        let status = post_malformed_chunked(&d.gateway, lane, &format!("bad-{i}"), 80 * 1024);
        assert!(status == 400 || status == 0, "{lane}: answered {status}");
    }
    assert_eq!(
        attempts(&d, "mocka", "base", "failure"),
        0,
        "no failure held against mocka"
    );
    assert!(attempts(&d, "mocka", "base", "client_error") >= 4);
    // Well-formed traffic is served as before.
    let (status, _, body) = http_get(&d.gateway, "/mock", &[("x-asm-prefer-tag", "canary")]);
    assert_eq!(status, 200, "{body}");
}

/// The store's resourceVersion (one counter for every write), from a list.
fn store_version(d: &Daemon) -> u64 {
    let bearer = format!("Bearer {}", d.token());
    let (_, _, body) = http_get(&d.api, "/api/v1/services", &[("authorization", &bearer)]);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// CPU seconds (user + system) a process has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = stat.rsplit_once(')').unwrap().1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// Finding 5 (idle write loop): with the seed applied and settled, nothing is written
/// for 10 s (the store's resourceVersion stands still), and `lanes up` — its API, the
/// operator's controllers in it, the runtime — uses below 1% of a core.
#[test]
fn finding_5_an_idle_seed_writes_nothing() {
    let d = Daemon::start();
    d.ok(&["apply", "-f", "examples/seed/"]);
    settled(&d, 3);
    // Settled: the version stops moving.
    let mut before = store_version(&d);
    eventually(Duration::from_secs(20), || {
        std::thread::sleep(Duration::from_secs(2));
        let now = store_version(&d);
        let still = now == before;
        before = now;
        still.then_some(())
    });
    let cpu = cpu_seconds(d.child.id());
    std::thread::sleep(Duration::from_secs(10));
    let after = store_version(&d);
    let used = cpu_seconds(d.child.id()) - cpu;
    println!(
        "idle 10 s: {} writes, {:.2}% of a core",
        after - before,
        used * 10.0
    );
    assert_eq!(after, before, "writes while idle");
    assert!(
        used * 10.0 < 1.0,
        "{:.2}% of a core while idle",
        used * 10.0
    );
}

/// Runs `lanes up` on a state directory expecting it to refuse: its stderr.
fn up_refuses(state: &std::path::Path) -> String {
    let out = Command::new(bin())
        .args(UP_ON_FREE_PORTS)
        .arg("--state-dir")
        .arg(state)
        .output()
        .unwrap();
    assert!(!out.status.success(), "lanes up started on a damaged store");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Finding 7 (store damage): an emptied store file stops `lanes up` with a clear
/// message (`--recover` starts over knowingly); a flipped byte in a lane group is
/// reported, and the routing generated from it is kept, not deleted.
#[test]
fn finding_7_a_damaged_store_is_refused_or_reported_never_read_as_empty() {
    use redb::ReadableTable;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let d = Daemon::start_in(&state, &[]);
    d.ok(&["apply", "-f", "examples/seed/"]);
    let vs_before = eventually(Duration::from_secs(20), || {
        let names = d.ok(&["get", "vs", "-n", "istio-system", "-o", "name"]);
        (names.lines().count() == 5).then_some(names)
    });
    d.stop();

    // One flipped byte inside the lane group's stored JSON.
    let file = state.join("state.redb");
    {
        let db = redb::Database::create(&file).unwrap();
        let table: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("objects");
        let wtx = db.begin_write().unwrap();
        {
            let mut t = wtx.open_table(table).unwrap();
            let key = "ASMSwimLaneGroup//rollout";
            let mut bytes = t
                .get(key)
                .unwrap()
                .expect("the lane group is stored")
                .value()
                .to_vec();
            let at = bytes.len() / 2;
            bytes[at] ^= 0x01;
            t.insert(key, bytes.as_slice()).unwrap();
        }
        wtx.commit().unwrap();
    }
    let d = Daemon::start_in(&state, &[]);
    let out = d.lanes(&["get", "asmswimlanegroup"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("damaged") && err.contains("ASMSwimLaneGroup//rollout"),
        "{err}"
    );
    std::thread::sleep(Duration::from_secs(3));
    let vs_after = d.ok(&["get", "vs", "-n", "istio-system", "-o", "name"]);
    assert_eq!(vs_after, vs_before, "the generated routing is kept");
    d.stop();

    // An emptied file: refused, then --recover starts over.
    std::fs::write(&file, b"").unwrap();
    let err = up_refuses(&state);
    assert!(
        err.contains("is empty") && err.contains("--recover"),
        "{err}"
    );
    let d = Daemon::start_in(&state, &["--recover"]);
    assert_eq!(d.ok(&["get", "svc", "-A", "-o", "name"]).trim(), "");
    let aside: Vec<_> = std::fs::read_dir(&state)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("state.redb.damaged-")
        })
        .collect();
    assert_eq!(aside.len(), 1, "the damaged file is kept aside");
}

/// Finding 9 (object size): an object over 1.5 MiB is refused with 413 as a `Status`,
/// nothing stored; a body over the API's limit gets a `Status` too, not plain text.
#[test]
fn finding_9_objects_over_the_limit_are_refused_with_a_413_status() {
    let d = Daemon::start();
    let bearer = format!("Bearer {}", d.token());
    let client = d.client();
    let big = "x".repeat(2 * 1024 * 1024);
    let svc = serde_json::json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "big", "namespace": "default", "annotations": {"a": big}},
        "spec": {"ports": [{"port": 80}]}});
    let rt = tokio::runtime::Runtime::new().unwrap();
    let e = rt
        .block_on(client.apply(vec![svc]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("more than") && e.contains("bytes"), "{e}");
    let (status, _, body) = http_get(
        &d.api,
        "/api/v1/namespaces/default/services/big",
        &[("authorization", &bearer)],
    );
    assert_eq!(status, 404, "nothing stored: {body}");
    // A body over the API's limit.
    use std::io::{Read, Write};
    let addr = d.api.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let len = 40 * 1024 * 1024;
    let head = format!(
        "POST /api/v1/namespaces/default/services HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {bearer}\r\nContent-Type: application/json\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    // The API reads up to its limit, then answers; the rest of the body is not wanted.
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = vec![b' '; 1024 * 1024];
        for _ in 0..40 {
            if w.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        if raw.ends_with(b"}") {
            break;
        }
    }
    let _ = s.shutdown(std::net::Shutdown::Both);
    let _ = writer.join();
    let text = String::from_utf8_lossy(&raw);
    assert!(
        text.starts_with("HTTP/1.1 413"),
        "{}",
        &text[..text.len().min(300)]
    );
    let body = text.split_once("\r\n\r\n").unwrap().1;
    let v: serde_json::Value =
        serde_json::from_str(body.trim()).unwrap_or_else(|_| panic!("not JSON: {body}"));
    assert_eq!(v["kind"], "Status");
    assert_eq!(v["reason"], "RequestEntityTooLarge");
}

/// Finding 6 (one Deployment wedging all): `replicas: 100000` is refused with a clear
/// error naming the field and the bound, through every write path, and the other
/// Deployments go on.
#[test]
fn finding_6_a_deployment_over_the_replica_bound_is_refused() {
    let d = Daemon::start();
    seed_without_rollouts(&d);
    let out = d.lanes(&[
        "patch",
        "deployment",
        "mocka-v1",
        "-p",
        r#"{"spec":{"replicas":100000}}"#,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("spec.replicas: 100000 is more than the 1000"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("big.yaml");
    std::fs::write(&f, "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: huge\nspec:\n  replicas: 100000\n  selector:\n    matchLabels: {app: huge}\n  template:\n    metadata:\n      labels: {app: huge}\n    spec:\n      containers:\n        - name: main\n          image: huge\n").unwrap();
    let out = d.lanes(&["apply", "-f", f.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("spec.replicas"));
    let names = d.ok(&["get", "deploy", "-o", "name"]);
    assert!(!names.contains("huge"), "nothing stored: {names}");
    // The rest goes on: mocka still scales.
    d.ok(&[
        "patch",
        "deployment",
        "mocka-v1",
        "-p",
        r#"{"spec":{"replicas":2}}"#,
    ]);
    settled(&d, 3);
}

/// Finding 10 (timeouts that tell the truth): with mockc stuck, the hop nearest it
/// times out first and its 504 names it, reaching the client through the whole chain
/// well within the client's budget; no hop above waits out its own timer.
#[test]
fn finding_10_a_stuck_service_is_named_by_the_hop_nearest_it() {
    let d = Daemon::start();
    seed_without_rollouts(&d);
    d.ok(&[
        "patch", "deployment", "mockc-v1", "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"default","env":[{"name":"LATENCY_MS","value":"30000"}]}]}}}}"#,
    ]);
    settled(&d, 3);
    eventually(Duration::from_secs(30), || {
        let pods = d.ok(&["get", "po", "-l", "app=mockc", "-o", "json"]);
        let v: serde_json::Value = serde_json::from_str(&pods).unwrap();
        let items = v["items"].as_array().unwrap();
        (items.len() == 1 && pods.contains("LATENCY_MS")).then_some(())
    });
    // The gateway and sidecars learn the new pod a moment after the store says so:
    // ask until the chain reaches it (an old pod answers 200 at once).
    let (status, body, took) = eventually(Duration::from_secs(30), || {
        let started = Instant::now();
        let (status, _, body) = http_get(
            &d.gateway,
            "/mock",
            &[
                ("x-asm-prefer-tag", "base"),
                ("my-request-id", "stuck-1"),
                ("x-lanes-budget-ms", "3000"),
            ],
        );
        (status != 200).then(|| (status, body, started.elapsed()))
    });
    println!("answered {status} after {took:?}: {body}");
    assert_eq!(status, 504, "{body}");
    assert!(
        body.contains("-> mocka") && body.contains("-> mockb"),
        "the chain above passed it on: {body}"
    );
    assert!(
        body.contains("pod mockc-v1"),
        "the 504 names the stuck pod: {body}"
    );
}

/// Finding 10 (orphans): a pod running its own command dies with `lanes up`, even when
/// the daemon is killed with `kill -9`.
#[test]
fn finding_10_a_custom_command_pod_dies_with_a_killed_daemon() {
    let d = Daemon::start();
    apply_text(
        &d,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: sleeper\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: sleeper}\n  template:\n    metadata:\n      labels: {app: sleeper}\n    spec:\n      containers:\n        - name: main\n          image: sleeper\n          command: [sh, -c, 'exec sleep 600']\n",
    );
    let pid: u32 = eventually(Duration::from_secs(20), || {
        let pods: serde_json::Value =
            serde_json::from_str(&d.ok(&["get", "po", "-l", "app=sleeper", "-o", "json"])).unwrap();
        pods["items"][0]["status"]["containerStatuses"][0]["containerID"]
            .as_str()
            .and_then(|s| s.strip_prefix("pid://"))
            .and_then(|p| p.parse().ok())
    });
    // The pod's process group: the shim and the command under it.
    let group: Vec<u32> = eventually(Duration::from_secs(10), || {
        let members: Vec<u32> = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|p| {
                std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| {
                    s.rsplit_once(')')
                        .and_then(|(_, r)| r.split_whitespace().nth(2))
                        .map(str::to_string)
                        == Some(pid.to_string())
                })
            })
            .collect();
        (members.len() >= 2).then_some(members)
    });
    d.kill9();
    eventually(Duration::from_secs(10), || {
        let alive: Vec<&u32> = group
            .iter()
            .filter(|p| {
                std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| {
                    !s.rsplit_once(')')
                        .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
                })
            })
            .collect();
        alive.is_empty().then_some(())
    });
}

/// The files of the `logs` directory whose names start with `prefix`, with sizes.
fn log_files(d: &Daemon, prefix: &str) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = std::fs::read_dir(d.state.join("logs"))
        .map(|r| {
            r.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
                .map(|e| {
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        e.metadata().map_or(0, |m| m.len()),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Finding 10 (logs): a pod's log is capped with one rotated file, its previous run is
/// kept (`lanes logs --previous`), across a restart of `lanes up` too, and its logs go
/// when the pod goes.
#[test]
fn finding_10_pod_logs_are_capped_kept_for_the_last_run_and_removed_with_the_pod() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let d = Daemon::start_in(&state, &[]);
    apply_text(
        &d,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: crasher\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: crasher}\n  template:\n    metadata:\n      labels: {app: crasher}\n    spec:\n      containers:\n        - name: main\n          image: crasher\n          command: [sh, -c, 'echo run-$(date +%s%N); sleep 0.3; exit 3']\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: chatty\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: chatty}\n  template:\n    metadata:\n      labels: {app: chatty}\n    spec:\n      containers:\n        - name: main\n          image: chatty\n          command: [sh, -c, 'yes 0123456789abcdef | head -c 30000000; exec sleep 600']\n",
    );
    let pod = |app: &str| {
        eventually(Duration::from_secs(20), || {
            let names = d.ok(&["get", "po", "-l", &format!("app={app}"), "-o", "name"]);
            names
                .lines()
                .next()
                .map(|n| n.trim_start_matches("pod/").to_string())
        })
    };
    let crasher = pod("crasher");
    // A pod listed before its container has started has no log yet (as in Kubernetes,
    // where it is waiting to start): ask until both runs have one.
    let (now, before) = eventually(Duration::from_secs(20), || {
        let text = |out: std::process::Output| {
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        };
        let now = text(d.lanes(&["logs", &crasher]))?;
        let before = text(d.lanes(&["logs", &crasher, "--previous"]))?;
        (now.starts_with("run-") && before.starts_with("run-") && now != before)
            .then_some((now, before))
    });
    println!("current run {now}, previous run {before}");
    // The chatty pod's 30 MB of output: the log and one rotated file, each at most 10 MiB.
    let chatty = pod("chatty");
    let files = eventually(Duration::from_secs(30), || {
        let f = log_files(&d, &format!("default_{chatty}.log"));
        (f.iter().map(|(_, n)| n).sum::<u64>() >= 10 * 1024 * 1024 && f.len() == 2).then_some(f)
    });
    println!("chatty's logs: {files:?}");
    assert!(
        files.iter().all(|(_, n)| *n <= 10 * 1024 * 1024),
        "{files:?}"
    );
    // A restart of lanes up keeps the last run's log.
    d.stop();
    let d = Daemon::start_in(&state, &[]);
    // Once the pod runs again, the run before the restart is its previous run.
    eventually(Duration::from_secs(20), || {
        let kept = d.lanes(&["logs", &chatty, "--previous"]);
        (kept.status.success() && !kept.stdout.is_empty()).then_some(())
    });
    // Removed with the pod.
    d.ok(&["delete", "deployment", "chatty", "crasher"]);
    eventually(Duration::from_secs(30), || {
        (log_files(&d, &format!("default_{chatty}")).is_empty()
            && log_files(&d, &format!("default_{crasher}")).is_empty())
        .then_some(())
    });
}

/// Finding 10 (a fallback into nowhere): a lane group whose `fallbackTarget` names no
/// lane of it is refused, naming the field; nothing of the apply is stored.
#[test]
fn finding_10_a_fallback_target_that_is_no_lane_is_refused() {
    let d = Daemon::start();
    d.ok(&["apply", "-f", "examples/seed/"]);
    let seed = std::fs::read_to_string(repo().join("examples/seed/20-lanes.yaml")).unwrap();
    let bad = seed.replace("fallbackTarget: base", "fallbackTarget: nosuch");
    assert_ne!(bad, seed);
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("lanes.yaml");
    std::fs::write(&f, &bad).unwrap();
    let out = d.lanes(&["apply", "-f", f.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("spec.permissiveModeConfiguration.fallbackTarget")
            && err.contains("\"nosuch\" is not a lane of this group"),
        "{err}"
    );
    let group = d.ok(&["get", "asmswimlanegroup", "rollout", "-o", "yaml"]);
    assert!(group.contains("fallbackTarget: base"), "unchanged: {group}");
}

/// Finding 10 (slow deletes): `lanes delete -f` of 1,000 objects deletes each (one
/// DELETE per object, as the Kubernetes API has it, several in flight) and reports each.
/// (1,000, not the 5,000 of before: each write now passes the lane controller on its
/// own, which costs time in the number of Services — the scale work of issue 16.)
#[test]
fn finding_10_delete_f_of_a_thousand_objects_deletes_and_reports_each() {
    let d = Daemon::start();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("many.yaml");
    let text: String = (0..1000)
        .map(|i| format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: s{i}\nspec:\n  ports:\n    - port: 80\n---\n"))
        .collect();
    std::fs::write(&f, text).unwrap();
    let path = f.to_str().unwrap();
    d.ok(&["apply", "-f", path]);
    let before = store_version(&d);
    let started = Instant::now();
    let out = d.ok(&["delete", "-f", path]);
    println!("delete -f of 1,000 objects: {:?}", started.elapsed());
    assert_eq!(
        out.lines().filter(|l| l.ends_with(" deleted")).count(),
        1000
    );
    assert_eq!(d.ok(&["get", "svc", "-o", "name"]).trim(), "");
    assert_eq!(store_version(&d), before + 1000, "one version per deletion");
    // Again: every one is reported missing, and the command fails.
    let again = d.lanes(&["delete", "-f", path]);
    assert!(!again.status.success());
    assert_eq!(
        String::from_utf8_lossy(&again.stderr)
            .matches("not found")
            .count(),
        1000
    );
}

/// Sets the file size limit of a running process (`prlimit`, util-linux).
fn set_file_size_limit(pid: u32, limit: &str) {
    let st = Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--fsize={limit}")])
        .status()
        .unwrap();
    assert!(st.success(), "prlimit --fsize={limit}");
}

/// Finding 8 (a full disk): when the store file cannot grow (a file size limit stands
/// in for a full disk), writes fail with a `Status`, `/readyz` says not ready while
/// `/healthz` stays up, and once the file can grow again writes go on — no restart.
#[test]
fn finding_8_after_a_full_disk_the_store_takes_writes_again_once_space_is_back() {
    let d = Daemon::start();
    d.ok(&["apply", "-f", "examples/seed/"]);
    let file = d.state.join("state.redb");
    let size = std::fs::metadata(&file).unwrap().len();
    set_file_size_limit(d.child.id(), &format!("{size}:unlimited"));
    // Objects enough to make the file grow.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("big.yaml");
    let pad = "x".repeat(60 * 1024);
    let text: String = (0..40)
        .map(|i| format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: grow{i}\n  annotations: {{pad: {pad}}}\nspec:\n  ports:\n    - port: 80\n---\n"))
        .collect();
    std::fs::write(&f, text).unwrap();
    let path = f.to_str().unwrap();
    let out = d.lanes(&["apply", "-f", path]);
    assert!(
        !out.status.success(),
        "the write cannot land on a full disk"
    );
    // What did land wakes the controllers, whose small writes may still fit in the
    // file's free pages (and so make the store ready again, rightly). A write too
    // large for any free page fails and leaves the store not ready — unless such a
    // small write lands just after it, so try again until the probe is the last word.
    // Reads are not used to wait: while the disk stays full, reopening the store
    // (which repairs it) may fail too.
    let probe = dir.path().join("probe.yaml");
    let pad = "x".repeat(1024 * 1024);
    std::fs::write(
        &probe,
        format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: probe\n  annotations: {{pad: {pad}}}\nspec:\n  ports:\n    - port: 80\n"),
    )
    .unwrap();
    let mut not_ready = None;
    for _ in 0..30 {
        let out = d.lanes(&["apply", "-f", probe.to_str().unwrap()]);
        assert!(
            !out.status.success(),
            "a 1 MiB write cannot land on a full disk"
        );
        let (status, _, body) = http_get(&d.api, "/readyz", &[]);
        if status == 503 {
            not_ready = Some(body);
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let body = not_ready.expect("after a failed write /readyz says 503 within 30 tries");
    assert!(body.contains("\"kind\":\"Status\""), "{body}");
    assert_eq!(
        http_get(&d.api, "/healthz", &[]).0,
        200,
        "the daemon is alive"
    );
    // Space is back: the next write reopens the store and lands.
    set_file_size_limit(d.child.id(), "unlimited");
    let out = d.lanes(&["apply", "-f", path]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(http_get(&d.api, "/readyz", &[]).0, 200);
    let names = d.ok(&["get", "svc", "-o", "name"]);
    assert!(
        names.contains("grow39") && names.contains("mocka"),
        "nothing lost: {names}"
    );
}
