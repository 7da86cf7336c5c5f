//! Kubernetes Events (`events.k8s.io/v1`) for Rollout transitions, so `kubectl describe
//! rollout` and `kubectl get events` show a release's course.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};

use crate::rollouts::Transition;
use crate::{Error, kube_err};

pub use lanes_rollout::events::REPORTING_CONTROLLER;
use lanes_rollout::events::{NOTE_BYTES, truncated};

/// Records one transition of Rollout `namespace/name` as an Event from `instance`.
pub async fn record(
    client: &Client,
    namespace: &str,
    name: &str,
    t: &Transition,
    instance: &str,
    now: jiff::Timestamp,
) -> Result<(), Error> {
    let regarding = ObjectReference {
        api_version: Some("rollouts.kruise.io/v1beta1".into()),
        kind: Some("Rollout".into()),
        name: Some(name.to_string()),
        namespace: Some(namespace.to_string()),
        uid: Some(t.uid.clone()),
        ..Default::default()
    };
    emit(
        client, namespace, regarding, &t.reason, &t.note, t.warning, instance, now,
    )
    .await
}

/// Records an Event about `regarding` in `namespace` (cluster-scoped objects' Events go
/// in `default`, as Kubernetes puts them).
#[allow(clippy::too_many_arguments)]
pub async fn emit(
    client: &Client,
    namespace: &str,
    regarding: ObjectReference,
    reason: &str,
    note: &str,
    warning: bool,
    instance: &str,
    now: jiff::Timestamp,
) -> Result<(), Error> {
    let name = regarding.name.clone().unwrap_or_default();
    let event = Event {
        metadata: ObjectMeta {
            // Unique per occurrence: one Event each, never merged into a series.
            name: Some(format!("{name}.{:x}", now.as_nanosecond())),
            namespace: Some(namespace.to_string()),
            ..Default::default()
        },
        event_time: Some(MicroTime(now)),
        action: Some("Reconcile".into()),
        reason: Some(reason.to_string()),
        note: Some(truncated(note, NOTE_BYTES).to_string()),
        type_: Some(if warning { "Warning" } else { "Normal" }.into()),
        reporting_controller: Some(REPORTING_CONTROLLER.into()),
        reporting_instance: Some(instance.to_string()),
        regarding: Some(regarding),
        ..Default::default()
    };
    Api::<Event>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &event)
        .await
        .map_err(kube_err(format!("create Event about {name}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_note_is_cut_to_the_api_limit_at_a_character_boundary() {
        let note = "é".repeat(600); // 1200 bytes
        let cut = truncated(&note, NOTE_BYTES);
        assert_eq!(cut.len(), 1024);
        assert!(cut.chars().all(|c| c == 'é'));
        assert_eq!(truncated("short", NOTE_BYTES), "short");
        assert_eq!(truncated("aé", 2), "a");
    }
}
