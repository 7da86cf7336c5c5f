//! The Lanes resource model: the kinds Lanes accepts, their typed views, multi-document
//! YAML decoding with located errors, per-object validation and cross-object lint.

pub mod decode;
pub mod events;
pub mod gateway_api;
pub mod gateway_listeners;
pub mod hash;
pub mod image;
pub mod istio;
pub mod kind;
pub mod lane;
pub mod lane_release;
pub mod lint;
pub mod mesh;
pub mod object;
pub mod openapi;
pub mod partition;
pub mod podlog;
pub mod rollout;
pub mod rollout_rules;
pub mod schema;
pub mod synthetic;
pub mod validate;

pub use decode::{Diagnostic, Loaded, Severity, Source, decode_bytes, decode_str, load_paths};
pub use kind::Kind;
pub use object::{FieldError, Object, ObjectKey, Typed};

/// The CustomResourceDefinitions of the kinds Lanes defines (lane groups, lanes,
/// Rollouts), generated from the Rust types, as a multi-document YAML stream.
pub fn crds() -> Vec<serde_json::Value> {
    use kube::CustomResourceExt;
    [
        serde_json::to_value(lane::ASMSwimLaneGroup::crd()),
        serde_json::to_value(lane::ASMSwimLane::crd()),
        serde_json::to_value(rollout::Rollout::crd()),
        serde_json::to_value(lane_release::LaneRelease::crd()),
    ]
    .into_iter()
    .filter_map(Result::ok)
    .collect()
}
