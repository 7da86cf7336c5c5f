//! A second, independent client: the official Kubernetes Python client (PyPI
//! `kubernetes`) lists, creates, patches and watches through the kubeconfig `lanes up`
//! writes. `scripts/test` installs the client (into `target/py`) and names its Python
//! in `LANES_PYTHON`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Daemon, eventually, repo};

fn python() -> String {
    std::env::var("LANES_PYTHON").unwrap_or_else(|_| "python3".into())
}

#[test]
fn the_python_client_lists_creates_patches_and_watches() {
    let check = Command::new(python())
        .args(["-c", "import kubernetes; print(kubernetes.__version__)"])
        .output()
        .expect("python3");
    assert!(
        check.status.success(),
        "the Kubernetes Python client is missing: run the tests with scripts/test, which installs it ({})",
        String::from_utf8_lossy(&check.stderr)
    );
    println!(
        "kubernetes (Python) {}",
        String::from_utf8_lossy(&check.stdout).trim()
    );
    let d = Daemon::start();
    d.ok(&["apply", "-f", "examples/seed/"]);
    eventually(Duration::from_secs(60), || {
        let pods = d.client_list_pods();
        (pods == 3).then_some(())
    });
    let script = repo().join("crates/lanes/tests/tools/python_client.py");
    let out = Command::new(python())
        .arg(&script)
        .arg(d.state.join("kubeconfig"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    println!("{v}");
    assert_eq!(v["pods"].as_array().unwrap().len(), 3, "{v}");
    assert_eq!(
        v["deployments"],
        serde_json::json!(["mocka-v1", "mockb-v1", "mockc-v1"])
    );
    assert_eq!(
        v["rollouts"],
        serde_json::json!(["rollouts-mocka", "rollouts-mockb", "rollouts-mockc"])
    );
    for ns in ["default", "istio-system", "kube-system"] {
        assert!(
            v["namespaces"].as_array().unwrap().iter().any(|n| n == ns),
            "{v}"
        );
    }
    assert_eq!(v["created"], "py-web");
    assert_eq!(v["created_uid"], true);
    assert_eq!(v["patched"], "yes");
    let watched = v["watched"].as_array().unwrap();
    assert!(
        watched
            .iter()
            .any(|e| e[0] == "MODIFIED" && e[1] == "py-web" && e[2] == "yes"),
        "{v}"
    );
    assert_eq!(v["missing"], serde_json::json!([404, "NotFound"]));
    assert_eq!(v["after_delete"], serde_json::json!([]));
}
