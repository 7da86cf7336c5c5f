//! Field selectors (`fieldSelector=metadata.name=x,status.phase!=Running`): the fields
//! the API server indexes for each kind, and nothing else (others are refused, as
//! upstream refuses them).

use lanes_model::Kind;
use serde_json::Value;

/// One `field=value` or `field!=value` requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Requirement {
    field: String,
    value: String,
    equal: bool,
}

/// A parsed field selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(Vec<Requirement>);

/// The fields a kind can be selected by, beyond `metadata.name` and
/// `metadata.namespace`.
fn kind_fields(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Pod => &[
            "status.phase",
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        Kind::Event => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        Kind::Namespace => &["status.phase"],
        _ => &[],
    }
}

impl FieldSelector {
    /// Parses `s` for `kind`; `Err` names the requirement or field at fault.
    pub fn parse(s: &str, kind: Kind) -> Result<FieldSelector, String> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, value, equal) = if let Some((f, v)) = part.split_once("!=") {
                (f, v, false)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, v, true)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, v, true)
            } else {
                return Err(format!(
                    "invalid field selector: {part:?} is not field=value"
                ));
            };
            let field = field.trim();
            if !matches!(field, "metadata.name" | "metadata.namespace")
                && !kind_fields(kind).contains(&field)
            {
                return Err(format!(
                    "field label not supported: {field} (a {} selects by metadata.name, metadata.namespace{})",
                    kind.name(),
                    kind_fields(kind)
                        .iter()
                        .map(|f| format!(", {f}"))
                        .collect::<String>()
                ));
            }
            out.push(Requirement {
                field: field.to_string(),
                value: value.trim().to_string(),
                equal,
            });
        }
        Ok(FieldSelector(out))
    }

    /// Whether `object` (stored form) meets every requirement.
    pub fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|r| {
            let actual = field_value(object, &r.field);
            (actual == r.value) == r.equal
        })
    }

    /// The name the selector pins (`metadata.name=x`), if any.
    pub fn name(&self) -> Option<&str> {
        self.0
            .iter()
            .find(|r| r.equal && r.field == "metadata.name")
            .map(|r| r.value.as_str())
    }
}

/// The text of a selectable field (empty when absent, as upstream indexes it).
fn field_value(object: &Value, field: &str) -> String {
    if field == "source" {
        return text(object.pointer("/source/component"));
    }
    if field == "metadata.namespace" {
        return text(object.pointer("/metadata/namespace"));
    }
    let ptr = format!("/{}", field.replace('.', "/"));
    text(object.pointer(&ptr))
}

fn text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selects_by_indexed_fields_only() {
        let pod = json!({"metadata": {"name": "p", "namespace": "default"},
                         "status": {"phase": "Running"}});
        let sel = FieldSelector::parse("metadata.name=p,status.phase!=Pending", Kind::Pod).unwrap();
        assert!(sel.matches(&pod));
        assert_eq!(sel.name(), Some("p"));
        assert!(
            !FieldSelector::parse("status.phase==Pending", Kind::Pod)
                .unwrap()
                .matches(&pod)
        );
        let err = FieldSelector::parse("spec.replicas=1", Kind::Deployment).unwrap_err();
        assert!(
            err.contains("field label not supported: spec.replicas"),
            "{err}"
        );
        let ev = json!({"involvedObject": {"kind": "Rollout", "name": "r"}});
        assert!(
            FieldSelector::parse(
                "involvedObject.kind=Rollout,involvedObject.name=r",
                Kind::Event
            )
            .unwrap()
            .matches(&ev)
        );
    }
}
