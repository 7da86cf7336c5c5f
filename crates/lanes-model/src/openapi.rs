//! A checker for Kubernetes structural OpenAPI v3 schemas, as an API server applies
//! them to a custom resource: defaults, types, required fields, enums, patterns and
//! bounds, `oneOf`/`anyOf`/`allOf`/`not`, pruning (a field the schema does not know is
//! dropped by the server, which this checker reports) and the CEL rules
//! (`x-kubernetes-validations`) the value reaches, evaluated with the `cel` crate
//! ([`cel_holds`]). A rule that cannot be evaluated is reported, never skipped.

use serde_json::Value;

use crate::FieldError;

/// Every problem of `value` against `schema`, each at its field's path.
pub fn check(schema: &Value, value: &Value) -> Vec<FieldError> {
    check_with(schema, value, &|_, _| None)
}

/// Evaluates one CEL rule (its text) on a value: `Some(holds)`, or `None` for a rule it
/// does not know.
pub type Cel<'a> = &'a dyn Fn(&str, &Value) -> Option<bool>;

/// [`check`], with `cel` evaluating the CEL rules the value reaches; a rule it does not
/// know is reported, so no rule passes unevaluated.
pub fn check_with(schema: &Value, value: &Value, cel: Cel<'_>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    Walk { cel }.walk(schema, value, "", &mut errs, true);
    errs
}

struct Walk<'a> {
    cel: Cel<'a>,
}

impl Walk<'_> {
    fn walk(
        &self,
        schema: &Value,
        value: &Value,
        path: &str,
        errs: &mut Vec<FieldError>,
        prune: bool,
    ) {
        for v in schema
            .get("x-kubernetes-validations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let rule = v.get("rule").and_then(Value::as_str).unwrap_or_default();
            match (self.cel)(rule, value) {
                Some(true) => {}
                Some(false) => errs.push(err(
                    path,
                    format!(
                        "breaks the rule {rule:?} ({})",
                        v.get("message").and_then(Value::as_str).unwrap_or_default()
                    ),
                )),
                None => errs.push(err(
                    path,
                    format!("carries a CEL rule this checker cannot evaluate: {rule:?}"),
                )),
            }
        }
        if let (Some(pattern), Some(s)) = (
            schema.get("pattern").and_then(Value::as_str),
            value.as_str(),
        ) {
            match regex::Regex::new(pattern) {
                Ok(re) if re.is_match(s) => {}
                Ok(_) => errs.push(err(path, format!("{s:?} does not match {pattern:?}"))),
                Err(e) => errs.push(err(
                    path,
                    format!("pattern {pattern:?} not understood: {e}"),
                )),
            }
        }
        if let (Some(min), Some(s)) = (
            schema.get("minLength").and_then(Value::as_u64),
            value.as_str(),
        ) && (s.chars().count() as u64) < min
        {
            errs.push(err(path, format!("shorter than {min}")));
        }
        if value.is_null() {
            if schema.get("nullable") != Some(&Value::Bool(true)) {
                errs.push(err(path, "null is not allowed".to_string()));
            }
            return;
        }
        let int_or_string = schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
        match schema.get("type").and_then(Value::as_str) {
            Some("object") => match value.as_object() {
                None => errs.push(err(path, "expected an object".to_string())),
                Some(obj) => {
                    let props = schema.get("properties").and_then(Value::as_object);
                    let additional = schema.get("additionalProperties");
                    let preserve = schema.get("x-kubernetes-preserve-unknown-fields")
                        == Some(&Value::Bool(true));
                    for (k, v) in obj {
                        // The server itself handles these at the root.
                        if path.is_empty()
                            && ["apiVersion", "kind", "metadata"].contains(&k.as_str())
                        {
                            continue;
                        }
                        let here = format!("{path}.{k}");
                        if let Some(s) = props.and_then(|p| p.get(k)) {
                            self.walk(s, v, &here, errs, prune);
                        } else if let Some(s) = additional.filter(|a| a.is_object()) {
                            self.walk(s, v, &here, errs, prune);
                        } else if additional == Some(&Value::Bool(true)) || preserve {
                        } else if prune {
                            errs.push(err(
                                &here,
                                "unknown field, pruned by the API server".to_string(),
                            ));
                        }
                    }
                    if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64)
                        && obj.len() as u64 > max
                    {
                        errs.push(err(path, format!("more than {max} properties")));
                    }
                }
            },
            Some("array") => match value.as_array() {
                None => errs.push(err(path, "expected an array".to_string())),
                Some(items) => {
                    if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
                        && items.len() as u64 > max
                    {
                        errs.push(err(path, format!("more than {max} items")));
                    }
                    if let Some(s) = schema.get("items") {
                        for (i, v) in items.iter().enumerate() {
                            self.walk(s, v, &format!("{path}[{i}]"), errs, prune);
                        }
                    }
                }
            },
            Some("string") => {
                let ok = value.is_string() || (int_or_string && value.is_i64());
                if !ok {
                    errs.push(err(path, "expected a string".to_string()));
                }
                if let (Some(s), Some(max)) = (
                    value.as_str(),
                    schema.get("maxLength").and_then(Value::as_u64),
                ) && s.chars().count() as u64 > max
                {
                    errs.push(err(path, format!("longer than {max}")));
                }
            }
            Some(t @ ("integer" | "number" | "boolean")) => {
                let ok = match t {
                    "integer" => {
                        value.is_i64() || value.is_u64() || (int_or_string && value.is_string())
                    }
                    "number" => value.is_number(),
                    _ => value.is_boolean(),
                };
                if !ok {
                    errs.push(err(path, format!("expected {t}")));
                }
            }
            Some(other) => errs.push(err(path, format!("schema type {other} not understood"))),
            // Untyped schemas: alternatives of oneOf/anyOf/not (value checks, which hold
            // of the fields they name), or int-or-string.
            None => {
                let props = schema.get("properties").and_then(Value::as_object);
                if let (Some(props), Some(obj)) = (props, value.as_object()) {
                    for (k, s) in props {
                        if let Some(v) = obj.get(k) {
                            self.walk(s, v, &format!("{path}.{k}"), errs, false);
                        }
                    }
                }
            }
        }
        if let Some(obj) = value.as_object() {
            for r in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(r) = r.as_str()
                    && !obj.contains_key(r)
                {
                    errs.push(err(path, format!("required field {r} is missing")));
                }
            }
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
            && !allowed.contains(value)
        {
            errs.push(err(
                path,
                format!("{value} is not one of {}", Value::Array(allowed.clone())),
            ));
        }
        if let Some(n) = value.as_f64() {
            if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
                && n < min
            {
                errs.push(err(path, format!("{n} is below the minimum {min}")));
            }
            if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
                && n > max
            {
                errs.push(err(path, format!("{n} is above the maximum {max}")));
            }
        }
        let valid = |s: &Value| {
            let mut e = Vec::new();
            self.walk(s, value, path, &mut e, false);
            e.is_empty()
        };
        if let Some(branches) = schema.get("oneOf").and_then(Value::as_array) {
            let n = branches.iter().filter(|b| valid(b)).count();
            if n != 1 {
                errs.push(err(
                    path,
                    format!("matches {n} of the oneOf alternatives, not exactly one"),
                ));
            }
        }
        if let Some(branches) = schema.get("anyOf").and_then(Value::as_array)
            && !branches.iter().any(valid)
        {
            errs.push(err(
                path,
                "matches none of the anyOf alternatives".to_string(),
            ));
        }
        for b in schema
            .get("allOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            self.walk(b, value, path, errs, false);
        }
        if let Some(not) = schema.get("not")
            && valid(not)
        {
            errs.push(err(path, "matches a schema it must not match".to_string()));
        }
    }
}

