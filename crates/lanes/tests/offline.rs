//! End-to-end tests of `lanes render` and `lanes lint`, driving the binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn lanes(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lanes"))
        .args(args)
        .current_dir(repo())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn yaml_stream(text: &str) -> Vec<serde_json::Value> {
    let mut v: Vec<serde_json::Value> = serde_saphyr::from_multiple(text).unwrap();
    v.sort_by_key(|o| (o["kind"].to_string(), o["metadata"]["name"].to_string()));
    v
}

#[test]
fn render_prints_the_articles_objects() {
    let out = lanes(&["render", "-f", "examples/seed/"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = yaml_stream(&String::from_utf8(out.stdout).unwrap());
    let want = yaml_stream(
        &std::fs::read_to_string(
            repo().join("crates/lanes-compile/tests/golden/article-initial.yaml"),
        )
        .unwrap(),
    );
    assert_eq!(got.len(), 8);
    assert_eq!(got, want);
}

#[test]
fn render_json_is_a_list_and_routes_render() {
    let out = lanes(
        &[
            "render",
            "-f",
            "examples/seed",
            "-o",
            "json",
            "--flavor",
            "istio",
        ],
        None,
    );
    assert!(out.status.success());
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"].as_array().unwrap().len(), 8);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("$asm-label"));

    let out = lanes(
        &["render", "-f", "examples/seed", "--routes", "-o", "json"],
        None,
    );
    let routes: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(routes["groups"][0]["routeHeader"], "x-asm-prefer-tag");
    assert_eq!(
        routes["groups"][0]["ingress"]["rules"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn render_reads_standard_input() {
    let mut all = String::new();
    for f in ["00-gateway.yaml", "10-apps.yaml", "20-lanes.yaml"] {
        all.push_str(&std::fs::read_to_string(repo().join("examples/seed").join(f)).unwrap());
        all.push_str("\n---\n");
    }
    let out = lanes(&["render", "-f", "-"], Some(&all));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        yaml_stream(&String::from_utf8(out.stdout).unwrap()).len(),
        8
    );
}

#[test]
fn lint_passes_the_seed_and_names_the_articles_slips() {
    let out = lanes(&["lint", "-f", "examples/seed/"], None);
    assert!(out.status.success());
    assert!(out.stdout.is_empty());

    let dir = tempfile::tempdir().unwrap();
    for f in [
        "00-gateway.yaml",
        "10-apps.yaml",
        "20-lanes.yaml",
        "30-rollouts.yaml",
    ] {
        let text = std::fs::read_to_string(repo().join("examples/seed").join(f))
            .unwrap()
            .replace("http://mockc:8000/", "http://mockc.demo:8000/")
            .replace(
                "  name: rollouts-mockc\n",
                "  name: rollouts-mockc\n  namespace: demo\n",
            );
        std::fs::write(dir.path().join(f), text).unwrap();
    }
    let out = lanes(&["lint", "-f", dir.path().to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines[0].contains(
        "10-apps.yaml:5 Deployment/mockb-v1: spec.template.spec.containers[0].env[2].value"
    ));
    assert!(lines[1].contains("30-rollouts.yaml:3 Rollout/rollouts-mockc: spec.workloadRef.name"));
}

/// `lanes lint --cluster`: the seed (extra-workload canaries) passes; Kruise's
/// partition-style base Rollout is an error for a cluster, naming the field.
#[test]
fn lint_for_a_cluster_refuses_partition_style() {
    let out = lanes(&["lint", "--cluster", "-f", "examples/seed/"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let rollout = "apiVersion: rollouts.kruise.io/v1beta1\nkind: Rollout\nmetadata: {name: r}\nspec:\n  workloadRef: {apiVersion: apps/v1, kind: Deployment, name: d}\n  strategy:\n    canary:\n      steps: [{replicas: 1}]\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  selector: {matchLabels: {app: d}}\n  template:\n    metadata: {labels: {app: d}}\n    spec: {containers: [{name: c, image: x}]}\n";
    let out = lanes(&["lint", "-f", "-"], Some(rollout));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = lanes(&["lint", "--cluster", "-f", "-"], Some(rollout));
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("-:1 Rollout/r: spec.strategy.canary.enableExtraWorkloadForCanary: a partition-style release"),
        "{stdout}"
    );
}

#[test]
fn bad_input_exits_non_zero_with_a_located_error() {
    let out = lanes(
        &["render", "-f", "-"],
        Some(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  replicas: abc\n",
        ),
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("-:1 Deployment/d: spec.replicas: "),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());

    let out = lanes(&["lint", "-f", "no/such/file.yaml"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("no/such/file.yaml: cannot read"));
}

/// `lanes render --flavor gateway-api` writes HTTPRoutes and lane Services; `lanes lint
/// --flavor gateway-api` warns, on the group's own fields, of what Gateway API cannot say
/// (the seed is permissive with a trace header), and a strict group gets its own warning.
#[test]
fn gateway_api_flavor_renders_and_lint_warns_what_it_cannot_say() {
    let out = lanes(
        &["render", "--flavor", "gateway-api", "-f", "examples/seed/"],
        None,
    );
    assert!(out.status.success());
    let docs = yaml_stream(&String::from_utf8(out.stdout).unwrap());
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "HTTPRoute").count(),
        5,
        "{kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == "Service").count(),
        3,
        "{kinds:?}"
    );

    let out = lanes(
        &["lint", "--flavor", "gateway-api", "-f", "examples/seed/"],
        None,
    );
    assert!(out.status.success(), "warnings only");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines[0].contains("ASMSwimLaneGroup/rollout: warning: spec.isPermissive: "));
    assert!(lines[0].contains("no fallback on failure"));
    assert!(lines[1].contains("spec.permissiveModeConfiguration.traceHeader: not carried out"));
    // The same files for Istio: no such warning.
    let out = lanes(&["lint", "-f", "examples/seed/"], None);
    assert!(out.stdout.is_empty());

    let text = std::fs::read_to_string(repo().join("examples/seed/20-lanes.yaml"))
        .unwrap()
        .replace("isPermissive: true", "isPermissive: false");
    let out = lanes(&["lint", "--flavor", "gateway-api", "-f", "-"], Some(&text));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("strict mode routes a call by the calling pod's lane"),
        "{stdout}"
    );
}
