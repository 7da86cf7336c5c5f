//! Golden tests of the compiler: the article's objects, and a snapshot per case and
//! flavor (`UPDATE_GOLDEN=1 cargo test -p lanes-compile --test golden` rewrites them).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use lanes_compile::Flavor;

#[test]
fn seed_renders_the_articles_objects() {
    let out = render(&[repo().join("examples/seed")], Flavor::Asm);
    let expected =
        yaml_values(&repo().join("crates/lanes-compile/tests/golden/article-initial.yaml"));
    assert_eq!(expected.len(), 8);
    assert_eq!(by_name(values(&out)), by_name(expected));
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
}

#[test]
fn seed_renders_in_the_documented_order() {
    let out = render(&[repo().join("examples/seed")], Flavor::Asm);
    let names: Vec<&str> = out.objects.iter().map(|o| o.meta().name.as_str()).collect();
    assert_eq!(
        names,
        [
            "swimlane-ingress-vs-rollout-base",
            "swimlane-ingress-vs-rollout-canary",
            // The group's service order: mockb, mocka, mockc.
            "trafficlabel-vs-rollout-default-mockb",
            "trafficlabel-vs-rollout-default-mocka",
            "trafficlabel-vs-rollout-default-mockc",
            "trafficlabel-dr-rollout-default-mockb",
            "trafficlabel-dr-rollout-default-mocka",
            "trafficlabel-dr-rollout-default-mockc",
        ]
    );
}

#[test]
fn a_canary_deployment_adds_the_canary_subset() {
    let case = cases()
        .into_iter()
        .find(|(n, _)| *n == "mocka-canary")
        .unwrap();
    let out = render(&case.1, Flavor::Asm);
    let drs: Vec<_> = values(&out)
        .into_iter()
        .filter(|v| v["kind"] == "DestinationRule")
        .collect();
    let expected = yaml_values(
        &repo().join("crates/lanes-compile/tests/golden/article-mocka-canary-drs.yaml"),
    );
    assert_eq!(by_name(drs), by_name(expected));
    // The ingress VirtualServices do not change: they name the lane subset either way.
    let seed = render(&[repo().join("examples/seed")], Flavor::Asm);
    let vs = |o: &lanes_compile::Output| -> Vec<_> {
        values(o)
            .into_iter()
            .filter(|v| v["kind"] == "VirtualService")
            .collect()
    };
    assert_eq!(vs(&out), vs(&seed));
}

#[test]
fn snapshots_per_case_and_flavor() {
    let dir = repo().join("crates/lanes-compile/tests/golden");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut mismatches = Vec::new();
    for (name, paths) in cases() {
        for (flavor, fname) in [
            (Flavor::Asm, "asm"),
            (Flavor::Istio, "istio"),
            (Flavor::GatewayApi, "gateway-api"),
        ] {
            let out = render(&paths, flavor);
            let mut text = String::new();
            for (i, o) in out.objects.iter().enumerate() {
                if i > 0 {
                    text.push_str("---\n");
                }
                text.push_str(&serde_saphyr::to_string(o).unwrap());
            }
            text.push_str("---\n# route table\n");
            text.push_str(&serde_saphyr::to_string(&out.routes).unwrap());
            let path = dir.join(format!("{name}.{fname}.yaml"));
            if update {
                std::fs::write(&path, &text).unwrap();
            } else {
                let want = std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                if want != text {
                    mismatches.push(format!("{}:\n{text}", path.display()));
                }
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "golden mismatch:\n{}",
        mismatches.join("\n")
    );
}
