//! The CRDs Lanes generates from its types: `lanes crds` is what `deploy/crds.yaml`
//! holds, and Lanes' Rollout CRD takes Kruise's v1beta1 manifests without pruning a field
//! and shows Kruise's printer columns.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../lanes-compile/tests/common/openapi.rs"]
mod openapi;

use std::path::{Path, PathBuf};

use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn yaml(path: &Path) -> Vec<Value> {
    serde_saphyr::from_multiple(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn lanes_crds_is_what_deploy_holds() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lanes"))
        .arg("crds")
        .output()
        .unwrap();
    assert!(out.status.success());
    let want = std::fs::read_to_string(repo().join("deploy/crds.yaml")).unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout) == want,
        "deploy/crds.yaml has drifted from the Rust types: run `cargo run -- crds > deploy/crds.yaml`"
    );
    let crds = yaml(&repo().join("deploy/crds.yaml"));
    let names: Vec<&str> = crds
        .iter()
        .map(|c| c["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "asmswimlanegroups.istio.alibabacloud.com",
            "asmswimlanes.istio.alibabacloud.com",
            "rollouts.rollouts.kruise.io",
            "lanereleases.lanes.dev"
        ]
    );
}

fn version<'a>(crd: &'a Value, name: &str) -> &'a Value {
    crd["spec"]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap()
}

#[test]
fn the_rollout_crd_takes_kruises_v1beta1_manifests_without_pruning() {
    let crds = yaml(&repo().join("deploy/crds.yaml"));
    let ours = crds
        .iter()
        .find(|c| c["spec"]["names"]["kind"] == "Rollout")
        .unwrap();
    let schema = &version(ours, "v1beta1")["schema"]["openAPIV3Schema"];
    let dir = repo().join("crates/lanes-model/tests/data/kruise");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if !path
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("e2e-rollout_v1beta1")
        {
            continue;
        }
        for doc in yaml(&path) {
            let errs = openapi::check(schema, &doc);
            assert!(errs.is_empty(), "{}: {errs:#?}", path.display());
            checked += 1;
        }
    }
    assert_eq!(checked, 3);
    // A field the schema does not know would be pruned: the checker says so.
    let mut doc = yaml(&dir.join("e2e-rollout_v1beta1_canary_base.yaml")).remove(0);
    doc["spec"]["strategy"]["canary"]["madeUp"] = Value::Bool(true);
    assert!(
        openapi::check(schema, &doc)
            .iter()
            .any(|e| e.contains("madeUp") && e.contains("pruned"))
    );
}

#[test]
fn the_rollout_crd_shows_kruises_printer_columns() {
    let crds = yaml(&repo().join("deploy/crds.yaml"));
    let ours = crds
        .iter()
        .find(|c| c["spec"]["names"]["kind"] == "Rollout")
        .unwrap();
    let kruise =
        yaml(&repo().join("crates/lanes-model/tests/data/kruise/rollouts.kruise.io_rollouts.yaml"))
            .remove(0);
    let columns = |crd: &Value| -> Vec<(String, String, String)> {
        version(crd, "v1beta1")["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap().to_string(),
                    c["type"].as_str().unwrap().to_string(),
                    c["jsonPath"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    assert_eq!(columns(ours), columns(&kruise));
    let names: Vec<String> = columns(ours).into_iter().map(|c| c.0).collect();
    assert_eq!(
        names,
        ["STATUS", "CANARY_STEP", "CANARY_STATE", "MESSAGE", "AGE"]
    );
    assert_eq!(ours["spec"]["scope"], "Namespaced");
}
