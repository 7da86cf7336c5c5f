//! A decoded object: its raw form (every field kept) and a typed view of what Lanes reads.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::istio::{DestinationRuleSpec, GatewaySpec, VirtualServiceSpec};
use crate::kind::Kind;
use crate::lane::{ASMSwimLane, ASMSwimLaneGroup};
use crate::rollout::{Rollout, convert_v1alpha1};
use crate::validate;

/// A problem with one field of an object: where (a path such as
/// `spec.strategy.canary.steps[0].replicas`) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the field; empty for the object as a whole.
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// Whether the document could not be read as its kind at all (a wrong type, a
    /// missing mapping), as opposed to a value that reads but is not allowed.
    pub decode: bool,
}

impl FieldError {
    /// A value at `path` that is not allowed.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            path: path.into(),
            message: message.into(),
            decode: false,
        }
    }

    /// A value at `path` that cannot be read as its type.
    pub fn decode(path: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            decode: true,
            ..FieldError::new(path, message)
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// An Istio object as read from input: metadata and a typed spec.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IstioInput<S> {
    /// Metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Spec.
    #[serde(default)]
    pub spec: S,
}

/// The typed view of an object.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum Typed {
    /// A Service.
    Service(Box<Service>),
    /// A Pod.
    Pod(Box<Pod>),
    /// A Deployment.
    Deployment(Box<Deployment>),
    /// A ReplicaSet.
    ReplicaSet(Box<k8s_openapi::api::apps::v1::ReplicaSet>),
    /// An Istio Gateway.
    Gateway(Box<IstioInput<GatewaySpec>>),
    /// An Istio VirtualService.
    VirtualService(Box<IstioInput<VirtualServiceSpec>>),
    /// An Istio DestinationRule.
    DestinationRule(Box<IstioInput<DestinationRuleSpec>>),
    /// A Gateway API Gateway (its spec as stored; checked against the CRD's schema).
    KubeGateway(Box<IstioInput<Value>>),
    /// A Gateway API HTTPRoute.
    HttpRoute(Box<IstioInput<crate::gateway_api::HttpRouteSpec>>),
    /// A Gateway API GRPCRoute (its spec as stored; checked against the CRD's schema).
    GrpcRoute(Box<IstioInput<Value>>),
    /// A lane group.
    LaneGroup(Box<ASMSwimLaneGroup>),
    /// A lane.
    Lane(Box<ASMSwimLane>),
    /// A Rollout (v1beta1; v1alpha1 input is converted).
    Rollout(Box<Rollout>),
    /// A lane release.
    LaneRelease(Box<crate::lane_release::LaneRelease>),
    /// A Namespace.
    Namespace(Box<k8s_openapi::api::core::v1::Namespace>),
    /// An Event (`events.k8s.io/v1` input is converted to the core form).
    Event(Box<k8s_openapi::api::core::v1::Event>),
    /// A Lease.
    Lease(Box<k8s_openapi::api::coordination::v1::Lease>),
}

/// Identifies an object: kind, namespace (none for cluster-scoped kinds) and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// Kind.
    pub kind: Kind,
    /// Namespace, `None` for cluster-scoped kinds.
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// A decoded, validated object.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    /// Kind.
    pub kind: Kind,
    /// Name.
    pub name: String,
    /// Namespace (`default` when the input had none); `None` for cluster-scoped kinds.
    pub namespace: Option<String>,
    /// The whole object as JSON, unknown fields kept, namespace defaulted, v1alpha1
    /// Rollouts converted to v1beta1.
    pub raw: Value,
    /// The typed view.
    pub typed: Typed,
}

/// Kind and name of a document, as far as they could be read, for error messages.
pub fn describe_value(value: &Value) -> Option<String> {
    let kind = value.get("kind")?.as_str()?;
    let name = value
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("<no name>");
    Some(format!("{kind}/{name}"))
}

fn typed<T: DeserializeOwned>(raw: &Value) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(raw).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        FieldError::decode(path, tidy_serde_message(&e.into_inner().to_string()))
    })
}

/// Rewrites serde's Rust-flavoured type names into words a manifest author knows.
fn tidy_serde_message(message: &str) -> String {
    let mut out = message.to_string();
    for (rust, words) in [
        ("expected i32", "expected an integer"),
        ("expected i64", "expected an integer"),
        ("expected u32", "expected a non-negative integer"),
        ("expected u16", "expected a port number"),
        ("expected a sequence", "expected a list"),
        ("expected a map", "expected a mapping"),
    ] {
        out = out.replace(rust, words);
    }
    out
}

