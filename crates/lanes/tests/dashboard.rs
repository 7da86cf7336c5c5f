//! The dashboard in a real browser: Debian's headless Chromium driven by Playwright
//! (`tests/browser/driver.cjs`; both installed by `scripts/test`) against `lanes up`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// A headless Chromium page, driven one command at a time.
struct Browser {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Browser {
    fn start() -> Browser {
        let playwright = std::env::var_os("LANES_PLAYWRIGHT").map_or_else(
            || repo().join("target/node/node_modules/playwright-core"),
            PathBuf::from,
        );
        assert!(
            playwright.exists(),
            "no playwright-core at {} (scripts/test installs it, and Debian's chromium)",
            playwright.display()
        );
        let mut child = Command::new("node")
            .arg(repo().join("crates/lanes/tests/browser/driver.cjs"))
            .env("LANES_PLAYWRIGHT", &playwright)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("node runs the browser driver");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Browser {
            child,
            stdin,
            stdout,
        }
    }

    fn send(&mut self, cmd: Value) -> Value {
        writeln!(self.stdin, "{cmd}").unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        let answer: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("the browser driver said {line:?}: {e}"));
        assert!(answer.get("error").is_none(), "{cmd}: {answer}");
        answer
    }

    fn wait(&mut self, cell: &str, contains: &str, ms: u64) -> Value {
        self.send(json!({"do": "wait", "cell": cell, "contains": contains, "ms": ms}))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "{}", json!({"do": "quit"}));
        let _ = self.child.wait();
    }
}

