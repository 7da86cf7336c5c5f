//! OpenAPI v3 (`/openapi/v3` and one document per group-version), generated from the
//! Rust types (the built-in kinds, through k8s-openapi's schemas) and the CRDs Lanes
//! produces. The PATCH paths declare `fieldValidation`, so kubectl leaves validation
//! to the server; `kubectl explain` reads the schemas. Strict validation walks the
//! same schemas.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use lanes_model::Kind;
use schemars::JsonSchema;
use serde_json::{Map, Value, json};

use super::catalog::Resource;

/// The schema name of a kind in `components.schemas`.
fn schema_name(r: &Resource) -> String {
    let group = if r.group.is_empty() {
        "core".to_string()
    } else {
        r.group.split('.').rev().collect::<Vec<_>>().join(".")
    };
    match r.kind {
        Kind::Pod | Kind::Service | Kind::Namespace | Kind::Event if r.group.is_empty() => {
            format!("io.k8s.api.core.v1.{}", r.kind.name())
        }
        Kind::Event => "io.k8s.api.events.v1.Event".into(),
        Kind::Deployment => "io.k8s.api.apps.v1.Deployment".into(),
        Kind::ReplicaSet => "io.k8s.api.apps.v1.ReplicaSet".into(),
        Kind::Lease => "io.k8s.api.coordination.v1.Lease".into(),
        _ => format!("{group}.{}.{}", r.version, r.kind.name()),
    }
}

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

/// The OpenAPI 3 schemas of the built-in kinds Lanes serves and of every definition
/// they refer to, by name, as k8s-openapi's `schemars` feature generates them. They are
/// a committed file so that normal builds leave that feature (and its build time) out;
/// `tests/builtin_schemas.rs` generates them afresh and compares
/// (`LANES_UPDATE_FIXTURES=1` rewrites the file).
pub const BUILTIN_SCHEMAS: &str = include_str!("builtin_schemas.json");

/// The names of the built-in kinds' root schemas in [`BUILTIN_SCHEMAS`].
pub const BUILTIN_KINDS: [&str; 9] = [
    OBJECT_META,
    "io.k8s.api.core.v1.Pod",
    "io.k8s.api.core.v1.Service",
    "io.k8s.api.core.v1.Namespace",
    "io.k8s.api.core.v1.Event",
    "io.k8s.api.events.v1.Event",
    "io.k8s.api.apps.v1.Deployment",
    "io.k8s.api.apps.v1.ReplicaSet",
    "io.k8s.api.coordination.v1.Lease",
];

fn builtin_schemas() -> &'static Map<String, Value> {
    static SCHEMAS: OnceLock<Map<String, Value>> = OnceLock::new();
    // A test holds that the committed file parses and holds every kind.
    SCHEMAS.get_or_init(|| serde_json::from_str(BUILTIN_SCHEMAS).unwrap_or_default())
}

/// Adds the built-in schema `name` and every built-in schema it refers to, at any
/// depth, to `out`.
fn builtin(name: &str, out: &mut Map<String, Value>) {
    let mut todo = vec![name.to_string()];
    while let Some(name) = todo.pop() {
        if out.contains_key(&name) {
            continue;
        }
        if let Some(schema) = builtin_schemas().get(&name) {
            refs_in(schema, &mut todo);
            out.insert(name, schema.clone());
        }
    }
}

