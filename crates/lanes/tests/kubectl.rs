//! The real kubectl (the binary on the PATH) against `lanes up`, through the kubeconfig
//! it writes: the article's walkthrough with kubectl only, the kubectl commands
//! platform engineers use day to day, and bad input answered as an API server does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::kubectl::{k_err, k_ok, kubectl, kubectl_command};
use common::{Daemon, eventually, http_get, repo, versions};

fn patch_image(version: &str) -> String {
    format!(
        r#"{{"spec": {{"template": {{"spec": {{"containers": [{{"name": "default", "image": "registry.cn-beijing.aliyuncs.com/aliacs-app-catalog/go-http-sample:{version}"}}]}}}}}}}}"#
    )
}

/// The chain's answer for a lane, once it names `want` (the data plane follows the
/// store a moment later).
fn curl_until(d: &Daemon, tag: &str, id: &str, want: [&str; 3]) -> String {
    eventually(Duration::from_secs(60), || {
        let (status, _, body) = http_get(
            &d.gateway,
            "/mock",
            &[("x-asm-prefer-tag", tag), ("my-request-id", id)],
        );
        (status == 200 && versions(&body) == want).then_some(body)
    })
}

fn wait_rollout(d: &Daemon, name: &str, phase: &str, state: Option<&str>) {
    eventually(Duration::from_secs(60), || {
        let s = k_ok(
            d,
            &[
                "get",
                "rollout",
                name,
                "-o",
                "jsonpath={.status.phase}/{.status.currentStepState}",
            ],
        );
        let (p, st) = s.split_once('/').unwrap_or((&s, ""));
        (p == phase && state.is_none_or(|w| w == st)).then_some(())
    });
}

/// The subsets of a service's DestinationRule, from `kubectl get ... -o yaml`.
fn subsets(d: &Daemon, svc: &str) -> Vec<String> {
    let name = format!("trafficlabel-dr-rollout-default-{svc}");
    let args = [
        "get",
        "destinationrule",
        &name,
        "-n",
        "istio-system",
        "-o",
        "yaml",
    ];
    // Not generated yet: no subsets (the callers wait).
    let out = kubectl(d, &args);
    if String::from_utf8_lossy(&out.stderr).contains("NotFound") {
        return Vec::new();
    }
    let yaml = k_ok(d, &args);
    let v: serde_json::Value = serde_saphyr::from_str(&yaml).unwrap();
    assert_eq!(v["apiVersion"], "networking.istio.io/v1alpha3", "{yaml}");
    v["spec"]["subsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            assert_eq!(s["labels"]["ASM_TRAFFIC_TAG"], s["name"], "{yaml}");
            s["name"].as_str().unwrap().to_string()
        })
        .collect()
}

fn wait_subsets(d: &Daemon, want: &[(&str, &[&str])]) {
    for (svc, lanes) in want {
        eventually(Duration::from_secs(60), || {
            (subsets(d, svc) == *lanes).then_some(())
        });
    }
}

fn approve(d: &Daemon, name: &str) {
    let out = k_ok(
        d,
        &[
            "patch",
            "rollout",
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"canaryStatus":{"currentStepState":"StepReady"}}}"#,
        ],
    );
    assert_eq!(
        out.trim(),
        format!("rollout.rollouts.kruise.io/{name} patched")
    );
}

fn running_pods(d: &Daemon) -> usize {
    k_ok(d, &["get", "pods", "--no-headers"])
        .lines()
        .filter(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.get(1) == Some(&"1/1") && cols.get(2) == Some(&"Running")
        })
        .count()
}