#[test]
fn the_map_shows_the_seed_and_follows_a_new_canary_without_reloading() {
    let d = Daemon::start();
    d.ok(&["apply", "-f", "examples/seed/"]);
    settled(&d, 3);
    let token = std::fs::read_to_string(d.state.join("token")).unwrap();
    let token = token.trim();
    let bearer = format!("Bearer {token}");
    // Without the token the data is refused and the page asks for it.
    assert_eq!(http_get(&d.api, "/ui/api/map", &[]).0, 401);
    let (status, _, body) = http_get(&d.api, "/ui/api/map", &[("authorization", &bearer)]);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"mocka\""), "{body}");
    let mut b = Browser::start();
    let anon = b.send(json!({"do": "open", "url": format!("{}/ui/", d.api)}));
    assert_eq!(anon["login"], true, "{anon}");
    assert_eq!(anon["cells"], json!({}), "{anon}");

    // With it: mocka, mockb and mockc run v1 in base; canary falls through to base.
    let url = format!("{}/ui/#token={token}", d.api);
    b.send(json!({"do": "open", "url": url}));
    let page = b.wait("rollout/mockc/base", "v1", 10_000);
    assert_eq!(page["ok"], true, "{page}");
    for svc in ["mocka", "mockb", "mockc"] {
        let base = page["cells"][format!("rollout/{svc}/base")]
            .as_str()
            .unwrap();
        assert_eq!(base, "v11/1 ready", "{svc}: {page}");
        let canary = &page["cells"][format!("rollout/{svc}/canary")];
        assert_eq!(canary, "→ base", "{svc}: {page}");
    }
    let loaded = page["loadedAt"].clone();
    let shots = repo().join("target/dashboard");
    std::fs::create_dir_all(&shots).unwrap();
    b.send(json!({"do": "shot", "path": shots.join("map-seed.png")}));

    // mocka's release is judged by its canary's success rate, measured each second.
    let analysis = json!({"spec": {"strategy": {"canary": {"analysis": {
        "interval": "1s", "failureLimit": 3, "minRequests": 1,
        "metrics": [{"name": "success-rate", "successRate": {"min": 0.95}}]}}}}});
    d.ok(&[
        "patch",
        "rollout",
        "rollouts-mocka",
        "--type",
        "merge",
        "-p",
        &analysis.to_string(),
    ]);
    // A new image for mocka: its canary cell shows v2 without a reload.
    patch_image(&d, "mocka-v1", "2.0", "");
    // Its pod first shows unready (0/1, still falling back), then serving.
    let after = b.wait("rollout/mocka/canary", "v21/1 ready", 20_000);
    assert_eq!(after["ok"], true, "{after}");
    eprintln!(
        "the canary cell showed v2 serving {} ms after kubectl patch returned",
        after["elapsedMs"]
    );
    assert_eq!(after["loadedAt"], loaded, "the page was reloaded");
    assert_eq!(after["cells"]["rollout/mocka/canary"], "v21/1 ready");
    assert_eq!(after["cells"]["rollout/mockb/canary"], "→ base");
    b.send(json!({"do": "shot", "path": shots.join("map-canary.png")}));

    // A canary request's path, sent from the page: mocka's canary (v2), then mockb and
    // mockc from the baseline (v1), each marked with its fallback.
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let sent = b.send(json!({"do": "path", "lane": "rollout: canary", "trace": trace}));
    assert!(
        sent["said"]
            .as_str()
            .unwrap()
            .starts_with(&format!("trace {trace} · answered 200")),
        "{sent}"
    );
    let hops: Vec<(String, String, Value, u64)> = sent["hops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["service"].as_str().unwrap().to_string(),
                h["version"].as_str().unwrap().to_string(),
                h["fallback"].clone(),
                h["depth"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        hops,
        [
            ("mocka".into(), "v2".into(), Value::Null, 1),
            ("mockb".into(), "v1".into(), json!("lane_lacks_service"), 2),
            ("mockc".into(), "v1".into(), json!("lane_lacks_service"), 3),
        ],
        "{sent}"
    );
    assert!(
        sent["recent"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str().unwrap().contains(trace)),
        "the newest requests list it: {sent}"
    );
    b.send(json!({"do": "shot", "path": shots.join("request-path.png")}));

    // The release waits for approval, its analysis measuring canary traffic: the page
    // charts the measurements against the bound, and lists the release's Events.
    let id = "Rollout/default/rollouts-mocka";
    let judged = eventually(Duration::from_secs(30), || {
        let (status, _, _) = http_get(&d.gateway, "/mock", &[("x-asm-prefer-tag", "canary")]);
        assert_eq!(status, 200);
        let page = b.send(json!({"do": "release", "id": id, "contains": "StepPaused", "ms": 100}));
        let passed = page["charts"][0]["passed"].as_u64().unwrap_or(0);
        (passed >= 2).then_some(page)
    });
    let chart = &judged["charts"][0];
    assert_eq!(chart["caption"], "success-rate · min 0.95", "{judged}");
    assert_eq!(chart["thresholds"], 1, "{judged}");
    assert!(
        !judged["events"].as_array().unwrap().is_empty(),
        "the release's Events are listed: {judged}"
    );
    b.send(json!({"do": "shot", "path": shots.join("releases-analysis.png")}));
    let waiting =
        b.send(json!({"do": "release", "id": id, "contains": "StepPaused", "ms": 30_000}));
    assert_eq!(waiting["ok"], true, "{waiting}");
    assert_eq!(
        waiting["controls"],
        json!(["approve", "pause", "undo"]),
        "{waiting}"
    );
    let mockb = b.send(json!({"do": "release", "id": "Rollout/default/rollouts-mockb", "contains": "Healthy", "ms": 5_000}));
    assert_eq!(mockb["controls"], json!(["pause"]), "{mockb}");
    // In a phone-wide window, with the keyboard alone: the page does not scroll sideways,
    // and Tab then Enter pauses rollouts-mockb.
    let keys = b.send(json!({"do": "keys", "id": "Rollout/default/rollouts-mockb", "control": "pause", "width": 380}));
    assert_eq!(keys["overflow"], 0, "{keys}");
    assert_eq!(keys["outcome"], "rollout/rollouts-mockb paused", "{keys}");
    let r: Value =
        serde_json::from_str(&d.ok(&["get", "rollout", "rollouts-mockb", "-o", "json"])).unwrap();
    assert_eq!(r["spec"]["strategy"]["paused"], true);
    b.send(json!({"do": "shot", "path": shots.join("releases-waiting.png")}));
    let clicked = b.send(json!({"do": "click", "id": id, "control": "approve"}));
    assert_eq!(
        clicked["asked"], "approve Rollout default/rollouts-mocka?",
        "{clicked}"
    );
    assert_eq!(
        clicked["outcome"], "rollout/rollouts-mocka approved",
        "{clicked}"
    );
    // The Rollout moves on, as the API says.
    eventually(Duration::from_secs(60), || {
        let r: Value =
            serde_json::from_str(&d.ok(&["get", "rollout", "rollouts-mocka", "-o", "json"]))
                .unwrap();
        (r["status"]["phase"] == "Healthy").then_some(())
    });
    // A refused control gets the API's reason: mockb has no release to approve.
    let refused = b.send(
        json!({"do": "post", "path": "/ui/api/releases/rollout/default/rollouts-mockb/approve"}),
    );
    assert_eq!(refused["status"], 409, "{refused}");
    let why = refused["body"]["error"].as_str().unwrap();
    assert!(
        why.starts_with("rollout/rollouts-mockb cannot be approved: it is Healthy"),
        "{why}"
    );
    let unknown =
        b.send(json!({"do": "post", "path": "/ui/api/releases/rollout/default/nothing/approve"}));
    assert_eq!(unknown["status"], 404, "{unknown}");
}