/// The schema names `schema` refers to (`$ref: #/components/schemas/NAME`).
fn refs_in(schema: &Value, out: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            for (k, v) in map {
                match v
                    .as_str()
                    .and_then(|r| r.strip_prefix("#/components/schemas/"))
                {
                    Some(name) if k == "$ref" => out.push(name.to_string()),
                    _ => refs_in(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs_in(v, out)),
        _ => {}
    }
}

/// The CRD `openAPIV3Schema` of one of Lanes' kinds, its metadata typed as ObjectMeta.
fn crd_schema(kind: Kind) -> Value {
    let schema = lanes_model::crds()
        .into_iter()
        .find(|c| c.pointer("/spec/names/kind").and_then(Value::as_str) == Some(kind.name()))
        .and_then(|c| {
            c.pointer("/spec/versions/0/schema/openAPIV3Schema")
                .cloned()
        })
        .unwrap_or_else(|| json!({"type": "object"}));
    with_object_fields(schema)
}

/// A Gateway API kind: the schema of the Gateway API's own CRD.
fn gateway_api_schema(kind: Kind) -> Value {
    let schema = lanes_model::gateway_api::schema(kind)
        .cloned()
        .unwrap_or_else(|| json!({"type": "object"}));
    with_object_fields(schema)
}

/// A CRD's schema with `metadata` as ObjectMeta and `apiVersion`/`kind` described.
fn with_object_fields(mut schema: Value) -> Value {
    schema["properties"]["metadata"] =
        json!({"$ref": format!("#/components/schemas/{OBJECT_META}")});
    schema["properties"]["apiVersion"] = json!({"type": "string",
        "description": "APIVersion defines the versioned schema of this representation of an object."});
    schema["properties"]["kind"] = json!({"type": "string",
        "description": "Kind is a string value representing the REST resource this object represents."});
    schema
}

/// An Istio kind: Lanes reads the fields it routes by and keeps every other, so its
/// spec takes any field (Istio's own CRDs validate them on a cluster).
fn istio_schema<S: JsonSchema>(kind: Kind, gen_: &mut schemars::SchemaGenerator) -> Value {
    let mut spec = serde_json::to_value(gen_.subschema_for::<S>()).unwrap_or_default();
    spec["x-kubernetes-preserve-unknown-fields"] = true.into();
    spec["type"] = "object".into();
    json!({
        "type": "object",
        "description": format!("Istio {}, as Lanes reads it.", kind.name()),
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"$ref": format!("#/components/schemas/{OBJECT_META}")},
            "spec": spec,
            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
        },
    })
}

/// Every schema of a group-version, by name.
fn schemas(group: &str, version: &str) -> Map<String, Value> {
    let mut generator = schemars::generate::SchemaSettings::openapi3().into_generator();
    let resources: Vec<Resource> = Resource::all()
        .into_iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    let mut own = Map::new();
    let mut builtins = Map::new();
    builtin(OBJECT_META, &mut builtins);
    for r in &resources {
        match r.kind {
            Kind::Pod
            | Kind::Service
            | Kind::Namespace
            | Kind::Event
            | Kind::Deployment
            | Kind::ReplicaSet
            | Kind::Lease => builtin(&schema_name(r), &mut builtins),
            Kind::Gateway => {
                let s = istio_schema::<lanes_model::istio::GatewaySpec>(r.kind, &mut generator);
                own.insert(schema_name(r), s);
            }
            Kind::VirtualService => {
                let s =
                    istio_schema::<lanes_model::istio::VirtualServiceSpec>(r.kind, &mut generator);
                own.insert(schema_name(r), s);
            }
            Kind::DestinationRule => {
                let s =
                    istio_schema::<lanes_model::istio::DestinationRuleSpec>(r.kind, &mut generator);
                own.insert(schema_name(r), s);
            }
            Kind::LaneGroup | Kind::Lane | Kind::Rollout | Kind::LaneRelease => {
                own.insert(schema_name(r), crd_schema(r.kind));
            }
            Kind::KubeGateway | Kind::HttpRoute | Kind::GrpcRoute => {
                own.insert(schema_name(r), gateway_api_schema(r.kind));
            }
        }
    }
    let mut all: Map<String, Value> = generator.take_definitions(true).into_iter().collect();
    all.extend(builtins);
    all.extend(own);
    for r in &resources {
        if let Some(s) = all.get_mut(&schema_name(r)) {
            s["x-kubernetes-group-version-kind"] =
                json!([{"group": r.group, "version": r.version, "kind": r.kind.name()}]);
        }
    }
    all
}