/// The article's walkthrough with kubectl only, through the kubeconfig `lanes up`
/// wrote: every answer as the article shows it (pod addresses aside).
#[test]
fn kubectl_walks_the_article() {
    let version = Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .unwrap();
    println!("{}", String::from_utf8_lossy(&version.stdout));
    let d = Daemon::start();
    let server = k_ok(&d, &["version"]);
    assert!(server.contains("Server Version: v1.32"), "{server}");

    let applied = k_ok(&d, &["apply", "-f", "examples/seed/"]);
    for line in [
        "gateway.networking.istio.io/ingressgateway created",
        "deployment.apps/mocka-v1 created",
        "asmswimlanegroup.istio.alibabacloud.com/rollout created",
        "asmswimlane.istio.alibabacloud.com/canary created",
        "rollout.rollouts.kruise.io/rollouts-mockc created",
    ] {
        assert!(applied.contains(line), "{line} in {applied}");
    }
    eventually(Duration::from_secs(60), || {
        (running_pods(&d) == 3).then_some(())
    });
    let pods = k_ok(&d, &["get", "pods"]);
    println!("{pods}");
    assert!(pods.starts_with("NAME"), "{pods}");
    assert!(pods.contains("1/1     Running"), "{pods}");
    wait_subsets(
        &d,
        &[
            ("mocka", &["base"]),
            ("mockb", &["base"]),
            ("mockc", &["base"]),
        ],
    );
    curl_until(&d, "base", "9999", ["v1", "v1", "v1"]);
    curl_until(&d, "canary", "10000", ["v1", "v1", "v1"]);

    // Release mocka v2 (the article's patch, its stray closing brace dropped: kubectl
    // sends the text as it is, and no API server reads JSON with a trailing brace).
    let out = k_ok(
        &d,
        &["patch", "deployment", "mocka-v1", "-p", &patch_image("2.0")],
    );
    assert_eq!(out.trim(), "deployment.apps/mocka-v1 patched");
    wait_rollout(&d, "rollouts-mocka", "Progressing", Some("StepPaused"));
    wait_subsets(
        &d,
        &[
            ("mocka", &["base", "canary"]),
            ("mockb", &["base"]),
            ("mockc", &["base"]),
        ],
    );
    let body = curl_until(&d, "canary", "10001", ["v2", "v1", "v1"]);
    assert!(body.starts_with("-> mocka(version: v2, ip: 127."), "{body}");
    let rollouts = k_ok(&d, &["get", "rollouts"]);
    println!("{rollouts}");
    let header: Vec<&str> = rollouts
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "STATUS",
            "CANARY_STEP",
            "CANARY_STATE",
            "MESSAGE",
            "AGE"
        ]
    );
    let mocka = rollouts
        .lines()
        .find(|l| l.starts_with("rollouts-mocka"))
        .unwrap();
    assert!(
        mocka.contains("Progressing   1             StepPaused"),
        "{mocka}"
    );

    // mockb and mockc v2.
    k_ok(
        &d,
        &["patch", "deployment", "mockb-v1", "-p", &patch_image("2.0")],
    );
    k_ok(
        &d,
        &["patch", "deployment", "mockc-v1", "-p", &patch_image("2.0")],
    );
    wait_rollout(&d, "rollouts-mockb", "Progressing", Some("StepPaused"));
    wait_rollout(&d, "rollouts-mockc", "Progressing", Some("StepPaused"));
    let all_canary: &[(&str, &[&str])] = &[
        ("mocka", &["base", "canary"]),
        ("mockb", &["base", "canary"]),
        ("mockc", &["base", "canary"]),
    ];
    wait_subsets(&d, all_canary);
    curl_until(&d, "canary", "10002", ["v2", "v2", "v2"]);
    curl_until(&d, "base", "10003", ["v1", "v1", "v1"]);

    // Approve mockb, then mocka and mockc: the status patch kubectl-kruise sends.
    approve(&d, "rollouts-mockb");
    wait_rollout(&d, "rollouts-mockb", "Healthy", None);
    wait_subsets(
        &d,
        &[
            ("mocka", &["base", "canary"]),
            ("mockb", &["base"]),
            ("mockc", &["base", "canary"]),
        ],
    );
    curl_until(&d, "base", "10004", ["v1", "v2", "v1"]);
    approve(&d, "rollouts-mocka");
    approve(&d, "rollouts-mockc");
    wait_rollout(&d, "rollouts-mocka", "Healthy", None);
    wait_rollout(&d, "rollouts-mockc", "Healthy", None);
    wait_subsets(
        &d,
        &[
            ("mocka", &["base"]),
            ("mockb", &["base"]),
            ("mockc", &["base"]),
        ],
    );
    curl_until(&d, "base", "10005", ["v2", "v2", "v2"]);
    let rollouts = k_ok(&d, &["get", "rollouts", "--no-headers"]);
    assert_eq!(
        rollouts.lines().filter(|l| l.contains("Healthy")).count(),
        3,
        "{rollouts}"
    );
    // Between releases a managed Deployment is an ordinary one: `kubectl rollout
    // restart` is taken (a new template: under its Rollout, a release, as with Kruise).
    let d_json: serde_json::Value =
        serde_json::from_str(&k_ok(&d, &["get", "deploy", "mocka-v1", "-o", "json"])).unwrap();
    assert_ne!(d_json["spec"]["paused"], true, "{}", d_json["spec"]);
    let out = k_ok(&d, &["rollout", "restart", "deployment/mocka-v1"]);
    assert_eq!(out.trim(), "deployment.apps/mocka-v1 restarted");
    wait_rollout(&d, "rollouts-mocka", "Progressing", Some("StepPaused"));
}