/// Live traffic per cell: under steady load while the page is open, the map's requests
/// per second agree with the load generator's within 10%.
#[test]
fn the_maps_live_requests_per_second_agree_with_the_load_generator() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let d = Daemon::start();
    d.ok(&["apply", "-f", "examples/seed/"]);
    settled(&d, 3);
    let token = std::fs::read_to_string(d.state.join("token")).unwrap();
    let mut b = Browser::start();
    b.send(json!({"do": "open", "url": format!("{}/ui/#token={}", d.api, token.trim())}));
    assert_eq!(b.wait("rollout/mocka/base", "v1", 10_000)["ok"], true);
    // The load generator: 4 clients asking for the base lane, noting when each answer
    // came (Unix seconds, the clock the page's window is in).
    let unix = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, gw) = (stop.clone(), d.gateway.clone());
            std::thread::spawn(move || {
                let mut answered = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let (status, _, _) = http_get(&gw, "/mock", &[("x-asm-prefer-tag", "base")]);
                    assert_eq!(status, 200);
                    answered.push(unix());
                }
                answered
            })
        })
        .collect();
    // Past the warm-up and a whole window: the page's figures beside the generator's
    // answers in the same window.
    std::thread::sleep(Duration::from_secs(9));
    let page = b.send(json!({"do": "traffic"}));
    stop.store(true, Ordering::Relaxed);
    let answered: Vec<f64> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    for svc in ["mocka", "mockb", "mockc"] {
        let cell = format!("rollout/{svc}/base");
        let shown = page["rps"][&cell]
            .as_f64()
            .unwrap_or_else(|| panic!("{cell}: {page}"));
        let window = &page["window"][&cell];
        let (from, to) = (window[0].as_f64().unwrap(), window[1].as_f64().unwrap());
        let within = answered.iter().filter(|t| **t > from && **t <= to).count();
        let generated = within as f64 / (to - from);
        let off = (shown - generated).abs() / generated;
        eprintln!(
            "{cell}: the page shows {shown:.1} rps, the generator made {generated:.1} rps in the same {:.1} s ({:.1}% off)",
            to - from,
            off * 100.0
        );
        assert!(
            off < 0.10,
            "{cell}: page {shown} rps, generator {generated} rps: {page}"
        );
        let text = page["text"][&cell].as_str().unwrap();
        assert!(text.contains("100.0% ok") && text.contains("p99"), "{text}");
    }
    // No request asked for the canary lane.
    assert!(page["rps"].get("rollout/mocka/canary").is_none(), "{page}");
    b.send(json!({"do": "shot", "path": repo().join("target/dashboard/map-traffic.png")}));
}

