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
    check_with(schema, value, &|_, _| None)
}

/// Evaluates one CEL rule (its text) on a value: `Some(holds)`, or `None` for a rule it
/// does not know.
pub type Cel<'a> = &'a dyn Fn(&str, &Value) -> Option<bool>;

/// [`check`], with `cel` evaluating the CEL rules the value reaches; a rule it does not
/// know is reported, so no rule passes unevaluated.
pub fn check_with(schema: &Value, value: &Value, cel: Cel<'_>) -> Vec<String> {
    let mut errs = Vec::new();
    Walk { cel }.walk(schema, value, "", &mut errs, true);
    errs
}

struct Walk<'a> {
    cel: Cel<'a>,
}

impl Walk<'_> {
    fn walk(&self, schema: &Value, value: &Value, path: &str, errs: &mut Vec<String>, prune: bool) {
        for v in schema
            .get("x-kubernetes-validations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let rule = v.get("rule").and_then(Value::as_str).unwrap_or_default();
            match (self.cel)(rule, value) {
                Some(true) => {}
                Some(false) => errs.push(format!(
                    "{path}: breaks the rule {rule:?} ({})",
                    v.get("message").and_then(Value::as_str).unwrap_or_default()
                )),
                None => errs.push(format!(
                    "{path}: carries a CEL rule this checker cannot evaluate: {rule:?}"
                )),
            }
        }
        if let (Some(pattern), Some(s)) = (
            schema.get("pattern").and_then(Value::as_str),
            value.as_str(),
        ) {
            match regex::Regex::new(pattern) {
                Ok(re) if re.is_match(s) => {}
                Ok(_) => errs.push(format!("{path}: {s:?} does not match {pattern:?}")),
                Err(e) => errs.push(format!("{path}: pattern {pattern:?} not understood: {e}")),
            }
        }
        if let (Some(min), Some(s)) = (
            schema.get("minLength").and_then(Value::as_u64),
            value.as_str(),
        ) && (s.chars().count() as u64) < min
        {
            errs.push(format!("{path}: shorter than {min}"));
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
                            self.walk(s, v, &format!("{path}[{i}]"), errs, prune);
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
            self.walk(s, value, path, &mut e, false);
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
            self.walk(b, value, path, errs, false);
        }
        if let Some(not) = schema.get("not")
            && valid(not)
        {
            errs.push(format!("{path}: matches a schema it must not match"));
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
