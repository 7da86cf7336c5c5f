//! The revision history of `lanes up`'s Deployments, kept as a cluster keeps it: a
//! ReplicaSet per pod template (`<deployment>-<hash>`, labelled `pod-template-hash`)
//! counting that template's pods, annotated with its revision
//! (`deployment.kubernetes.io/revision`: the newest template has the highest, and a
//! template that comes back takes a new number), the Deployment annotated with its
//! current revision, and at most `spec.revisionHistoryLimit` (10) old ones without pods
//! kept. `kubectl rollout history` and `kubectl rollout undo --to-revision` read them.
//! The pods stay the Deployment's own: a ReplicaSet here is a record, not a controller.

use std::collections::BTreeMap;

use lanes_model::{Kind, Object, ObjectKey};
use lanes_store::{StoreError, Txn};
use serde_json::{Value, json};

use crate::deployments::{HASH_LABEL, PodState};

/// The annotation carrying a revision number.
pub const REVISION: &str = "deployment.kubernetes.io/revision";

/// The annotation `kubectl rollout history` shows as a revision's CHANGE-CAUSE.
pub const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";

/// Kubernetes' default `spec.revisionHistoryLimit`.
pub const DEFAULT_HISTORY_LIMIT: usize = 10;

/// What the history holds after a step: each kept template's revision, and the
/// templates whose record goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// Template hash → revision.
    pub keep: BTreeMap<String, i64>,
    /// Template hashes whose record is deleted.
    pub drop: Vec<String>,
}

/// The history after a step: `known` (hash → revision) recorded so far, the current
/// template `current`, the templates pods still run, and how many old templates without
/// pods to keep.
pub fn history(
    known: &BTreeMap<String, i64>,
    current: &str,
    running: &[&str],
    limit: usize,
) -> History {
    let newest = known.values().copied().max().unwrap_or(0);
    let mut keep = known.clone();
    // The current template is the newest revision: a new one takes the next number, as
    // does an old one that comes back (a rollback).
    if known.get(current) != Some(&newest) || newest == 0 {
        keep.insert(current.to_string(), newest + 1);
    }
    let mut idle: Vec<(i64, String)> = keep
        .iter()
        .filter(|(h, _)| h.as_str() != current && !running.contains(&h.as_str()))
        .map(|(h, r)| (*r, h.clone()))
        .collect();
    idle.sort();
    let excess = idle.len().saturating_sub(limit);
    let drop: Vec<String> = idle.into_iter().take(excess).map(|(_, h)| h).collect();
    for h in &drop {
        keep.remove(h);
    }
    History { keep, drop }
}

/// Sets `v` at the path of keys `path`, making the maps on the way; a value on the way
/// that is not a map is left as it is (nothing is set).
fn set_at(v: &mut Value, path: &[&str], value: Value) {
    let Some((last, on_the_way)) = path.split_last() else {
        return;
    };
    let mut at = v;
    for key in on_the_way {
        let Some(map) = at.as_object_mut() else {
            return;
        };
        at = map.entry(*key).or_insert_with(|| json!({}));
        if at.is_null() {
            *at = json!({});
        }
    }
    if let Some(map) = at.as_object_mut() {
        map.insert((*last).to_string(), value);
    }
}

fn str_at<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or("")
}

/// The ReplicaSets recorded for the Deployment `deploy` (by its controller reference),
/// by template hash.
fn recorded(txn: &Txn<'_, '_>, ns: &str, uid: &str) -> Result<BTreeMap<String, Value>, StoreError> {
    Ok(txn
        .list(Kind::ReplicaSet, Some(ns))?
        .into_iter()
        .filter(|rs| lanes_model::object::controlled_by(rs, uid))
        .map(|rs| {
            (
                str_at(&rs, &format!("/metadata/labels/{HASH_LABEL}")).to_string(),
                rs,
            )
        })
        .collect())
}