/// `lanes dashboard --context C` serves the same page and data against a kubeconfig
/// context (here `lanes up`'s), with the context's credentials: the page needs no token.
#[test]
fn lanes_dashboard_serves_the_same_against_a_kubeconfig_context() {
    let d = Daemon::start();
    d.ok(&["apply", "-f", "examples/seed/"]);
    settled(&d, 3);
    let kubeconfig = d.state.join("kubeconfig");
    // A context that is not there is named.
    let missing = Command::new(bin())
        .args([
            "dashboard",
            "--context",
            "nowhere",
            "--address",
            "127.0.0.1:0",
        ])
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .unwrap();
    assert!(!missing.status.success());
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(err.contains("context \"nowhere\""), "{err}");
    let mut child = Killed(
        Command::new(bin())
            .args([
                "dashboard",
                "--context",
                "lanes",
                "--address",
                "127.0.0.1:0",
            ])
            .env("KUBECONFIG", &kubeconfig)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut first = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("{first}"))
        .trim_end_matches("/ui/")
        .to_string();
    let (status, _, body) = http_get(&url, "/ui/api/map", &[]);
    assert_eq!(status, 200, "{body}");
    let map: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(map["groups"][0]["name"], "rollout", "{map}");
    assert_eq!(map["releases"].as_array().unwrap().len(), 3, "{map}");
    // The page, in the browser: the map, and a control carried out through the context.
    let mut b = Browser::start();
    let page = b.send(json!({"do": "open", "url": format!("{url}/ui/")}));
    assert_eq!(page["login"], false, "{page}");
    let seed = b.wait("rollout/mocka/canary", "→ base", 10_000);
    assert_eq!(seed["ok"], true, "{seed}");
    let refused = b.send(
        json!({"do": "post", "path": "/ui/api/releases/rollout/default/rollouts-mocka/approve"}),
    );
    assert_eq!(refused["status"], 409, "{refused}");
    let paused = b.send(
        json!({"do": "post", "path": "/ui/api/releases/rollout/default/rollouts-mocka/pause"}),
    );
    assert_eq!(paused["status"], 200, "{paused}");
    assert_eq!(paused["body"]["message"], "rollout/rollouts-mocka paused");
    let r: Value =
        serde_json::from_str(&d.ok(&["get", "rollout", "rollouts-mocka", "-o", "json"])).unwrap();
    assert_eq!(r["spec"]["strategy"]["paused"], true);
    // No data plane here: request paths say so.
    let paths = b.send(json!({"do": "post", "path": "/ui/api/paths", "method": "GET"}));
    assert_eq!(paths["status"], 404, "{paths}");
    let why = paths["body"]["error"].as_str().unwrap();
    assert!(why.starts_with("no hop records here"), "{why}");
}

/// A child process killed when the test ends, passed or not.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A big map: a lane group of 100 services and 10 lanes. The page shows all 1,000 cells;
/// how long it took to show them (from navigation to the first map drawn) is printed.
#[test]
fn a_map_of_a_hundred_services_and_ten_lanes_loads_whole() {
    let d = Daemon::start();
    let mut yaml = String::new();
    for i in 0..100 {
        yaml.push_str(&format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: svc-{i}}}\nspec:\n  ports: [{{port: 8000, name: http}}]\n  selector: {{app: svc-{i}}}\n---\n"
        ));
    }
    let services: Vec<String> = (0..100)
        .map(|i| format!("{{name: svc-{i}, namespace: default}}"))
        .collect();
    yaml.push_str(&format!(
        "apiVersion: istio.alibabacloud.com/v1\nkind: ASMSwimLaneGroup\nmetadata: {{name: big}}\nspec:\n  ingress:\n    gateway: {{name: ingressgateway, namespace: istio-system, type: ASM}}\n    ingressRouting:\n      ingressRoutingStrategy: rule_based\n      weightedRoutingRule: {{hosts: ['*'], requestMatches: [{{uri: {{exact: /big}}}}]}}\n  isPermissive: true\n  permissiveModeConfiguration: {{fallbackTarget: lane-0, routeHeader: x-big-lane}}\n  autoUpdate: true\n  services: [{}]\n---\n",
        services.join(", ")
    ));
    for l in 0..10 {
        yaml.push_str(&format!(
            "apiVersion: istio.alibabacloud.com/v1\nkind: ASMSwimLane\nmetadata:\n  name: lane-{l}\n  labels: {{swimlane-group: big}}\nspec:\n  labelSelector: {{lane: lane-{l}}}\n  services: []\n  ingressRules:\n    - hosts: ['*']\n      name: lane-{l}\n      online: true\n      match: {{headers: {{x-big-lane: {{exact: lane-{l}}}}}, uri: {{exact: /big}}}}\n      route: {{destination: {{host: svc-0.default.svc.cluster.local}}}}\n---\n"
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.yaml");
    std::fs::write(&file, yaml).unwrap();
    d.ok(&["apply", "-f", file.to_str().unwrap()]);
    let token = std::fs::read_to_string(d.state.join("token")).unwrap();
    let url = format!("{}/ui/#token={}", d.api, token.trim());
    let mut b = Browser::start();
    let mut took = Vec::new();
    for _ in 0..3 {
        let page = b.send(json!({"do": "open", "url": url}));
        assert_eq!(page["cellCount"], 1000, "{}", page["cellCount"]);
        assert_eq!(page["cells"]["big/svc-99/lane-9"], "→ lane-0");
        took.push(page["firstMapMs"].as_f64().unwrap());
        // Away and back: the next load is a fresh page.
        b.send(json!({"do": "blank"}));
    }
    eprintln!("the map of 100 services x 10 lanes showed in {took:?} ms (navigation to first map)");
}
