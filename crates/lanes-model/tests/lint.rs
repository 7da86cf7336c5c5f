//! `lanes lint` checks, on the article's manifests and on Kruise's end-to-end manifests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use lanes_model::lint::{Target, lint, lint_for};
use lanes_model::{Diagnostic, Typed, decode_str, load_paths};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn seed_text(file: &str) -> String {
    std::fs::read_to_string(repo().join("examples/seed").join(file)).unwrap()
}

fn lint_texts(files: &[(&str, String)]) -> Vec<Diagnostic> {
    lint_texts_for(files, Target::LanesUp)
}

fn lint_texts_for(files: &[(&str, String)], target: Target) -> Vec<Diagnostic> {
    let mut loaded = Vec::new();
    for (name, text) in files {
        let (objs, diags) = decode_str(name, text);
        assert!(diags.is_empty(), "{diags:?}");
        loaded.extend(objs);
    }
    lint_for(&loaded, target)
}

fn seed_files() -> Vec<(&'static str, String)> {
    [
        "00-gateway.yaml",
        "10-apps.yaml",
        "20-lanes.yaml",
        "30-rollouts.yaml",
    ]
    .into_iter()
    .map(|f| (f, seed_text(f)))
    .collect()
}

#[test]
fn the_corrected_seed_lints_clean() {
    let diags = lint(&load_paths(&[repo().join("examples/seed")]).unwrap());
    assert!(diags.is_empty(), "{diags:#?}");
}

#[test]
fn the_articles_two_slips_are_reported_with_object_and_field() {
    let mut files = seed_files();
    // The article verbatim: mockb calls mockc.demo, and rollouts-mockc sits in `demo`.
    files[1].1 = files[1]
        .1
        .replace("http://mockc:8000/", "http://mockc.demo:8000/");
    files[3].1 = files[3].1.replace(
        "  name: rollouts-mockc\n",
        "  name: rollouts-mockc\n  namespace: demo\n",
    );
    let lines: Vec<String> = lint_texts(&files).iter().map(|d| d.to_string()).collect();
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(
        lines[0].starts_with(
            "10-apps.yaml:5 Deployment/mockb-v1: spec.template.spec.containers[0].env[2].value: upstream_url \"http://mockc.demo:8000/\" names host \"mockc.demo:8000\", which is no Service"
        ),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].contains("did you mean mockc.default?"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with(
            "30-rollouts.yaml:3 Rollout/rollouts-mockc: spec.workloadRef.name: Deployment \"mockc-v1\" not found in namespace \"demo\""
        ),
        "{}",
        lines[1]
    );
}

fn case(extra: &str) -> Vec<Diagnostic> {
    let mut files = seed_files();
    files.push(("extra.yaml", extra.to_string()));
    lint_texts(&files)
}

fn only(diags: &[Diagnostic]) -> String {
    assert_eq!(diags.len(), 1, "{diags:#?}");
    diags[0].to_string()
}

#[test]
fn a_lane_whose_group_does_not_exist() {
    let d = case(
        "apiVersion: istio.alibabacloud.com/v1\nkind: ASMSwimLane\nmetadata:\n  name: dev\n  labels: {swimlane-group: nosuch}\nspec:\n  labelSelector: {t: dev}\n",
    );
    assert!(only(&d).contains(
        "ASMSwimLane/dev: metadata.labels.swimlane-group: lane group \"nosuch\" not found"
    ));
}

#[test]
fn a_group_service_with_no_deployment() {
    let mut files = seed_files();
    files[2].1 = files[2]
        .1
        .replacen("      name: mockb\n", "      name: mockd\n", 1);
    files[1].1.push_str(
        "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: mockd\nspec:\n  ports: [{port: 8000}]\n  selector: {app: mockd}\n",
    );
    let d = lint_texts(&files);
    assert!(
        only(&d).contains("ASMSwimLaneGroup/rollout: spec.services[0]: no Deployment selects Service default/mockd (selector app=mockd)"),
        "{d:?}"
    );
}

#[test]
fn two_online_lanes_with_the_same_ingress_match() {
    let d = case(
        "apiVersion: istio.alibabacloud.com/v1\nkind: ASMSwimLane\nmetadata:\n  name: dev\n  labels: {swimlane-group: rollout}\nspec:\n  labelSelector: {t: dev}\n  ingressRules:\n    - name: dev\n      online: true\n      hosts: ['*']\n      match:\n        headers:\n          x-asm-prefer-tag: {exact: canary}\n        uri: {exact: /mock}\n      route: {destination: {host: mocka.default.svc.cluster.local}}\n",
    );
    assert!(only(&d).contains(
        "extra.yaml:1 ASMSwimLane/dev: spec.ingressRules[0].match: same hosts and match as rule \"canary\" of online lane \"canary\""
    ));
}

