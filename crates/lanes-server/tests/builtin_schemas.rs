//! The committed schemas of the built-in kinds (`src/k8s/builtin_schemas.json`) are
//! what k8s-openapi's `schemars` feature generates today: this test, whose build
//! enables that feature (a dev-dependency), generates them afresh and compares.
//! `LANES_UPDATE_FIXTURES=1 cargo test -p lanes-server --test builtin_schemas`
//! rewrites the file after a k8s-openapi upgrade.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use k8s_openapi::api as k;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use lanes_server::k8s::openapi::{BUILTIN_KINDS, BUILTIN_SCHEMAS};
use serde_json::{Map, Value};

fn generated() -> Map<String, Value> {
    let mut generator = schemars::generate::SchemaSettings::openapi3().into_generator();
    let _ = generator.subschema_for::<ObjectMeta>();
    let _ = generator.subschema_for::<k::core::v1::Pod>();
    let _ = generator.subschema_for::<k::core::v1::Service>();
    let _ = generator.subschema_for::<k::core::v1::Namespace>();
    let _ = generator.subschema_for::<k::core::v1::Event>();
    let _ = generator.subschema_for::<k::events::v1::Event>();
    let _ = generator.subschema_for::<k::apps::v1::Deployment>();
    let _ = generator.subschema_for::<k::apps::v1::ReplicaSet>();
    let _ = generator.subschema_for::<k::coordination::v1::Lease>();
    generator.take_definitions(true).into_iter().collect()
}

#[test]
fn the_committed_builtin_schemas_are_what_k8s_openapi_generates() {
    let fresh = generated();
    for kind in BUILTIN_KINDS {
        assert!(fresh.contains_key(kind), "{kind} is not generated");
    }
    if std::env::var_os("LANES_UPDATE_FIXTURES").is_some() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/k8s/builtin_schemas.json");
        let text = serde_json::to_string_pretty(&Value::Object(fresh.clone())).unwrap();
        std::fs::write(path, text + "\n").unwrap();
        return;
    }
    let committed: Map<String, Value> =
        serde_json::from_str(BUILTIN_SCHEMAS).expect("src/k8s/builtin_schemas.json parses");
    let names =
        |m: &Map<String, Value>| m.keys().cloned().collect::<std::collections::BTreeSet<_>>();
    assert_eq!(names(&committed), names(&fresh), "the same definitions");
    for (name, schema) in &fresh {
        assert_eq!(
            committed.get(name),
            Some(schema),
            "{name} differs: LANES_UPDATE_FIXTURES=1 cargo test -p lanes-server --test builtin_schemas"
        );
    }
}
