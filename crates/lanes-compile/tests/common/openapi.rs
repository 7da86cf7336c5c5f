//! A checker for Kubernetes structural OpenAPI v3 schemas, as an API server applies
//! them to a custom resource: types, required fields, enums and bounds, `oneOf`/
//! `anyOf`/`allOf`/`not`, and pruning (a field the schema does not know is dropped by
//! the server, which this checker reports). CEL rules (`x-kubernetes-validations`)
//! are not evaluated: a value that reaches one is reported, so a test cannot pass by
//! skipping it.
#![allow(dead_code)]

use serde_json::Value;

/// Every problem of `value` against `schema`, as `path: message`.
pub fn check(schema: &Value, value: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    walk(schema, value, "", &mut errs, true);
    errs
}

fn walk(schema: &Value, value: &Value, path: &str, errs: &mut Vec<String>, prune: bool) {
    if schema.get("x-kubernetes-validations").is_some() {
        errs.push(format!(
            "{path}: carries a CEL rule this checker cannot evaluate"
        ));
    }
    if value.is_null() {
        if schema.get("nullable") != Some(&Value::Bool(true)) {
            errs.push(format!("{path}: null is not allowed"));
        }
        return;
    }
    let int_or_string = schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => match value.as_object() {
            None => errs.push(format!("{path}: expected an object")),
            Some(obj) => {
                let props = schema.get("properties").and_then(Value::as_object);
                let additional = schema.get("additionalProperties");
                let preserve =
                    schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
                for (k, v) in obj {
                    // The server itself handles these at the root.
                    if path.is_empty() && ["apiVersion", "kind", "metadata"].contains(&k.as_str()) {
                        continue;
                    }
                    let here = format!("{path}.{k}");
                    if let Some(s) = props.and_then(|p| p.get(k)) {
                        walk(s, v, &here, errs, prune);
                    } else if let Some(s) = additional.filter(|a| a.is_object()) {
                        walk(s, v, &here, errs, prune);
                    } else if additional == Some(&Value::Bool(true)) || preserve {
                    } else if prune {
                        errs.push(format!("{here}: unknown field, pruned by the API server"));
                    }
                }
                if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64)
                    && obj.len() as u64 > max
                {
                    errs.push(format!("{path}: more than {max} properties"));
                }
            }
        },
        Some("array") => match value.as_array() {
            None => errs.push(format!("{path}: expected an array")),
            Some(items) => {
                if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
                    && items.len() as u64 > max
                {
                    errs.push(format!("{path}: more than {max} items"));
                }
                if let Some(s) = schema.get("items") {
                    for (i, v) in items.iter().enumerate() {
                        walk(s, v, &format!("{path}[{i}]"), errs, prune);
                    }
                }
            }
        },
        Some("string") => {
            let ok = value.is_string() || (int_or_string && value.is_i64());
            if !ok {
                errs.push(format!("{path}: expected a string"));
            }
            if let (Some(s), Some(max)) = (
                value.as_str(),
                schema.get("maxLength").and_then(Value::as_u64),
            ) && s.chars().count() as u64 > max
            {
                errs.push(format!("{path}: longer than {max}"));
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
                errs.push(format!("{path}: expected {t}"));
            }
        }
        Some(other) => errs.push(format!("{path}: schema type {other} not understood")),
        // Untyped schemas: alternatives of oneOf/anyOf/not, or int-or-string.
        None => {}
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
                errs.push(format!("{path}: required field {r} is missing"));
            }
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        errs.push(format!(
            "{path}: {value} is not one of {}",
            Value::Array(allowed.clone())
        ));
    }
    if let Some(n) = value.as_f64() {
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
            && n < min
        {
            errs.push(format!("{path}: {n} is below the minimum {min}"));
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
            && n > max
        {
            errs.push(format!("{path}: {n} is above the maximum {max}"));
        }
    }
    let valid = |s: &Value| {
        let mut e = Vec::new();
        walk(s, value, path, &mut e, false);
        e.is_empty()
    };
    if let Some(branches) = schema.get("oneOf").and_then(Value::as_array) {
        let n = branches.iter().filter(|b| valid(b)).count();
        if n != 1 {
            errs.push(format!(
                "{path}: matches {n} of the oneOf alternatives, not exactly one"
            ));
        }
    }
    if let Some(branches) = schema.get("anyOf").and_then(Value::as_array)
        && !branches.iter().any(valid)
    {
        errs.push(format!("{path}: matches none of the anyOf alternatives"));
    }
    for b in schema
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        walk(b, value, path, errs, false);
    }
    if let Some(not) = schema.get("not")
        && valid(not)
    {
        errs.push(format!("{path}: matches a schema it must not match"));
    }
}