#[test]
fn an_offline_duplicate_is_fine() {
    let d = case(
        "apiVersion: istio.alibabacloud.com/v1\nkind: ASMSwimLane\nmetadata:\n  name: dev\n  labels: {swimlane-group: rollout}\nspec:\n  labelSelector: {t: dev}\n  ingressRules:\n    - name: dev\n      online: false\n      hosts: ['*']\n      match:\n        headers:\n          x-asm-prefer-tag: {exact: canary}\n        uri: {exact: /mock}\n      route: {destination: {host: mocka.default.svc.cluster.local}}\n",
    );
    assert!(d.is_empty(), "{d:?}");
}

#[test]
fn strict_mode_lane_lacking_a_service_is_a_warning() {
    let mut files = seed_files();
    files[2].1 = files[2]
        .1
        .replace("isPermissive: true", "isPermissive: false");
    let d = lint_texts(&files);
    assert_eq!(d.len(), 3, "{d:#?}");
    assert!(d.iter().all(|d| !d.is_error()));
    assert!(d[0].to_string().contains(
        "ASMSwimLane/canary: warning: spec.services: strict mode: lane \"canary\" lacks service default/mockb"
    ));
}

#[test]
fn a_fallback_target_that_is_no_lane() {
    let mut files = seed_files();
    files[2].1 = files[2]
        .1
        .replace("fallbackTarget: base", "fallbackTarget: stable");
    let d = lint_texts(&files);
    assert!(only(&d).contains(
        "ASMSwimLaneGroup/rollout: spec.permissiveModeConfiguration.fallbackTarget: lane \"stable\" is not a lane of this group"
    ));
}

/// Kruise's end-to-end manifests: what Lanes does not run is refused, each refusal naming
/// its field; nothing decodes and then does nothing.
#[test]
fn kruise_end_to_end_manifests_are_refused_where_lanes_does_not_run_them() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/kruise");
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    let cases: [(&str, &[&str]); 4] = [
        (
            "e2e-rollout_canary_base.yaml",
            &[
                "spec.strategy.canary.trafficRoutings[0].ingress: Lanes routes a release's traffic through the lane group",
            ],
        ),
        (
            "e2e-rollout_v1beta1_canary_base.yaml",
            &["spec.strategy.canary.trafficRoutings[0].ingress: "],
        ),
        (
            "e2e-rollout_v1beta1_partition_base.yaml",
            &["spec.strategy.canary.trafficRoutings[0].ingress: "],
        ),
        (
            "e2e-rollout_v1beta1_bluegreen_base.yaml",
            &["spec.strategy.blueGreen: Lanes does not run blue-green releases"],
        ),
    ];
    for (file, wanted) in cases {
        let (objs, diags) = decode_str(file, &read(file));
        assert!(objs.is_empty(), "{file}: accepted");
        let lines: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
        assert_eq!(lines.len(), wanted.len(), "{file}: {lines:#?}");
        for (line, want) in lines.iter().zip(wanted) {
            assert!(diags.iter().all(|d| d.is_error()));
            assert!(
                line.starts_with(&format!("{file}:1 Rollout/rollouts-")) && line.contains(want),
                "{file}: {line:?} lacks {want:?}"
            );
        }
    }
    // A v1alpha1 partition-style Rollout (the rolling-style annotation) is run as one.
    let file = "e2e-rollout_disabled.yaml";
    let (objs, diags) = decode_str(file, &read(file));
    assert!(diags.is_empty(), "{diags:?}");
    assert_eq!(
        objs[0].object.raw["spec"]["strategy"]["canary"]["enableExtraWorkloadForCanary"],
        false
    );
}

/// The same manifests as Lanes runs them (the canary as an extra Deployment, traffic
/// through the lanes rather than an Ingress) decode and lint clean with their
/// Deployment.
#[test]
fn kruise_end_to_end_manifests_run_as_lanes_releases() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/kruise");
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    for file in [
        "e2e-rollout_canary_base.yaml",
        "e2e-rollout_v1beta1_canary_base.yaml",
        "e2e-rollout_v1beta1_partition_base.yaml",
    ] {
        let text = read(file);
        let cut = text.find("      trafficRoutings:").unwrap();
        // Partition style (`enableExtraWorkloadForCanary: false`) is run as it is.
        let text = text[..cut].to_string();
        let files = [
            (file, text),
            ("e2e-deployment.yaml", read("e2e-deployment.yaml")),
            ("e2e-service.yaml", read("e2e-service.yaml")),
        ];
        // Their steps route traffic, and no lane group holds the Service: said, as a
        // warning (the release would wait in StepTrafficRouting).
        let diags = lint_texts(&files);
        assert_eq!(diags.len(), 1, "{file}: {diags:?}");
        assert!(!diags[0].is_error());
        assert!(
            diags[0].to_string().contains(
                "Rollout/rollouts-demo: warning: spec.strategy.canary.steps: the steps route traffic, but no lane group holds a Service of Deployment \"echoserver\""
            ),
            "{file}: {diags:?}"
        );
    }
}

