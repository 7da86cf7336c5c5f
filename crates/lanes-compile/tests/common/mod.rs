//! Shared helpers of the compiler's integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod cel;
pub mod openapi;

use std::path::{Path, PathBuf};

use lanes_compile::{Flavor, Output, compile};
use lanes_model::mesh::assumed_pods;

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The golden cases: name and input paths.
pub fn cases() -> Vec<(&'static str, Vec<PathBuf>)> {
    let seed = repo().join("examples/seed");
    let apps = vec![seed.join("00-gateway.yaml"), seed.join("10-apps.yaml")];
    let case = |dir: &str| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/cases")
            .join(dir)
    };
    let with = |extra: PathBuf| {
        let mut v = apps.clone();
        v.push(extra);
        v
    };
    vec![
        ("seed", vec![seed.clone()]),
        ("mocka-canary", vec![seed.clone(), case("mocka-canary")]),
        ("weighted", with(case("weighted"))),
        ("strict", with(case("strict"))),
        ("service-fallback", with(case("service-fallback"))),
        (
            "traffic-step",
            vec![
                seed.join("00-gateway.yaml"),
                seed.join("10-apps.yaml"),
                seed.join("20-lanes.yaml"),
                case("traffic-step"),
            ],
        ),
    ]
}

/// Loads manifests and compiles them as `lanes render` does.
pub fn render(paths: &[PathBuf], flavor: Flavor) -> Output {
    let loaded = lanes_model::load_paths(paths).unwrap_or_else(|d| {
        panic!(
            "{}",
            d.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    let objects: Vec<_> = loaded.iter().map(|l| &l.object).collect();
    let pods = assumed_pods(objects.iter().copied());
    compile(&objects, &pods, flavor)
}

/// Parses a multi-document YAML file into JSON values.
pub fn yaml_values(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_saphyr::from_multiple(&text).unwrap()
}

/// The objects of an output as JSON values.
pub fn values(out: &Output) -> Vec<serde_json::Value> {
    out.objects.iter().map(|o| o.to_value()).collect()
}

/// Sorts objects by kind and name, for comparison as sets.
pub fn by_name(mut v: Vec<serde_json::Value>) -> Vec<serde_json::Value> {
    v.sort_by_key(|o| (o["kind"].to_string(), o["metadata"]["name"].to_string()));
    v
}
