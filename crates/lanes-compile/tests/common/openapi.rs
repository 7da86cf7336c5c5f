//! The structural-schema checker of `lanes-model`, its problems as `path: message`.
#![allow(dead_code, unused_imports)]

use serde_json::Value;

pub use lanes_model::openapi::{Cel, defaulted};

/// Every problem of `value` against `schema` (CEL rules reached count as unevaluated).
pub fn check(schema: &Value, value: &Value) -> Vec<String> {
    strings(lanes_model::openapi::check(schema, value))
}

/// [`check`], with `cel` evaluating the CEL rules.
pub fn check_with(schema: &Value, value: &Value, cel: Cel<'_>) -> Vec<String> {
    strings(lanes_model::openapi::check_with(schema, value, cel))
}

fn strings(errs: Vec<lanes_model::FieldError>) -> Vec<String> {
    errs.iter().map(ToString::to_string).collect()
}