/// The lines a running kubectl prints, read on a thread of their own.
struct Lines(std::sync::mpsc::Receiver<String>);

impl Lines {
    fn of(out: impl std::io::Read + Send + 'static) -> Lines {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Lines(rx)
    }

    /// The first line (from here on) that satisfies `f`, within 60 s.
    fn until(&self, f: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.0.recv_timeout(left) {
                Ok(line) if f(&line) => return line,
                Ok(line) => seen.push(line),
                Err(_) => panic!("no line matched within 60 s; saw {seen:?}"),
            }
        }
    }
}

/// The kubectl commands of every day: watch, logs (and -f), describe with Events,
/// api-resources, explain, server-side apply (twice, and a conflicting manager), diff,
/// wait, rollout status, create namespace, delete -f with garbage collection.
#[test]
fn kubectl_everyday_commands() {
    let d = Daemon::start();
    k_ok(&d, &["apply", "-f", "examples/seed/"]);
    eventually(Duration::from_secs(60), || {
        (running_pods(&d) == 3).then_some(())
    });

    let resources = k_ok(&d, &["api-resources"]);
    for row in [
        ["pods", "po", "v1", "true", "Pod"],
        ["deployments", "deploy", "apps/v1", "true", "Deployment"],
        [
            "rollouts",
            "ro",
            "rollouts.kruise.io/v1beta1",
            "true",
            "Rollout",
        ],
    ] {
        assert!(
            resources
                .lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == row),
            "{row:?} in {resources}"
        );
    }
    let explain = k_ok(&d, &["explain", "rollout.spec.strategy.canary"]);
    assert!(
        explain.contains("KIND:       Rollout") && explain.contains("steps"),
        "{explain}"
    );

    // kubectl wait and rollout status read the Deployment's conditions.
    let waited = k_ok(
        &d,
        &[
            "wait",
            "--for=condition=Available",
            "deployment/mocka-v1",
            "--timeout=60s",
        ],
    );
    assert_eq!(waited.trim(), "deployment.apps/mocka-v1 condition met");
    let status = k_ok(
        &d,
        &["rollout", "status", "deployment/mocka-v1", "--timeout=60s"],
    );
    assert!(status.contains("successfully rolled out"), "{status}");

    // A watch sees a change as it happens.
    let mut watch = kubectl_command(&d, &["get", "deployments", "-w", "--output-watch-events"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = Lines::of(watch.stdout.take().unwrap());
    lines.until(|l| l.starts_with("ADDED") && l.contains("mockc-v1"));
    k_ok(
        &d,
        &["patch", "deployment", "mockb-v1", "-p", &patch_image("2.0")],
    );
    let modified = lines.until(|l| l.starts_with("MODIFIED") && l.contains("mockb-v1"));
    println!("watched: {modified}");
    let _ = watch.kill();
    let _ = watch.wait();

    // Logs, the end of them, and followed.
    let pod = k_ok(
        &d,
        &[
            "get",
            "pods",
            "-l",
            "app=mocka",
            "-o",
            "jsonpath={.items[0].metadata.name}",
        ],
    );
    let log = k_ok(&d, &["logs", &pod, "--tail=1"]);
    assert!(log.contains("sample mocka v1 listening on"), "{log}");
    let mut follow = kubectl_command(&d, &["logs", "-f", &pod])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let flines = Lines::of(follow.stdout.take().unwrap());
    flines.until(|l| l.contains("listening on"));
    let _ = follow.kill();
    let _ = follow.wait();

    // describe shows the release's Events.
    wait_rollout(&d, "rollouts-mockb", "Progressing", Some("StepPaused"));
    let described = k_ok(&d, &["describe", "rollout", "rollouts-mockb"]);
    let events = described.split("Events:").nth(1).unwrap_or_default();
    assert!(
        events.contains("StepPaused") && events.contains("lanes.dev/operator"),
        "{described}"
    );

    // Server-side apply: twice is no change; another manager's different value is a
    // conflict naming the field.
    k_ok(&d, &["create", "namespace", "ssa"]);
    let cm = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: ssa\nspec:\n  ports:\n  - port: 80\n  selector:\n    app: web\n";
    let f = d.state.join("web.yaml");
    std::fs::write(&f, cm).unwrap();
    let path = f.to_str().unwrap();
    assert!(
        k_ok(&d, &["apply", "--server-side", "-f", path])
            .contains("service/web serverside-applied")
    );
    let rv = |d: &Daemon| {
        k_ok(
            d,
            &[
                "get",
                "svc",
                "web",
                "-n",
                "ssa",
                "-o",
                "jsonpath={.metadata.resourceVersion}",
            ],
        )
    };
    let first = rv(&d);
    k_ok(&d, &["apply", "--server-side", "-f", path]);
    assert_eq!(
        rv(&d),
        first,
        "a second apply of the same manifest changes nothing"
    );
    std::fs::write(
        &f,
        cm.replace("port: 80", "port: 81")
            .replace("app: web", "app: other"),
    )
    .unwrap();
    let err = k_err(
        &d,
        &[
            "apply",
            "--server-side",
            "--field-manager=other",
            "-f",
            path,
        ],
    );
    assert!(
        err.contains("conflict with \"kubectl\"") && err.contains(".spec.selector.app"),
        "{err}"
    );
    assert_eq!(rv(&d), first, "a refused apply stores nothing");
    let forced = k_ok(
        &d,
        &[
            "apply",
            "--server-side",
            "--field-manager=other",
            "--force-conflicts",
            "-f",
            path,
        ],
    );
    assert!(forced.contains("serverside-applied"), "{forced}");
    let sel = k_ok(
        &d,
        &[
            "get",
            "svc",
            "web",
            "-n",
            "ssa",
            "-o",
            "jsonpath={.spec.selector.app}",
        ],
    );
    assert_eq!(sel, "other");

    // diff: the change a manifest would make, and none for the live state.
    let apps = std::fs::read_to_string(repo().join("examples/seed/10-apps.yaml")).unwrap();
    let changed = d.state.join("apps.yaml");
    std::fs::write(&changed, apps.replace("replicas: 1", "replicas: 2")).unwrap();
    let diff = kubectl(&d, &["diff", "-f", changed.to_str().unwrap()]);
    assert_eq!(
        diff.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&diff.stderr)
    );
    assert!(String::from_utf8_lossy(&diff.stdout).contains("+  replicas: 2"));
    let svc_diff = kubectl(&d, &["diff", "-f", "examples/seed/00-gateway.yaml"]);
    assert_eq!(
        svc_diff.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&svc_diff.stdout)
    );
    assert_eq!(
        k_ok(
            &d,
            &[
                "get",
                "deploy",
                "mocka-v1",
                "-o",
                "jsonpath={.spec.replicas}"
            ]
        ),
        "1"
    );

    // delete -f: the canary Deployment of a deleted Rollout goes with it.
    k_ok(
        &d,
        &["patch", "deployment", "mocka-v1", "-p", &patch_image("2.0")],
    );
    wait_rollout(&d, "rollouts-mocka", "Progressing", Some("StepPaused"));
    let deploys = k_ok(&d, &["get", "deploy", "-o", "name"]);
    let canary = deploys
        .lines()
        .find(|l| l.starts_with("deployment.apps/mocka-v1-"))
        .unwrap_or_else(|| panic!("a canary in {deploys}"))
        .to_string();
    let owner = k_ok(
        &d,
        &[
            "get",
            &canary,
            "-o",
            "jsonpath={.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}",
        ],
    );
    assert_eq!(owner, "Rollout/rollouts-mocka");
    let finalizers = k_ok(
        &d,
        &[
            "get",
            "rollout",
            "rollouts-mocka",
            "-o",
            "jsonpath={.metadata.finalizers}",
        ],
    );
    assert_eq!(finalizers, r#"["rollouts.kruise.io/rollout"]"#);
    // kubectl waits until each Rollout is gone: held by its finalizer until its
    // release is stood down (bounded, so a lost watch event fails here, not hangs).
    let deleted = k_ok(
        &d,
        &[
            "delete",
            "-f",
            "examples/seed/30-rollouts.yaml",
            "--timeout=60s",
        ],
    );
    assert!(
        deleted.contains("rollout.rollouts.kruise.io \"rollouts-mockb\" deleted"),
        "{deleted}"
    );
    eventually(Duration::from_secs(30), || {
        let deploys = k_ok(&d, &["get", "deploy", "-o", "name"]);
        (deploys.lines().count() == 3).then_some(())
    });
    // The release was stood down before the Rollout went: mocka-v1 is an ordinary
    // Deployment again, unpaused, rolling on to its new template.
    let released = k_ok(
        &d,
        &[
            "get",
            "deploy",
            "mocka-v1",
            "-o",
            "jsonpath={.spec.paused}|{.metadata.annotations}",
        ],
    );
    assert!(
        !released.starts_with("true") && !released.contains("lanes.dev/stable-template"),
        "{released}"
    );
    k_ok(
        &d,
        &["rollout", "status", "deployment/mocka-v1", "--timeout=60s"],
    );

    // The generated VirtualServices and DestinationRules are owned by their lane group:
    // deleting the group deletes them.
    let generated = |kind: &str| {
        k_ok(
            &d,
            &[
                "get",
                kind,
                "-A",
                "-l",
                "swimlane-group=rollout",
                "-o",
                "name",
            ],
        )
        .lines()
        .count()
    };
    assert_eq!(
        (generated("virtualservices"), generated("destinationrules")),
        (5, 3)
    );
    let owners = k_ok(
        &d,
        &[
            "get",
            "destinationrules",
            "-A",
            "-l",
            "swimlane-group=rollout",
            "-o",
            "jsonpath={range .items[*]}{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name} {end}",
        ],
    );
    assert_eq!(
        owners.split_whitespace().collect::<Vec<_>>(),
        ["ASMSwimLaneGroup/rollout"; 3]
    );
    let deleted = k_ok(&d, &["delete", "asmswimlanegroup", "rollout"]);
    assert!(deleted.contains("\"rollout\" deleted"), "{deleted}");
    // Gone with the group; one a reconcile in flight applied after the group went is
    // swept.
    eventually(Duration::from_secs(10), || {
        (generated("virtualservices") + generated("destinationrules") == 0).then_some(())
    });
}

