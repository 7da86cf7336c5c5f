//! The two forms of an Event: core `v1` (what Lanes stores) and `events.k8s.io/v1`
//! (what newer clients write and read). The API server keeps one object and converts
//! field by field; so does Lanes.

use serde_json::{Map, Value};

/// `(events.k8s.io/v1 field, core v1 field)` for every field whose name differs.
const RENAMED: [(&str, &str); 7] = [
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

fn rename(obj: &mut Map<String, Value>, pairs: impl Iterator<Item = (&'static str, &'static str)>) {
    for (from, to) in pairs {
        if let Some(v) = obj.remove(from) {
            obj.insert(to.to_string(), v);
        }
    }
}

/// Rewrites an `events.k8s.io/v1` Event into the core `v1` form, in place.
pub fn to_core(event: &mut Value) {
    if let Some(obj) = event.as_object_mut() {
        rename(obj, RENAMED.into_iter());
        obj.insert("apiVersion".into(), Value::String("v1".into()));
    }
}

/// The `events.k8s.io/v1` form of a stored (core `v1`) Event.
pub fn to_events_v1(event: &Value) -> Value {
    let mut out = event.clone();
    if let Some(obj) = out.as_object_mut() {
        rename(obj, RENAMED.into_iter().map(|(a, b)| (b, a)));
        obj.insert(
            "apiVersion".into(),
            Value::String(crate::kind::EVENTS_V1.into()),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_between_forms() {
        let v1 = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "e", "namespace": "default"},
            "regarding": {"kind": "Rollout", "name": "r"}, "note": "step 1 ready",
            "reason": "Progressing", "type": "Normal", "reportingController": "lanes",
            "eventTime": "2026-01-01T00:00:00.000000Z"});
        let mut core = v1.clone();
        to_core(&mut core);
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(core["involvedObject"]["name"], "r");
        assert_eq!(core["message"], "step 1 ready");
        assert_eq!(core["reportingComponent"], "lanes");
        assert!(core.get("note").is_none());
        assert_eq!(to_events_v1(&core), v1);
    }
}
