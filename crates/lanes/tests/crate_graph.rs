//! The crate graph shows the design: the pure crates do no I/O and know no driver; the
//! data plane does not depend on the Kubernetes types; the Kubernetes driver does not
//! depend on the embedded runtime, store or API server. Read from `cargo metadata`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// A dependency's declared features, and whether it uses the default ones.
type Features = (BTreeSet<String>, bool);

/// Each workspace crate's normal (non-dev, non-build) dependencies.
fn normal_dependencies() -> BTreeMap<String, BTreeMap<String, Features>> {
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].is_null())
                .map(|d| {
                    let features = d["features"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|f| f.as_str().unwrap().to_string())
                        .collect();
                    let default = d["uses_default_features"].as_bool().unwrap();
                    (d["name"].as_str().unwrap().to_string(), (features, default))
                })
                .collect();
            (p["name"].as_str().unwrap().to_string(), deps)
        })
        .collect()
}

#[test]
fn the_crate_graph_runs_one_way() {
    let deps = normal_dependencies();
    let of = |c: &str| {
        deps.get(c)
            .unwrap_or_else(|| panic!("no crate {c} in {deps:?}"))
    };
    let io = [
        "tokio",
        "hyper",
        "hyper-util",
        "axum",
        "redb",
        "tower",
        "reqwest",
    ];
    let drivers = [
        "lanes-store",
        "lanes-server",
        "lanes-runtime",
        "lanes-operator",
        "lanes-proxy",
        "lanes-dashboard",
    ];
    for pure in [
        "lanes-routes",
        "lanes-model",
        "lanes-compile",
        "lanes-rollout",
    ] {
        let bad: Vec<_> = of(pure)
            .keys()
            .filter(|d| io.contains(&d.as_str()) || drivers.contains(&d.as_str()))
            .collect();
        assert!(bad.is_empty(), "{pure} is pure but depends on {bad:?}");
        // kube's CustomResource derive (lanes-model) is fine; its client is not.
        if let Some((features, default)) = of(pure).get("kube") {
            let derive_only = !default && features.iter().all(|f| f == "derive");
            assert!(
                derive_only,
                "{pure} uses kube beyond its derive: {features:?}"
            );
        }
    }
    let routes = of("lanes-routes");
    assert!(
        routes.keys().all(|d| !d.starts_with("lanes-")),
        "the route table depends on no other Lanes crate: {routes:?}"
    );
    let proxy = of("lanes-proxy");
    for not in ["kube", "k8s-openapi", "lanes-model", "lanes-compile"] {
        assert!(!proxy.contains_key(not), "lanes-proxy depends on {not}");
    }
    assert!(proxy.contains_key("lanes-routes"));
    let operator = of("lanes-operator");
    for not in [
        "lanes-runtime",
        "lanes-store",
        "lanes-server",
        "lanes-proxy",
    ] {
        assert!(
            !operator.contains_key(not),
            "lanes-operator depends on {not}"
        );
    }
    // The dashboard reads the Kubernetes API only: no driver of the embedded mode.
    let dashboard = of("lanes-dashboard");
    for not in [
        "lanes-runtime",
        "lanes-store",
        "lanes-server",
        "lanes-proxy",
        "lanes-operator",
    ] {
        assert!(
            !dashboard.contains_key(not),
            "lanes-dashboard depends on {not}"
        );
    }
    let runtime = of("lanes-runtime");
    for not in ["lanes-operator", "lanes-server", "lanes-rollout"] {
        assert!(!runtime.contains_key(not), "lanes-runtime depends on {not}");
    }
}