fn query(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description,
           "schema": {"type": "string", "uniqueItems": true}})
}

fn path_param(name: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "schema": {"type": "string", "uniqueItems": true}})
}

/// The query parameters of the writing verbs (kubectl looks for `fieldValidation`
/// among a PATCH operation's parameters before it leaves validation to the server).
fn write_parameters(action: &str) -> Vec<Value> {
    let mut out = vec![
        query(
            "dryRun",
            "When present, indicates that modifications should not be persisted.",
        ),
        query("fieldManager", "The name of the actor making the change."),
        query(
            "fieldValidation",
            "How the server treats unknown and duplicate fields: Ignore, Warn or Strict.",
        ),
    ];
    if action == "patch" {
        out.push(query(
            "force",
            "Force is going to \"force\" Apply requests.",
        ));
    }
    out
}

fn operation(action: &str, r: &Resource, schema: &str) -> Value {
    let body = json!({"content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}});
    let mut op = json!({
        "operationId": format!("{action}{}", r.kind.name()),
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind.name()},
        "responses": {"200": {"description": "OK", "content": body["content"].clone()}},
    });
    if matches!(action, "post" | "put" | "patch") {
        op["requestBody"] = body;
        op["parameters"] = Value::Array(write_parameters(action));
    }
    op
}

/// The paths of one resource: the collection and the object (and its status).
fn paths(r: &Resource) -> Vec<(String, Value)> {
    let schema = schema_name(r);
    let base = if r.group.is_empty() {
        "/api/v1".to_string()
    } else {
        format!("/apis/{}", r.api_version())
    };
    let collection = if r.namespaced() {
        format!("{base}/namespaces/{{namespace}}/{}", r.plural())
    } else {
        format!("{base}/{}", r.plural())
    };
    let mut scoped = vec![];
    if r.namespaced() {
        scoped.push(path_param("namespace"));
    }
    let coll_params = scoped.clone();
    let mut out = vec![(
        collection.clone(),
        json!({"get": operation("list", r, &schema), "post": operation("post", r, &schema),
               "delete": operation("deletecollection", r, &schema), "parameters": coll_params}),
    )];
    let mut obj_params = scoped;
    obj_params.push(path_param("name"));
    let object_ops = json!({"get": operation("get", r, &schema), "put": operation("put", r, &schema),
        "patch": operation("patch", r, &schema), "delete": operation("delete", r, &schema),
        "parameters": obj_params});
    out.push((format!("{collection}/{{name}}"), object_ops.clone()));
    if r.has_status() {
        out.push((format!("{collection}/{{name}}/status"), object_ops));
    }
    out
}

/// The document of one group-version.
fn document(group: &str, version: &str) -> Value {
    let mut all_paths = Map::new();
    for r in Resource::all()
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        for (p, v) in paths(r) {
            all_paths.insert(p, v);
        }
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Lanes", "version": env!("CARGO_PKG_VERSION")},
        "paths": all_paths,
        "components": {"schemas": schemas(group, version)},
    })
}

/// Documents by path (`api/v1`, `apis/apps/v1`), made once.
fn documents() -> &'static BTreeMap<String, Value> {
    static DOCS: OnceLock<BTreeMap<String, Value>> = OnceLock::new();
    DOCS.get_or_init(|| {
        Resource::group_versions()
            .into_iter()
            .map(|(g, v)| {
                let path = if g.is_empty() {
                    format!("api/{v}")
                } else {
                    format!("apis/{g}/{v}")
                };
                (path, document(g, v))
            })
            .collect()
    })
}

fn hash_of(doc: &Value) -> String {
    lanes_model::hash::template_hash(doc).to_uppercase()
}

/// `GET /openapi/v3`: where each group-version's document is.
pub fn index() -> Value {
    let paths: Map<String, Value> = documents()
        .iter()
        .map(|(p, doc)| {
            (
                p.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={}", hash_of(doc))}),
            )
        })
        .collect();
    json!({"paths": paths})
}