/// A Rollout whose steps route traffic lints clean when a lane of its workload's group
/// selects the canary's pods, and is warned about when none does.
#[test]
fn traffic_steps_need_a_lane_for_the_canary() {
    let mut files = seed_files();
    files[3].1 = files[3].1.replacen(
        "        - replicas: 1\n",
        "        - replicas: 1\n          traffic: 10%\n",
        1,
    );
    assert!(files[3].1.contains("traffic: 10%"));
    assert!(lint_texts(&files).is_empty());
    files[3].1 = files[3].1.replacen(
        "          ASM_TRAFFIC_TAG: canary",
        "          ASM_TRAFFIC_TAG: blue",
        1,
    );
    let lines: Vec<String> = lint_texts(&files).iter().map(|d| d.to_string()).collect();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].contains("Rollout/rollouts-mocka: warning: spec.strategy.canary.steps: the steps route traffic, but no lane of group \"rollout\" selects the canary's pods (ASM_TRAFFIC_TAG=blue,app=mocka,version=v1): StepTrafficRouting would wait"),
        "{lines:#?}"
    );
}

#[test]
fn v1alpha1_is_read_as_v1beta1() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/kruise");
    let text = std::fs::read_to_string(dir.join("e2e-rollout_canary_base.yaml")).unwrap();
    // Without its Ingress (which Lanes refuses), the v1alpha1 Rollout reads as v1beta1.
    let text = &text[..text.find("      trafficRoutings:").unwrap()];
    let (objs, diags) = decode_str("r.yaml", text);
    assert!(diags.is_empty(), "{diags:?}");
    let o = &objs[0].object;
    assert_eq!(o.raw["apiVersion"], "rollouts.kruise.io/v1beta1");
    assert_eq!(o.raw["spec"]["workloadRef"]["name"], "echoserver");
    let Typed::Rollout(r) = &o.typed else {
        panic!()
    };
    let steps = &r.spec.strategy.canary.as_ref().unwrap().steps;
    let traffic: Vec<_> = steps.iter().map(|s| s.traffic.clone().unwrap()).collect();
    assert_eq!(traffic, ["20%", "40%", "60%", "80%", "100%"]);
    assert_eq!(steps[1].pause.as_ref().unwrap().duration, Some(10));
    // Weight-only steps run their weight's share of pods.
    assert_eq!(
        o.raw["spec"]["strategy"]["canary"]["steps"][0]["replicas"],
        "20%"
    );
}

/// Kruise's webhook: one Rollout per workload; the second is an error naming the first.
#[test]
fn two_rollouts_on_one_workload() {
    let mut files = seed_files();
    let first = files[3].1.split("---").next().unwrap().to_string();
    files.push((
        "40-again.yaml",
        first.replace("name: rollouts-mocka", "name: rollouts-mocka-again"),
    ));
    let lines: Vec<String> = lint_texts(&files).iter().map(|d| d.to_string()).collect();
    assert_eq!(
        lines,
        [
            "40-again.yaml:1 Rollout/rollouts-mocka-again: spec.workloadRef: Rollout/rollouts-mocka (30-rollouts.yaml:1) already releases Deployment \"mocka-v1\"; a workload has one Rollout"
        ],
        "{lines:#?}"
    );
}

/// A partition-style Rollout whose lane label is in its Deployment's selector is an
/// error: relabelling the workload's own pods would take them out of it.
#[test]
fn a_partition_lane_label_in_the_workload_selector() {
    let mut files = seed_files();
    files[3].1 = files[3].1.replacen(
        "enableExtraWorkloadForCanary: true",
        "enableExtraWorkloadForCanary: false",
        1,
    );
    // Partition style over the seed as it is lints clean.
    assert!(lint_texts(&files).is_empty(), "{:?}", lint_texts(&files));
    files[1].1 = files[1].1.replacen(
        "    matchLabels:\n      app: mocka\n",
        "    matchLabels:\n      app: mocka\n      ASM_TRAFFIC_TAG: base\n",
        1,
    );
    assert!(
        files[1]
            .1
            .contains("      ASM_TRAFFIC_TAG: base\n  template")
    );
    let d = lint_texts(&files);
    assert!(
        only(&d).contains(
            "Rollout/rollouts-mocka: spec.strategy.canary.patchPodTemplateMetadata.labels: \"ASM_TRAFFIC_TAG\" is in the selector of Deployment \"mocka-v1\""
        ),
        "{d:?}"
    );
}

/// Partition style runs in `lanes up` only: linted for a cluster it is an error naming
/// the field; the seed's extra-workload Rollouts lint clean for both.
#[test]
fn partition_style_is_an_error_for_a_cluster() {
    let mut files = seed_files();
    assert!(lint_texts_for(&files, Target::Cluster).is_empty());
    files[3].1 = files[3].1.replacen(
        "enableExtraWorkloadForCanary: true",
        "enableExtraWorkloadForCanary: false",
        1,
    );
    assert!(lint_texts(&files).is_empty());
    let d = lint_texts_for(&files, Target::Cluster);
    assert!(
        only(&d).contains(
            "Rollout/rollouts-mocka: spec.strategy.canary.enableExtraWorkloadForCanary: a partition-style release (false, or not set) needs a Deployment controller that honours the partition"
        ),
        "{d:?}"
    );
    assert!(d[0].is_error());
}