/// Bad input through kubectl: each refused with the API server's status and a message
/// naming the field; nothing stored.
/// `kubectl scale` through the Deployment's `scale` subresource (an `autoscaling/v1`
/// `Scale`): the replicas change and the pods follow; `--current-replicas` is checked;
/// a Scale whose replicas are no number is refused naming the field.
#[test]
fn kubectl_scale_sets_a_deployments_replicas() {
    let d = Daemon::start();
    k_ok(&d, &["apply", "-f", "examples/seed/10-apps.yaml"]);
    let scaled = k_ok(&d, &["scale", "deployment/mocka-v1", "--replicas=3"]);
    assert_eq!(scaled.trim(), "deployment.apps/mocka-v1 scaled");
    eventually(Duration::from_secs(60), || {
        let ready = k_ok(
            &d,
            &[
                "get",
                "deployment",
                "mocka-v1",
                "-o",
                "jsonpath={.status.readyReplicas}",
            ],
        );
        (ready.trim() == "3").then_some(())
    });
    let raw = k_ok(
        &d,
        &[
            "get",
            "--raw",
            "/apis/apps/v1/namespaces/default/deployments/mocka-v1/scale",
        ],
    );
    let scale: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(scale["kind"], "Scale", "{scale}");
    assert_eq!(scale["apiVersion"], "autoscaling/v1");
    assert_eq!(scale["spec"]["replicas"], 3);
    assert_eq!(scale["status"]["replicas"], 3);
    assert_eq!(scale["status"]["selector"], "app=mocka");
    let err = k_err(
        &d,
        &[
            "scale",
            "deployment/mocka-v1",
            "--current-replicas=2",
            "--replicas=1",
        ],
    );
    assert!(err.contains("Expected replicas to be 2, was 3"), "{err}");
    let err = k_err(
        &d,
        &[
            "patch",
            "deployment",
            "mocka-v1",
            "--subresource=scale",
            "--type=merge",
            "-p",
            r#"{"spec":{"replicas":"many"}}"#,
        ],
    );
    assert!(err.contains("spec.replicas"), "{err}");
    let replicas = k_ok(
        &d,
        &[
            "get",
            "deployment",
            "mocka-v1",
            "-o",
            "jsonpath={.spec.replicas}",
        ],
    );
    assert_eq!(replicas.trim(), "3");
    let scaled = k_ok(&d, &["scale", "deployment/mocka-v1", "--replicas=1"]);
    assert_eq!(scaled.trim(), "deployment.apps/mocka-v1 scaled");
    eventually(Duration::from_secs(60), || {
        let pods = k_ok(&d, &["get", "pods", "-l", "app=mocka", "-o", "name"]);
        (pods.lines().count() == 1).then_some(())
    });
}