/// Records the Deployment's revisions after one step of its controller (`pods`: its pods
/// after the step; `replicas`: what it wants of the current template).
pub fn record(
    txn: &mut Txn<'_, '_>,
    deploy: &Value,
    hash: &str,
    pods: &[PodState],
    replicas: i32,
) -> Result<(), StoreError> {
    let (ns, name, uid) = (
        str_at(deploy, "/metadata/namespace"),
        str_at(deploy, "/metadata/name"),
        str_at(deploy, "/metadata/uid"),
    );
    if uid.is_empty() {
        return Ok(());
    }
    let existing = recorded(txn, ns, uid)?;
    let known: BTreeMap<String, i64> = existing
        .iter()
        .map(|(h, rs)| {
            let rev = str_at(
                rs,
                &format!("/metadata/annotations/{}", REVISION.replace('/', "~1")),
            );
            (h.clone(), rev.parse().unwrap_or(0))
        })
        .collect();
    let running: Vec<&str> = pods.iter().map(|p| p.hash.as_str()).collect();
    let limit = deploy
        .pointer("/spec/revisionHistoryLimit")
        .and_then(Value::as_u64)
        .map_or(DEFAULT_HISTORY_LIMIT, |l| l as usize);
    let h = history(&known, hash, &running, limit);
    for gone in &h.drop {
        let key = ObjectKey {
            kind: Kind::ReplicaSet,
            namespace: Some(ns.to_string()),
            name: format!("{name}-{gone}"),
        };
        txn.delete(&key, None)?;
    }
    for (rs_hash, revision) in &h.keep {
        let template = match existing.get(rs_hash) {
            Some(rs) => rs.pointer("/spec/template").cloned(),
            None if rs_hash == hash => deploy.pointer("/spec/template").cloned(),
            None => None,
        };
        let Some(mut template) = template else {
            continue;
        };
        set_at(
            &mut template,
            &["metadata", "labels", HASH_LABEL],
            json!(rs_hash),
        );
        let of_hash: Vec<&PodState> = pods.iter().filter(|p| &p.hash == rs_hash).collect();
        let want = if rs_hash == hash {
            replicas.max(0) as usize
        } else {
            of_hash.len()
        };
        let ready = of_hash.iter().filter(|p| p.ready).count();
        let mut selector = deploy
            .pointer("/spec/selector")
            .cloned()
            .unwrap_or_else(|| json!({}));
        set_at(&mut selector, &["matchLabels", HASH_LABEL], json!(rs_hash));
        // The change cause, as Kubernetes keeps it: the Deployment's, copied to its
        // current revision; an old revision keeps its own.
        let cause_path = format!("/metadata/annotations/{}", CHANGE_CAUSE.replace('/', "~1"));
        let cause = match existing.get(rs_hash) {
            Some(rs) if rs_hash != hash => rs.pointer(&cause_path).cloned(),
            _ => deploy.pointer(&cause_path).cloned(),
        };
        let mut annotations = json!({REVISION: revision.to_string()});
        if let Some(cause) = cause {
            set_at(&mut annotations, &[CHANGE_CAUSE], cause);
        }
        let rs = json!({
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": format!("{name}-{rs_hash}"),
                "namespace": ns,
                "labels": template.pointer("/metadata/labels").cloned().unwrap_or_default(),
                "annotations": annotations,
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                    "name": name, "uid": uid, "controller": true, "blockOwnerDeletion": true}],
            },
            "spec": {"replicas": want, "selector": selector, "template": template},
        });
        let status = json!({
            "replicas": of_hash.len(),
            "fullyLabeledReplicas": of_hash.len(),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "observedGeneration": 1,
        });
        put(txn, rs, status, existing.get(rs_hash))?;
    }
    annotate(txn, deploy, h.keep.get(hash).copied().unwrap_or(1))
}

/// Writes one record: created, or replaced when its spec or status changed.
fn put(
    txn: &mut Txn<'_, '_>,
    rs: Value,
    status: Value,
    current: Option<&Value>,
) -> Result<(), StoreError> {
    let object = Object::from_value(rs)
        .map_err(|errs| StoreError::Invalid(format!("ReplicaSet record: {}", errs[0].message)))?;
    let key = object.key();
    let same = |p: &str| current.and_then(|c| c.pointer(p)) == object.raw.pointer(p);
    match current {
        None => {
            txn.create(&object)?;
        }
        Some(_) if same("/spec") && same("/metadata/annotations") && same("/metadata/labels") => {}
        Some(_) => {
            txn.replace(&object, None)?;
        }
    }
    if current.and_then(|c| c.get("status")) != Some(&status) {
        txn.replace_status(&key, status, None)?;
    }
    Ok(())
}

/// Sets the Deployment's `deployment.kubernetes.io/revision` to its current revision.
fn annotate(txn: &mut Txn<'_, '_>, deploy: &Value, revision: i64) -> Result<(), StoreError> {
    let Some(key) = lanes_store::key_of_value(deploy) else {
        return Ok(());
    };
    let Some(mut current) = txn.get(&key)? else {
        return Ok(());
    };
    let want = revision.to_string();
    let path = format!("/metadata/annotations/{}", REVISION.replace('/', "~1"));
    if current.pointer(&path).and_then(Value::as_str) == Some(want.as_str()) {
        return Ok(());
    }
    set_at(
        &mut current,
        &["metadata", "annotations", REVISION],
        json!(want),
    );
    match Object::from_value(current) {
        Ok(object) => txn.replace(&object, None).map(|_| ()),
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
        pairs.iter().map(|(h, r)| (h.to_string(), *r)).collect()
    }

    #[test]
    fn a_new_template_takes_the_next_revision_and_the_current_one_keeps_its_own() {
        assert_eq!(
            history(&known(&[]), "a", &["a"], 10).keep,
            known(&[("a", 1)])
        );
        let h = history(&known(&[("a", 1)]), "b", &["a", "b"], 10);
        assert_eq!(h.keep, known(&[("a", 1), ("b", 2)]));
        let h = history(&known(&[("a", 1), ("b", 2)]), "b", &["b"], 10);
        assert_eq!(h.keep, known(&[("a", 1), ("b", 2)]));
        assert!(h.drop.is_empty());
    }

    #[test]
    fn set_at_makes_the_maps_on_the_way_and_never_panics() {
        let mut v = json!({"metadata": null});
        set_at(&mut v, &["metadata", "labels", "h"], json!("x"));
        assert_eq!(v, json!({"metadata": {"labels": {"h": "x"}}}));
        let mut odd = json!({"metadata": "text"});
        set_at(&mut odd, &["metadata", "labels", "h"], json!("x"));
        assert_eq!(odd, json!({"metadata": "text"}));
    }

    #[test]
    fn a_template_that_comes_back_takes_a_new_number() {
        let h = history(&known(&[("a", 1), ("b", 2)]), "a", &["b"], 10);
        assert_eq!(h.keep, known(&[("a", 3), ("b", 2)]));
    }

    #[test]
    fn old_templates_without_pods_beyond_the_limit_go_oldest_first() {
        let k = known(&[("a", 1), ("b", 2), ("c", 3), ("d", 4)]);
        let h = history(&k, "d", &["d", "a"], 1);
        // a still runs pods: kept whatever its age; of b and c only the newer stays.
        assert_eq!(h.drop, vec!["b".to_string()]);
        assert_eq!(h.keep, known(&[("a", 1), ("c", 3), ("d", 4)]));
    }
}
