//! The `--flavor istio` output against Istio's own CRD schemas (`tests/data/`): every
//! object validates, no field would be pruned, and every route names a subset that a
//! generated DestinationRule defines.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;

use common::openapi::check;
use common::*;
use lanes_compile::{Flavor, Generated};
use serde_json::{Value, json};

fn schema(kind: &str, version: &str) -> Value {
    let crds = yaml_values(&repo().join("crates/lanes-compile/tests/data/istio-crds.yaml"));
    let crd = crds
        .iter()
        .find(|c| c["spec"]["names"]["kind"] == kind)
        .unwrap_or_else(|| panic!("no CRD for {kind}"));
    crd["spec"]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == version)
        .map(|v| v["schema"]["openAPIV3Schema"].clone())
        .unwrap_or_else(|| panic!("no version {version} of {kind}"))
}

#[test]
fn the_checker_catches_what_a_server_would_refuse_or_prune() {
    let vs = schema("VirtualService", "v1alpha3");
    let good = json!({"apiVersion": "networking.istio.io/v1alpha3", "kind": "VirtualService",
        "metadata": {"name": "x"},
        "spec": {"hosts": ["a"], "http": [{"route": [{"destination": {"host": "a", "subset": "s"}}]}]}});
    assert_eq!(check(&vs, &good), Vec::<String>::new());
    // ASM's fallback is no Istio field: an Istio API server prunes it.
    let mut asm = good.clone();
    asm["spec"]["http"][0]["route"][0]["fallback"] =
        json!({"target": {"host": "a", "subset": "b"}});
    assert!(
        check(&vs, &asm)
            .iter()
            .any(|e| e.contains("fallback") && e.contains("pruned"))
    );
    // A StringMatch with two alternatives breaks its oneOf.
    let mut two = good.clone();
    two["spec"]["http"][0]["match"] = json!([{"uri": {"exact": "/a", "prefix": "/b"}}]);
    assert!(!check(&vs, &two).is_empty());
    // A wrong type.
    let mut wrong = good;
    wrong["spec"]["hosts"] = json!("a");
    assert!(!check(&vs, &wrong).is_empty());
}

#[test]
fn istio_flavor_validates_against_istios_schemas_for_every_case() {
    let vs_schema = schema("VirtualService", "v1alpha3");
    let dr_schema = schema("DestinationRule", "v1alpha3");
    let mut checked = 0;
    for (name, paths) in cases() {
        let out = render(&paths, Flavor::Istio);
        let mut subsets: BTreeSet<(String, String)> = BTreeSet::new();
        for o in &out.objects {
            if let Generated::DestinationRule(dr) = o {
                for s in &dr.spec.subsets {
                    subsets.insert((dr.spec.host.clone(), s.name.clone()));
                }
            }
        }
        for o in &out.objects {
            let value = o.to_value();
            let errs = match o {
                Generated::VirtualService(_) => check(&vs_schema, &value),
                Generated::DestinationRule(_) => check(&dr_schema, &value),
                other => panic!("case {name}: the istio flavor wrote a {}", other.kind()),
            };
            assert!(errs.is_empty(), "case {name}, {}: {errs:#?}", o.meta().name);
            if let Generated::VirtualService(vs) = o {
                for route in vs.spec.http.iter().flat_map(|h| &h.route) {
                    let d = &route.destination;
                    let key = (d.host.clone(), d.subset.clone().unwrap_or_default());
                    assert!(
                        subsets.contains(&key),
                        "case {name}, {}: routes to subset {key:?}, which no DestinationRule defines",
                        vs.metadata.name
                    );
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 30, "only {checked} objects checked");
}

#[test]
fn asm_flavor_is_what_istio_would_prune() {
    // The ASM flavor carries fields only ASM understands; the check says so, which is
    // why `--flavor istio` exists.
    let vs_schema = schema("VirtualService", "v1alpha3");
    let out = render(&[repo().join("examples/seed")], Flavor::Asm);
    let pruned = out
        .objects
        .iter()
        .filter(|o| matches!(o, Generated::VirtualService(_)))
        .any(|o| {
            check(&vs_schema, &o.to_value())
                .iter()
                .any(|e| e.contains("fallback"))
        });
    assert!(pruned);
}