#[test]
fn kubectl_bad_input_is_refused_naming_the_field() {
    let d = Daemon::start();
    k_ok(&d, &["apply", "-f", "examples/seed/10-apps.yaml"]);
    let dir = d.state.join("bad");
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, text: &str| {
        let f = dir.join(name);
        std::fs::write(&f, text).unwrap();
        f.display().to_string()
    };
    let svc = |name: &str, extra: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  ports:\n  - port: 80{extra}\n"
        )
    };
    // An invalid name: 422.
    let f = write("name.yaml", &svc("Bad_Name", ""));
    let err = k_err(&d, &["apply", "-f", &f]);
    assert!(
        err.contains("(Invalid)") || err.contains("is invalid"),
        "{err}"
    );
    assert!(err.contains("metadata.name"), "{err}");
    // An unknown field, strict validation (kubectl's default): 400 naming it.
    let f = write("unknown.yaml", &svc("web", "\n  bogusField: 1"));
    let err = k_err(&d, &["apply", "--validate=strict", "-f", &f]);
    assert!(err.contains("unknown field \"spec.bogusField\""), "{err}");
    // A wrong type: 400 naming the field.
    let f = write(
        "type.yaml",
        &svc("web", "").replace("port: 80", "port: eighty"),
    );
    let err = k_err(&d, &["apply", "-f", &f]);
    assert!(
        err.contains("BadRequest") && err.contains("spec.ports"),
        "{err}"
    );
    let services = k_ok(&d, &["get", "svc", "-o", "name"]);
    assert!(
        !services.contains("web") && !services.contains("Bad_Name"),
        "{services}"
    );
    // A stale resourceVersion: 409.
    let stale = k_ok(&d, &["get", "deploy", "mocka-v1", "-o", "yaml"]);
    k_ok(&d, &["label", "deploy", "mocka-v1", "touched=yes"]);
    let f = write("stale.yaml", &stale.replace("replicas: 1", "replicas: 3"));
    let err = k_err(&d, &["replace", "-f", &f]);
    assert!(err.contains("the object has been modified"), "{err}");
    assert_eq!(
        k_ok(
            &d,
            &[
                "get",
                "deploy",
                "mocka-v1",
                "-o",
                "jsonpath={.spec.replicas}"
            ]
        ),
        "1"
    );
    // A patch of a type the kind does not take (strategic merge of a custom resource): 415.
    k_ok(&d, &["apply", "-f", "examples/seed/20-lanes.yaml"]);
    let err = k_err(
        &d,
        &[
            "patch",
            "asmswimlane",
            "canary",
            "--type=strategic",
            "-p",
            r#"{"spec":{}}"#,
        ],
    );
    assert!(
        err.contains("UnsupportedMediaType") || err.contains("not supported"),
        "{err}"
    );
}