/// `GET /openapi/v3/{path}`.
pub fn get(path: &str) -> Option<&'static Value> {
    documents().get(path.trim_matches('/'))
}

/// Fields of `object` that the schema of `resource` does not know, as paths
/// (`spec.foo`, `spec.template.spec.containers[0].bogus`).
pub fn unknown_fields(resource: &Resource, object: &Value) -> Vec<String> {
    let prefix = if resource.group.is_empty() {
        format!("api/{}", resource.version)
    } else {
        format!("apis/{}", resource.api_version())
    };
    let Some(doc) = get(&prefix) else {
        return Vec::new();
    };
    let schemas = &doc["components"]["schemas"];
    let mut out = Vec::new();
    if let Some(root) = schemas.get(schema_name(resource)) {
        unknown(schemas, root, object, "", &mut out, 0);
    }
    out
}

fn resolve<'a>(schemas: &'a Value, mut schema: &'a Value) -> &'a Value {
    for _ in 0..16 {
        if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
            let name = r.trim_start_matches("#/components/schemas/");
            match schemas.get(name) {
                Some(s) => schema = s,
                None => return schema,
            }
        } else if let Some(first) = schema.get("allOf").and_then(|a| a.get(0)) {
            schema = first;
        } else {
            break;
        }
    }
    schema
}

fn unknown(
    schemas: &Value,
    schema: &Value,
    value: &Value,
    at: &str,
    out: &mut Vec<String>,
    depth: usize,
) {
    if depth > 64 || out.len() >= 32 {
        return;
    }
    let schema = resolve(schemas, schema);
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        return;
    }
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            for (k, v) in map {
                let path = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                match (props.and_then(|p| p.get(k)), additional) {
                    (Some(s), _) => unknown(schemas, s, v, &path, out, depth + 1),
                    (None, Some(Value::Object(s))) => {
                        unknown(schemas, &Value::Object(s.clone()), v, &path, out, depth + 1)
                    }
                    (None, Some(Value::Bool(true))) => {}
                    (None, _) if props.is_some() => out.push(path),
                    (None, _) => {}
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    unknown(
                        schemas,
                        item_schema,
                        v,
                        &format!("{at}[{i}]"),
                        out,
                        depth + 1,
                    );
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_group_version_has_a_document_with_field_validation() {
        let index = index();
        for (g, v) in Resource::group_versions() {
            let p = if g.is_empty() {
                format!("api/{v}")
            } else {
                format!("apis/{g}/{v}")
            };
            assert!(index["paths"].get(&p).is_some(), "{p}");
            let doc = get(&p).unwrap();
            let has = doc["paths"].as_object().unwrap().values().any(|path| {
                path["patch"]["parameters"]
                    .as_array()
                    .is_some_and(|ps| ps.iter().any(|x| x["name"] == "fieldValidation"))
            });
            assert!(has, "{p}");
        }
        let apps = get("apis/apps/v1").unwrap();
        assert!(apps["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"]["x-kubernetes-group-version-kind"].is_array());
    }

    #[test]
    fn strict_validation_names_unknown_fields() {
        let d = Resource::find("apps", "v1", "deployments").unwrap();
        let obj = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x", "bogus": 1},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "a", "imagee": "x"}]}}}});
        assert_eq!(
            unknown_fields(&d, &obj),
            vec![
                "metadata.bogus".to_string(),
                "spec.template.spec.containers[0].imagee".to_string()
            ]
        );
        let r = Resource::find("rollouts.kruise.io", "v1beta1", "rollouts").unwrap();
        let ro = json!({"metadata": {"name": "r"}, "spec": {"workloadRef": {"kind": "Deployment", "name": "d", "apiVersion": "apps/v1"}, "nope": true}});
        assert_eq!(unknown_fields(&r, &ro), vec!["spec.nope".to_string()]);
    }
}
