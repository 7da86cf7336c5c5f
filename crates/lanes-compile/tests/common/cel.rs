//! Kubernetes' CEL validation rules (`x-kubernetes-validations`), evaluated with the
//! `cel` crate as an API server evaluates them: `self` is the value at the rule's
//! place, with property names that are CEL keywords escaped (`namespace` is
//! `__namespace__`).
#![allow(dead_code)]

use serde_json::Value;

/// The words Kubernetes escapes as `__word__` in CEL property names.
const RESERVED: [&str; 21] = [
    "true",
    "false",
    "null",
    "in",
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
];

fn escaped(v: &Value) -> Value {
    match v {
        Value::Object(obj) => Value::Object(
            obj.iter()
                .map(|(k, v)| {
                    let k = if RESERVED.contains(&k.as_str()) {
                        format!("__{k}__")
                    } else {
                        k.clone()
                    };
                    (k, escaped(v))
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(escaped).collect()),
        other => other.clone(),
    }
}

/// Whether `rule` holds for `value`; `None` when it does not compile or evaluate to a
/// boolean.
pub fn holds(rule: &str, value: &Value) -> Option<bool> {
    let program = cel::Program::compile(rule).ok()?;
    let mut ctx = cel::Context::default();
    ctx.add_variable("self", cel::to_value(escaped(value)).ok()?)
        .ok()?;
    match program.execute(&ctx).ok()? {
        cel::Value::Bool(b) => Some(b),
        _ => None,
    }
}