/// Finalizers as the API server keeps them: a delete only marks an object they hold
/// (`deletionTimestamp`), no finalizer may be added then, and the write that removes the
/// last one deletes the object and what it owns.
#[test]
fn a_finalizer_holds_a_delete_until_the_last_one_is_removed() {
    let d = Daemon::start();
    let held = "apiVersion: v1\nkind: Service\nmetadata:\n  name: held\n  finalizers: [example.com/hold]\nspec:\n  ports: [{port: 80}]\n";
    let file = d.state.join("held.yaml");
    std::fs::write(&file, held).unwrap();
    k_ok(&d, &["apply", "-f", file.to_str().unwrap()]);
    let uid = k_ok(
        &d,
        &["get", "svc", "held", "-o", "jsonpath={.metadata.uid}"],
    );
    let dependent = format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: dependent\n  ownerReferences: [{{apiVersion: v1, kind: Service, name: held, uid: {uid}}}]\nspec:\n  ports: [{{port: 80}}]\n"
    );
    let file = d.state.join("dependent.yaml");
    std::fs::write(&file, dependent).unwrap();
    k_ok(&d, &["apply", "-f", file.to_str().unwrap()]);

    k_ok(&d, &["delete", "svc", "held", "--wait=false"]);
    let marked = k_ok(
        &d,
        &[
            "get",
            "svc",
            "held",
            "-o",
            "jsonpath={.metadata.deletionTimestamp}",
        ],
    );
    assert!(marked.parse::<jiff::Timestamp>().is_ok(), "{marked:?}");
    let names = k_ok(&d, &["get", "svc", "-o", "name"]);
    assert!(
        names.contains("service/dependent"),
        "dependents wait: {names}"
    );
    let refused = k_err(
        &d,
        &[
            "patch",
            "svc",
            "held",
            "--type=merge",
            "-p",
            r#"{"metadata": {"finalizers": ["example.com/hold", "example.com/late"]}}"#,
        ],
    );
    assert!(
        refused.contains("Forbidden") && refused.contains("example.com/late"),
        "{refused}"
    );
    // Removing the last finalizer (as kube-rs's finalizer helper does) finishes it.
    k_ok(
        &d,
        &[
            "patch",
            "svc",
            "held",
            "--type=json",
            "-p",
            r#"[{"op": "test", "path": "/metadata/finalizers/0", "value": "example.com/hold"},
                {"op": "remove", "path": "/metadata/finalizers/0"}]"#,
        ],
    );
    let gone = k_err(&d, &["get", "svc", "held"]);
    assert!(
        gone.contains("NotFound") || gone.contains("not found"),
        "{gone}"
    );
    let names = k_ok(&d, &["get", "svc", "-o", "name"]);
    assert!(!names.contains("service/dependent"), "{names}");

    // `lanes delete` waits for a held object as kubectl does, within its timeout.
    let file = d.state.join("held.yaml");
    k_ok(&d, &["apply", "-f", file.to_str().unwrap()]);
    let out = d.lanes(&["delete", "svc", "held", "--timeout", "1"]);
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("timed out waiting for service/held") && said.contains("finalizers"),
        "{said}"
    );
    let out = d.lanes(&["delete", "svc", "held", "--timeout", "99999999999999999"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--timeout"));
    let out = d.lanes(&["delete", "svc", "held", "--wait=false"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
