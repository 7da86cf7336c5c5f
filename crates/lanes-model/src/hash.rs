//! Hashes of pod templates: what tells one revision of a workload from another.

use std::collections::BTreeMap;

use serde_json::Value;

/// Whether a field says nothing: null, or an empty list or map (or one that holds only
/// such fields). Kubernetes' clients write these where a field is unset
/// (`creationTimestamp: null`, `resources: {}`), so a template read back and written
/// again (`kubectl rollout undo`) is the same template.
fn says_nothing(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.values().all(says_nothing),
        _ => false,
    }
}

/// A stable hash of a pod template: the same template always hashes the same, whatever
/// the order of its keys and whether unset fields are written out empty.
pub fn template_hash(template: &Value) -> String {
    fn canonical(v: &Value, out: &mut String) {
        match v {
            Value::Object(m) => {
                let sorted: BTreeMap<&String, &Value> =
                    m.iter().filter(|(_, v)| !says_nothing(v)).collect();
                out.push('{');
                for (k, v) in sorted {
                    out.push_str(k);
                    out.push(':');
                    canonical(v, out);
                    out.push(',');
                }
                out.push('}');
            }
            Value::Array(a) => {
                out.push('[');
                for v in a {
                    canonical(v, out);
                    out.push(',');
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut s = String::new();
    canonical(template, &mut s);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // Ten characters from an alphabet without vowels, as Kubernetes' hashes look.
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..10)
        .map(|i| ALPHABET[((h >> (i * 6)) % ALPHABET.len() as u64) as usize] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_hashes_ignore_key_order() {
        let a: Value =
            serde_json::from_str(r#"{"metadata":{"labels":{"x":"1","y":"2"}},"spec":{"c":[1]}}"#)
                .unwrap();
        let b: Value =
            serde_json::from_str(r#"{"spec":{"c":[1]},"metadata":{"labels":{"y":"2","x":"1"}}}"#)
                .unwrap();
        assert_eq!(template_hash(&a), template_hash(&b));
        assert_eq!(template_hash(&a).len(), 10);
        let c: Value = serde_json::from_str(r#"{"spec":{"c":[2]}}"#).unwrap();
        assert_ne!(template_hash(&a), template_hash(&c));
    }

    #[test]
    fn unset_fields_written_out_empty_hash_as_absent() {
        let a: Value = serde_json::from_str(
            r#"{"metadata":{"labels":{"x":"1"}},"spec":{"containers":[{"name":"a"}]}}"#,
        )
        .unwrap();
        let b: Value = serde_json::from_str(
            r#"{"metadata":{"creationTimestamp":null,"labels":{"x":"1"}},"spec":{"containers":[{"name":"a","resources":{},"env":[]}]}}"#,
        )
        .unwrap();
        assert_eq!(template_hash(&a), template_hash(&b));
        let c: Value = serde_json::from_str(
            r#"{"metadata":{"labels":{"x":"1"}},"spec":{"containers":[{"name":"a","resources":{"limits":{"cpu":"1"}}}]}}"#,
        )
        .unwrap();
        assert_ne!(template_hash(&a), template_hash(&c));
    }
}
