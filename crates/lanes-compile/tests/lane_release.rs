//! A lane release's members leave its lane together: once it is finishing (or rolling
//! back), one compile takes every member's canary out of the lane, though their pods
//! still run and are ready.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use lanes_compile::{Flavor, Output, compile};
use lanes_model::decode::decode_str;
use lanes_model::mesh::assumed_pods;

/// A canary Deployment for each seed Deployment: its template in the canary lane.
const CANARIES: &str = "
apiVersion: apps/v1
kind: Deployment
metadata: {name: NAME-canary}
spec:
  replicas: 1
  selector: {matchLabels: {app: NAME}}
  template:
    metadata:
      labels: {app: NAME, version: v1, ASM_TRAFFIC_TAG: canary}
    spec:
      containers: [{name: default, image: sample:2.0}]
";

fn release(phase: &str, members: &[&str]) -> String {
    let members: Vec<String> = members
        .iter()
        .map(|m| format!("{{rollout: {m}, revision: abc, state: Promoted}}"))
        .collect();
    format!(
        "
apiVersion: lanes.dev/v1alpha1
kind: LaneRelease
metadata: {{name: checkout-v2, namespace: default}}
spec:
  laneGroup: rollout
  lane: canary
  rollouts: [rollouts-mocka, rollouts-mockb, rollouts-mockc]
status:
  phase: {phase}
  members: [{}]
",
        members.join(", ")
    )
}

/// Compiles the seed with a canary of every service running and `extra` objects.
fn compile_with_canaries(extra: &str) -> Output {
    let seed = repo().join("examples/seed");
    let mut loaded = lanes_model::load_paths(&[seed]).unwrap();
    let mut text = String::new();
    for app in ["mocka", "mockb", "mockc"] {
        text.push_str(&CANARIES.replace("NAME", app));
        text.push_str("---\n");
    }
    text.push_str(extra);
    let (more, diagnostics) = decode_str("test.yaml", &text);
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    loaded.extend(more);
    let objects: Vec<_> = loaded.iter().map(|l| &l.object).collect();
    let pods = assumed_pods(objects.iter().copied());
    compile(&objects, &pods, Flavor::Asm)
}

/// The hosts whose DestinationRule has a canary subset.
fn canary_hosts(out: &Output) -> Vec<String> {
    let mut hosts: Vec<String> = values(out)
        .into_iter()
        .filter(|v| v["kind"] == "DestinationRule")
        .filter(|v| {
            v["spec"]["subsets"]
                .as_array()
                .is_some_and(|s| s.iter().any(|s| s["name"] == "canary"))
        })
        .map(|v| v["spec"]["host"].as_str().unwrap().to_string())
        .collect();
    hosts.sort();
    hosts
}

#[test]
fn a_finishing_release_takes_every_members_canary_out_of_the_lane_at_once() {
    let all = [
        "mocka.default.svc.cluster.local",
        "mockb.default.svc.cluster.local",
        "mockc.default.svc.cluster.local",
    ];
    let members = ["rollouts-mocka", "rollouts-mockb", "rollouts-mockc"];
    // While it progresses or promotes, the canaries serve the lane.
    for phase in ["Progressing", "Promoting"] {
        let out = compile_with_canaries(&release(phase, &members));
        assert_eq!(canary_hosts(&out), all, "{phase}");
    }
    // From finishing on (or rolling back), none does, though every pod is ready.
    for phase in ["Finishing", "Completed", "RollingBack", "RolledBack"] {
        let out = compile_with_canaries(&release(phase, &members));
        assert_eq!(canary_hosts(&out), Vec::<String>::new(), "{phase}");
        // The route table agrees: no service has a canary subset.
        for s in &out.routes.groups[0].services {
            assert!(
                s.subsets.iter().all(|s| s.name != "canary"),
                "{phase}: {}",
                s.name
            );
        }
    }
}

#[test]
fn only_the_members_listed_leave_the_lane() {
    // mockc is not a member of the release under way: its canary stays in the lane.
    let out = compile_with_canaries(&release("Finishing", &["rollouts-mocka", "rollouts-mockb"]));
    assert_eq!(canary_hosts(&out), ["mockc.default.svc.cluster.local"]);
}