fn required_str<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<&'a str, FieldError> {
    match obj.get(field) {
        None | Some(Value::Null) => Err(FieldError::new(field, "is required")),
        Some(Value::String(s)) if s.is_empty() => Err(FieldError::new(field, "must not be empty")),
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(FieldError::new(
            field,
            format!("expected a string, got {}", value_type(other)),
        )),
    }
}

/// A short name of a JSON value's type, for messages.
pub fn value_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a sequence",
        Value::Object(_) => "a mapping",
    }
}

/// Whether object `v` has a controller owner reference to the object with `uid`.
pub fn controlled_by(v: &Value, uid: &str) -> bool {
    v.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|os| {
            os.iter()
                .any(|o| o["uid"] == uid && o["controller"] == true)
        })
}

/// A label selector's `matchLabels` (the `spec.selector` of a workload, as JSON) as the
/// `k=v,...` string a list request takes.
pub fn match_labels_query(selector: &Value) -> String {
    selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| format!("{k}={v}")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// The string entries of the mapping at JSON pointer `ptr` (labels, selectors);
/// empty when there is none.
pub fn string_map(v: &Value, ptr: &str) -> BTreeMap<String, String> {
    v.pointer(ptr)
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

impl Object {
    /// Decodes and validates one object from its JSON form. Every problem found is
    /// returned; the first type error stops decoding.
    pub fn from_value(mut raw: Value) -> Result<Object, Vec<FieldError>> {
        let Value::Object(obj) = &raw else {
            return Err(vec![FieldError::decode(
                "",
                format!("expected a mapping (an object), got {}", value_type(&raw)),
            )]);
        };
        let api_version = required_str(obj, "apiVersion").map_err(|e| vec![e])?;
        let kind_name = required_str(obj, "kind").map_err(|e| vec![e])?;
        let kind = Kind::from_api(api_version, kind_name).ok_or_else(|| {
            let known: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
            vec![FieldError::new(
                "kind",
                format!(
                    "unknown kind {kind_name:?} ({api_version}); Lanes accepts {}",
                    known.join(", ")
                ),
            )]
        })?;
        kind.check_api_version(api_version)
            .map_err(|m| vec![FieldError::new("apiVersion", m)])?;
        let is_v1alpha1_rollout = kind == Kind::Rollout && api_version.ends_with("/v1alpha1");
        let is_events_v1 = kind == Kind::Event && api_version == crate::kind::EVENTS_V1;

        let meta = match obj.get("metadata") {
            Some(Value::Object(m)) => m,
            None | Some(Value::Null) => {
                return Err(vec![FieldError::new("metadata", "is required")]);
            }
            Some(other) => {
                return Err(vec![FieldError::decode(
                    "metadata",
                    format!("expected a mapping, got {}", value_type(other)),
                )]);
            }
        };
        let name = required_str(meta, "name")
            .map_err(|e| vec![FieldError::new(format!("metadata.{}", e.path), e.message)])?
            .to_string();
        let namespace = if kind.namespaced() {
            match meta.get("namespace") {
                None | Some(Value::Null) => Some("default".to_string()),
                Some(Value::String(ns)) if ns.is_empty() => Some("default".to_string()),
                Some(Value::String(ns)) => Some(ns.clone()),
                Some(other) => {
                    return Err(vec![FieldError::decode(
                        "metadata.namespace",
                        format!("expected a string, got {}", value_type(other)),
                    )]);
                }
            }
        } else {
            None
        };

        // Normalise the raw form: namespace defaulted (or dropped for cluster-scoped
        // kinds, as an API server does), v1alpha1 Rollouts converted.
        if let Some(meta) = raw.get_mut("metadata").and_then(Value::as_object_mut) {
            match &namespace {
                Some(ns) => {
                    meta.insert("namespace".into(), Value::String(ns.clone()));
                }
                None => {
                    meta.remove("namespace");
                }
            }
        }
        if is_v1alpha1_rollout {
            convert_v1alpha1(&mut raw);
        }
        if is_events_v1 {
            crate::events::to_core(&mut raw);
        }
        // A Gateway API object takes its CRD's defaults, and is checked against its
        // schema (fields, patterns, CEL rules) as an API server with the CRDs would.
        if let Some(schema) = crate::gateway_api::schema(kind) {
            crate::openapi::defaulted(schema, &mut raw);
            let errors = crate::openapi::check_with(schema, &raw, &crate::openapi::cel_holds);
            if !errors.is_empty() {
                return Err(errors);
            }
        }

        let typed = match kind {
            Kind::Service => Typed::Service(Box::new(typed(&raw).map_err(|e| vec![e])?)),
            Kind::Pod => Typed::Pod(Box::new(typed(&raw).map_err(|e| vec![e])?)),
            Kind::Deployment => Typed::Deployment(Box::new(typed(&raw).map_err(|e| vec![e])?)),
            Kind::ReplicaSet => Typed::ReplicaSet(Box::new(typed(&raw).map_err(|e| vec![e])?)),
            Kind::Gateway => Typed::Gateway(Box::new(typed(&raw).map_err(|e| vec![e])?)),
            Kind::VirtualService => {
                Typed::VirtualService(Box::new(typed(&raw).map_err(|e| vec![e])?))
            }
            Kind::DestinationRule => {
                Typed::DestinationRule(Box::new(typed(&raw).map_err(|e| vec![e])?))
            }
            Kind::KubeGateway => Typed::KubeGateway(Box::new(typed(&raw).map_err(|e| vec![e])?)),
            Kind::HttpRoute => Typed::HttpRoute(Box::new(typed(&raw).map_err(|e| vec![e])?)),
            Kind::GrpcRoute => Typed::GrpcRoute(Box::new(typed(&raw).map_err(|e| vec![e])?)),
            Kind::LaneGroup => Typed::LaneGroup(Box::new(typed(&raw).map_err(|e| vec![e])?)),
            Kind::Lane => Typed::Lane(Box::new(typed(&raw).map_err(|e| vec![e])?)),
            Kind::Rollout => Typed::Rollout(Box::new(typed(&raw).map_err(|e| vec![e])?)),
            Kind::LaneRelease => Typed::LaneRelease(Box::new(typed(&raw).map_err(|e| vec![e])?)),
            Kind::Namespace => Typed::Namespace(Box::new(typed(&raw).map_err(|e| vec![e])?)),
            Kind::Event => Typed::Event(Box::new(typed(&raw).map_err(|e| vec![e])?)),
            Kind::Lease => Typed::Lease(Box::new(typed(&raw).map_err(|e| vec![e])?)),
        };
        let object = Object {
            kind,
            name,
            namespace,
            raw,
            typed,
        };
        let errors = validate::validate(&object);
        if errors.is_empty() {
            Ok(object)
        } else {
            Err(errors)
        }
    }

    /// The object's key.
    pub fn key(&self) -> ObjectKey {
        ObjectKey {
            kind: self.kind,
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }

    /// `Kind/name`, as messages print it.
    pub fn display_name(&self) -> String {
        format!("{}/{}", self.kind, self.name)
    }

    /// The namespace, or `""` for cluster-scoped objects.
    pub fn namespace_or_empty(&self) -> &str {
        self.namespace.as_deref().unwrap_or("")
    }

    /// The object's labels.
    pub fn labels(&self) -> BTreeMap<String, String> {
        string_map(&self.raw, "/metadata/labels")
    }

    /// The value of one label, without copying the others.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.raw.get("metadata")?.get("labels")?.get(key)?.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_namespace_and_keeps_unknown_fields() {
        let obj = Object::from_value(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "a"},
            "spec": {"ports": [{"port": 80}], "selector": {"app": "a"}, "someFutureField": 1}
        }))
        .unwrap();
        assert_eq!(obj.namespace.as_deref(), Some("default"));
        assert_eq!(obj.raw["metadata"]["namespace"], "default");
        assert_eq!(obj.raw["spec"]["someFutureField"], 1);
    }

    #[test]
    fn type_errors_name_the_path() {
        let errs = Object::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d"},
            "spec": {"replicas": "abc", "selector": {"matchLabels": {"a": "b"}},
                     "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": []}}}
        }))
        .unwrap_err();
        assert_eq!(errs[0].path, "spec.replicas", "{errs:?}");
    }

    #[test]
    fn cluster_scoped_kinds_drop_namespace() {
        let obj = Object::from_value(json!({
            "apiVersion": "istio.alibabacloud.com/v1", "kind": "ASMSwimLane",
            "metadata": {"name": "base", "namespace": "x", "labels": {"swimlane-group": "g"}},
            "spec": {"labelSelector": {"t": "base"}}
        }))
        .unwrap();
        assert_eq!(obj.namespace, None);
        assert!(obj.raw["metadata"].get("namespace").is_none());
    }
}
