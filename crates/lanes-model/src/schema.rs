//! The CRD schemas of the Kubernetes types Lanes' own kinds embed (`IntOrString`,
//! `metav1.Condition`), written here so k8s-openapi builds without its `schemars`
//! feature: every crate waits for k8s-openapi, and that feature roughly doubles its
//! build. Fields use them with `#[schemars(with = "...")]`.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

/// The schema of `IntOrString`: an integer or a string (`3`, `"30%"`).
pub struct IntOrStringSchema;

impl JsonSchema for IntOrStringSchema {
    fn schema_name() -> Cow<'static, str> {
        "io.k8s.apimachinery.pkg.util.intstr.IntOrString".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "An integer or a string.",
            "x-kubernetes-int-or-string": true,
        })
    }
}

/// The schema of `metav1.Condition`, the standard shape of a status condition.
pub struct ConditionSchema;

impl JsonSchema for ConditionSchema {
    fn schema_name() -> Cow<'static, str> {
        "io.k8s.apimachinery.pkg.apis.meta.v1.Condition".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "One aspect of the object's state (a standard Kubernetes condition).",
            "type": "object",
            "properties": {
                "lastTransitionTime": {
                    "description": "When the status last changed.",
                    "type": "string",
                    "format": "date-time",
                },
                "message": {
                    "description": "Details, for people; may be empty.",
                    "type": "string",
                },
                "observedGeneration": {
                    "description": "The metadata.generation the condition was set from.",
                    "type": "integer",
                    "format": "int64",
                },
                "reason": {
                    "description": "Why, as one CamelCase word.",
                    "type": "string",
                },
                "status": {
                    "description": "True, False or Unknown.",
                    "type": "string",
                },
                "type": {
                    "description": "Which aspect, in CamelCase.",
                    "type": "string",
                },
            },
            "required": ["lastTransitionTime", "message", "reason", "status", "type"],
        })
    }
}
