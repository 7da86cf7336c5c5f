//! The little of Kubernetes' protobuf encoding that kubectl sends where it has no
//! JSON form: its typed commands (`kubectl create namespace`) write the object as
//! protobuf. Lanes reads the envelope (`k8s\0` + `runtime.Unknown`) and, of the object,
//! the kinds such commands create — Namespaces — into their JSON form; anything else
//! is refused with 415, naming what Lanes reads.

use serde_json::{Map, Value, json};

/// The protobuf envelope's magic prefix.
const MAGIC: &[u8] = b"k8s\0";

/// One field of a message: its number and value.
enum Field<'a> {
    /// A varint (read and not used by the fields Lanes reads).
    Varint,
    Bytes(&'a [u8]),
}

fn varint(buf: &mut &[u8]) -> Option<u64> {
    let mut out = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = buf.split_first()?;
        *buf = rest;
        out |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(out);
        }
    }
    None
}

/// The fields of a message, in order; `None` when it is not well formed.
fn fields(mut buf: &[u8]) -> Option<Vec<(u64, Field<'_>)>> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let tag = varint(&mut buf)?;
        let (number, wire) = (tag >> 3, tag & 7);
        let field = match wire {
            0 => {
                varint(&mut buf)?;
                Field::Varint
            }
            2 => {
                let len = usize::try_from(varint(&mut buf)?).ok()?;
                if len > buf.len() {
                    return None;
                }
                let (v, rest) = buf.split_at(len);
                buf = rest;
                Field::Bytes(v)
            }
            1 => {
                buf = buf.get(8..)?;
                continue;
            }
            5 => {
                buf = buf.get(4..)?;
                continue;
            }
            _ => return None,
        };
        out.push((number, field));
    }
    Some(out)
}

fn text(b: &[u8]) -> Option<String> {
    String::from_utf8(b.to_vec()).ok()
}

/// A `map<string,string>` entry.
fn entry(b: &[u8]) -> Option<(String, String)> {
    let mut k = String::new();
    let mut v = String::new();
    for (n, f) in fields(b)? {
        if let Field::Bytes(x) = f {
            match n {
                1 => k = text(x)?,
                2 => v = text(x)?,
                _ => {}
            }
        }
    }
    Some((k, v))
}

/// The `ObjectMeta` fields a create names: name, generateName, namespace, labels and
/// annotations.
fn object_meta(b: &[u8]) -> Option<Value> {
    let mut meta = Map::new();
    let mut labels = Map::new();
    let mut annotations = Map::new();
    for (n, f) in fields(b)? {
        let Field::Bytes(x) = f else { continue };
        match n {
            1 => {
                meta.insert("name".into(), text(x)?.into());
            }
            2 => {
                meta.insert("generateName".into(), text(x)?.into());
            }
            3 => {
                meta.insert("namespace".into(), text(x)?.into());
            }
            11 => {
                let (k, v) = entry(x)?;
                labels.insert(k, v.into());
            }
            12 => {
                let (k, v) = entry(x)?;
                annotations.insert(k, v.into());
            }
            _ => {}
        }
    }
    if !labels.is_empty() {
        meta.insert("labels".into(), Value::Object(labels));
    }
    if !annotations.is_empty() {
        meta.insert("annotations".into(), Value::Object(annotations));
    }
    Some(Value::Object(meta))
}

/// Reads a protobuf body into the JSON form of its object; `Err` says why not.
pub fn decode(body: &[u8]) -> Result<Value, String> {
    let envelope = body
        .strip_prefix(MAGIC)
        .ok_or("the body has no Kubernetes protobuf envelope")?;
    let mut api_version = String::new();
    let mut kind = String::new();
    let mut raw: &[u8] = &[];
    for (n, f) in fields(envelope).ok_or("the protobuf envelope is not well formed")? {
        match (n, f) {
            (1, Field::Bytes(tm)) => {
                for (m, g) in fields(tm).ok_or("typeMeta is not well formed")? {
                    if let Field::Bytes(x) = g {
                        match m {
                            1 => api_version = text(x).unwrap_or_default(),
                            2 => kind = text(x).unwrap_or_default(),
                            _ => {}
                        }
                    }
                }
            }
            (2, Field::Bytes(r)) => raw = r,
            _ => {}
        }
    }
    if (api_version.as_str(), kind.as_str()) != ("v1", "Namespace") {
        return Err(format!(
            "Lanes reads protobuf bodies of v1 Namespaces only, not {api_version} {kind}: send application/json"
        ));
    }
    let mut meta = json!({});
    for (n, f) in fields(raw).ok_or("the Namespace is not well formed")? {
        if let (1, Field::Bytes(m)) = (n, f) {
            meta = object_meta(m).ok_or("metadata is not well formed")?;
        }
    }
    Ok(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": meta}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ld(n: u8, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![(n << 3) | 2, bytes.len() as u8];
        out.extend_from_slice(bytes);
        out
    }

    #[test]
    fn reads_a_namespace_as_kubectl_sends_it() {
        let meta = [
            ld(1, b"demo"),
            ld(11, &[ld(1, b"team"), ld(2, b"a")].concat()),
        ]
        .concat();
        let ns = [ld(1, &meta), ld(2, b""), ld(3, b"")].concat();
        let tm = [ld(1, b"v1"), ld(2, b"Namespace")].concat();
        let body = [MAGIC.to_vec(), ld(1, &tm), ld(2, &ns)].concat();
        let v = decode(&body).unwrap();
        assert_eq!(v["metadata"]["name"], "demo");
        assert_eq!(v["metadata"]["labels"]["team"], "a");
        let tm = [ld(1, b"v1"), ld(2, b"Pod")].concat();
        let body = [MAGIC.to_vec(), ld(1, &tm), ld(2, b"")].concat();
        assert!(decode(&body).unwrap_err().contains("not v1 Pod"));
        assert!(decode(b"k8s\0\xff\xff").is_err());
        assert!(decode(b"{}").is_err());
    }
}
