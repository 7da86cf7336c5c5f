//! The `--flavor gateway-api` output against the Gateway API's own HTTPRoute CRD
//! (`crates/lanes-model/data/gateway-api/`, v1.6.1), as an API server with Gateway
//! API installed checks it: defaults filled in, every field known (nothing pruned),
//! every CEL rule reached holds. And each route's backends are Services the flavor
//! writes, with the port they have.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;

use common::openapi::{check_with, defaulted};
use common::*;
use lanes_compile::{Flavor, Generated};
use serde_json::{Value, json};

fn schema() -> Value {
    let crds = yaml_values(&repo().join("crates/lanes-model/data/gateway-api/httproutes.yaml"));
    let crd = &crds[0];
    assert_eq!(crd["spec"]["names"]["kind"], "HTTPRoute");
    crd["spec"]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "v1")
        .map(|v| v["schema"]["openAPIV3Schema"].clone())
        .unwrap()
}

/// What an API server finds wrong with `route`.
fn problems(schema: &Value, route: &Value) -> Vec<String> {
    let mut v = route.clone();
    defaulted(schema, &mut v);
    check_with(schema, &v, &common::cel::holds)
}

#[test]
fn the_checker_evaluates_the_crds_rules() {
    let schema = schema();
    let good = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "r", "namespace": "default"},
        "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "a", "port": 80}],
                 "rules": [{"matches": [{"path": {"type": "Exact", "value": "/x"}}],
                            "backendRefs": [{"name": "a-base", "port": 80}]}]}});
    assert_eq!(problems(&schema, &good), Vec::<String>::new());
    let broken = |pointer: &str, value: Value| {
        let mut v = good.clone();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        match v.pointer_mut(parent).unwrap() {
            Value::Array(items) => items[key.parse::<usize>().unwrap()] = value,
            other => {
                other[key] = value;
            }
        }
        problems(&schema, &v)
    };
    // A Service backend needs its port (a CEL rule).
    let errs = broken("/spec/rules/0/backendRefs/0", json!({"name": "a-base"}));
    assert!(
        errs.iter().any(|e| e.contains("Must have port")),
        "{errs:?}"
    );
    // A path must be absolute (a CEL rule).
    let errs = broken("/spec/rules/0/matches/0/path/value", json!("x"));
    assert!(errs.iter().any(|e| e.contains("absolute path")), "{errs:?}");
    // Two header modifiers on one rule (a CEL rule on the list).
    let modifier = json!({"type": "RequestHeaderModifier",
        "requestHeaderModifier": {"set": [{"name": "a", "value": "b"}]}});
    let errs = broken("/spec/rules/0/filters", json!([modifier, modifier]));
    assert!(
        errs.iter().any(|e| e.contains("RequestHeaderModifier")),
        "{errs:?}"
    );
    // An Istio-style field is pruned; an unknown match type refused.
    let errs = broken("/spec/rules/0/matches/0/uri", json!({"exact": "/x"}));
    assert!(errs.iter().any(|e| e.contains("pruned")), "{errs:?}");
    let errs = broken("/spec/rules/0/matches/0/path/type", json!("Prefix"));
    assert!(!errs.is_empty());
}

#[test]
fn gateway_api_flavor_validates_against_the_httproute_crd_for_every_case() {
    let schema = schema();
    let mut routes = 0;
    let mut kinds = BTreeSet::new();
    for (name, paths) in cases() {
        let out = render(&paths, Flavor::GatewayApi);
        let mut services: BTreeSet<(String, String, u64)> = BTreeSet::new();
        for o in &out.objects {
            kinds.insert(o.kind().to_string());
            if let Generated::Service(s) = o {
                for p in &s.spec.ports {
                    let key = (s.metadata.namespace.clone(), s.metadata.name.clone());
                    services.insert((key.0, key.1, u64::from(p.port)));
                }
            }
        }
        for o in out.objects.iter().filter(|o| o.kind() == "HTTPRoute") {
            let value = o.to_value();
            let errs = problems(&schema, &value);
            assert!(errs.is_empty(), "case {name}, {}: {errs:#?}", o.meta().name);
            let ns = &o.meta().namespace;
            for b in value["spec"]["rules"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|r| r["backendRefs"].as_array().unwrap())
            {
                let key = (
                    b["namespace"].as_str().unwrap_or(ns).to_string(),
                    b["name"].as_str().unwrap().to_string(),
                    b["port"].as_u64().unwrap(),
                );
                assert!(
                    services.contains(&key),
                    "case {name}, {}: backend {key:?} is no Service the flavor writes",
                    o.meta().name
                );
            }
            routes += 1;
        }
        assert!(
            !out.objects.iter().any(|o| matches!(
                o,
                Generated::VirtualService(_) | Generated::DestinationRule(_)
            )),
            "case {name}: Istio objects in the gateway-api flavor"
        );
    }
    assert!(routes >= 20, "only {routes} HTTPRoutes checked");
    assert_eq!(
        kinds,
        BTreeSet::from(["HTTPRoute".into(), "Service".into()])
    );
}
