//! Garbage collection on delete: the objects whose `ownerReferences` name a deleted
//! object go with it (`Background` and `Foreground`, at once and in the same
//! transaction), or lose that reference (`Orphan`). Deleting a namespace deletes what
//! is in it. An object with finalizers is marked (`deletionTimestamp`) instead, and goes
//! when the last of them is removed.

use lanes_model::{Kind, Object, ObjectKey};
use lanes_store::{StoreError, Txn};
use serde_json::Value;

/// `propagationPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Propagation {
    /// Dependents are deleted (the default).
    #[default]
    Background,
    /// Dependents are deleted first.
    Foreground,
    /// Dependents are kept, their reference to the owner dropped.
    Orphan,
}

impl Propagation {
    /// From the query parameter or `DeleteOptions`.
    pub fn parse(s: Option<&str>) -> Result<Propagation, String> {
        match s {
            None | Some("") | Some("Background") => Ok(Propagation::Background),
            Some("Foreground") => Ok(Propagation::Foreground),
            Some("Orphan") => Ok(Propagation::Orphan),
            Some(other) => Err(format!(
                "propagationPolicy: unsupported value {other:?}: must be Orphan, Background or Foreground"
            )),
        }
    }
}

fn uid_of(v: &Value) -> Option<&str> {
    v.pointer("/metadata/uid").and_then(Value::as_str)
}

fn owned_by(v: &Value, uid: &str) -> bool {
    v.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid))
}

fn key_of(v: &Value) -> Option<ObjectKey> {
    lanes_store::key_of_value(v)
}

/// Deletes `key` and, by `policy`, what it owns (and, for a namespace, what is in it).
/// An object that finalizers hold is only marked as being deleted (its dependents wait
/// for it to go): it goes with them once a write removes its last finalizer
/// ([`finish`]). Returns the deleted or marked object.
pub fn delete(
    txn: &mut Txn<'_, '_>,
    key: &ObjectKey,
    expect: Option<u64>,
    policy: Propagation,
) -> Result<Value, StoreError> {
    let held = txn
        .get(key)?
        .is_some_and(|v| !lanes_store::finalizers(&v).is_empty());
    if held {
        return txn.mark_deleting(key, expect);
    }
    let gone = txn.delete(key, expect)?;
    if key.kind == Kind::Namespace {
        for kind in Kind::ALL.into_iter().filter(|k| k.namespaced()) {
            for o in txn.list(kind, Some(&key.name))? {
                if let Some(k) = key_of(&o) {
                    delete(txn, &k, None, Propagation::Background)?;
                }
            }
        }
    }
    let Some(uid) = uid_of(&gone).map(str::to_string) else {
        return Ok(gone);
    };
    let mut dependents = Vec::new();
    for kind in Kind::ALL {
        let scope = match (&key.namespace, kind.namespaced()) {
            (Some(ns), true) => Some(ns.as_str()),
            (Some(_), false) => continue,
            (None, _) => None,
        };
        dependents.extend(
            txn.list(kind, scope)?
                .into_iter()
                .filter(|o| owned_by(o, &uid)),
        );
    }
    for dependent in dependents {
        let Some(k) = key_of(&dependent) else {
            continue;
        };
        match policy {
            Propagation::Orphan => orphan(txn, dependent, &uid)?,
            _ => match delete(txn, &k, None, policy) {
                Ok(_) | Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(e),
            },
        }
    }
    Ok(gone)
}

/// After a write of `stored`: an object being deleted that no finalizer holds any
/// more goes now, with its dependents. Returns what the write leaves.
pub fn finish(txn: &mut Txn<'_, '_>, key: &ObjectKey, stored: Value) -> Result<Value, StoreError> {
    if lanes_store::is_finalised(&stored) {
        delete(txn, key, None, Propagation::Background)
    } else {
        Ok(stored)
    }
}

/// Drops the reference to `uid` from `dependent`.
fn orphan(txn: &mut Txn<'_, '_>, mut dependent: Value, uid: &str) -> Result<(), StoreError> {
    if let Some(refs) = dependent
        .pointer_mut("/metadata/ownerReferences")
        .and_then(Value::as_array_mut)
    {
        refs.retain(|r| r["uid"] != uid);
        if refs.is_empty()
            && let Some(meta) = dependent.get_mut("metadata").and_then(Value::as_object_mut)
        {
            meta.remove("ownerReferences");
        }
    }
    let object = Object::from_value(dependent)
        .map_err(|e| StoreError::Invalid(format!("orphaning a dependent: {}", e[0])))?;
    txn.replace(&object, None)?;
    Ok(())
}