/// `value` with the defaults `schema` gives to the fields it leaves out, as an API
/// server fills them in before it validates.
pub fn defaulted(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(obj) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, s) in props {
                    if let Some(d) = s.get("default")
                        && !obj.contains_key(k)
                    {
                        obj.insert(k.clone(), d.clone());
                    }
                    if let Some(v) = obj.get_mut(k) {
                        defaulted(s, v);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for v in items {
                    defaulted(s, v);
                }
            }
        }
        _ => {}
    }
}

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
pub fn cel_holds(rule: &str, value: &Value) -> Option<bool> {
    let program = cel::Program::compile(rule).ok()?;
    let mut ctx = cel::Context::default();
    ctx.add_variable("self", cel::to_value(escaped(value)).ok()?)
        .ok()?;
    match program.execute(&ctx).ok()? {
        cel::Value::Bool(b) => Some(b),
        _ => None,
    }
}

/// A problem at `path` (as the walk builds it, `.spec.x[0]`).
fn err(path: &str, message: String) -> FieldError {
    FieldError::new(path.strip_prefix('.').unwrap_or(path), message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_one_of_alternative_checks_the_fields_it_names() {
        // As the Gateway API's status addresses say it: an IPAddress, or any other type.
        let schema = serde_json::json!({
        "type": "object",
        "properties": {"type": {"type": "string"}, "value": {"type": "string"}},
        "oneOf": [
            {"properties": {"type": {"enum": ["IPAddress"]}}},
            {"properties": {"type": {"not": {"enum": ["IPAddress"]}}}}
        ]});
        for kind in ["IPAddress", "Hostname"] {
            let value = serde_json::json!({"type": kind, "value": "x"});
            assert_eq!(check(&schema, &value), Vec::new(), "{kind}");
        }
        let nested = serde_json::json!({
            "type": "object",
            "properties": {"spec": {"type": "object", "properties": {"n": {"type": "integer"}}}},
            "anyOf": [{"properties": {"spec": {"properties": {"n": {"minimum": 5}}}}}]});
        assert!(check(&nested, &serde_json::json!({"spec": {"n": 7}})).is_empty());
        let errs = check(&nested, &serde_json::json!({"spec": {"n": 2}}));
        assert_eq!(errs.len(), 1, "{errs:?}");
    }
}
