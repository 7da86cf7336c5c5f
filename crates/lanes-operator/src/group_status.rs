//! The lane groups' status: the objects generated for each and a `Ready` condition that
//! says whether the group compiles — and, when it does not, which object, field and
//! reason stop it (its generated objects are then left as they stand). A group that
//! becomes not ready gets a Warning Event saying the same. Written only when it changes.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use lanes_compile::Generated;
use lanes_model::lane::{ASMSwimLaneGroup, GROUP_LABEL, LaneGroupStatus};

use crate::{Error, FIELD_MANAGER, kube_err};

/// The status a group should have: `invalid` lists what stops it (empty: it compiles).
pub fn desired(
    current: Option<&LaneGroupStatus>,
    generated: Vec<String>,
    invalid: &[String],
    now: jiff::Timestamp,
) -> LaneGroupStatus {
    let (status, reason, message) = if invalid.is_empty() {
        (
            "True",
            "Compiled",
            format!("{} objects generated", generated.len()),
        )
    } else {
        ("False", "Invalid", invalid.join("; "))
    };
    let previous = current.and_then(|c| c.conditions.iter().find(|c| c.type_ == "Ready"));
    let since = match previous {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => Time(now),
    };
    LaneGroupStatus {
        // A group that does not compile keeps what it had generated.
        generated: if invalid.is_empty() {
            generated
        } else {
            current.map(|c| c.generated.clone()).unwrap_or_default()
        },
        message: Some(message.clone()),
        conditions: vec![Condition {
            type_: "Ready".into(),
            status: status.into(),
            reason: reason.into(),
            message,
            last_transition_time: since,
            observed_generation: None,
        }],
    }
}

/// Whether a move from `old` to `new` is worth a Warning Event: the group became not
/// ready, or not ready for another reason.
fn newly_invalid(old: Option<&LaneGroupStatus>, new: &LaneGroupStatus) -> bool {
    let ready = |s: &LaneGroupStatus| {
        s.conditions
            .first()
            .map(|c| (c.status.clone(), c.message.clone()))
    };
    let new_ready = ready(new);
    new_ready.as_ref().is_some_and(|(s, _)| s == "False") && old.and_then(ready) != new_ready
}

/// Writes lane group `group`'s status from what was compiled for it (`objects`) and
/// what stops it (`invalid`), when it differs; records an Event when the group newly
/// becomes not ready.
pub async fn report(
    client: &Client,
    group: &ASMSwimLaneGroup,
    objects: &[std::sync::Arc<Generated>],
    invalid: &[String],
) -> Result<(), Error> {
    let api: Api<ASMSwimLaneGroup> = Api::all(client.clone());
    let name = group.name_any();
    let now = jiff::Timestamp::now();
    let ours = || {
        objects
            .iter()
            .filter(|o| o.meta().labels.get(GROUP_LABEL) == Some(&name))
    };
    // What the status lists already, when it lists these objects (most reconciles).
    let listed = group
        .status
        .as_ref()
        .map(|s| &s.generated)
        .filter(|listed| {
            listed.len() == ours().count()
                && listed
                    .iter()
                    .zip(ours())
                    .all(|(l, o)| l.split_once('/') == Some((o.kind(), o.meta().name.as_str())))
        });
    let generated: Vec<String> = match listed {
        Some(listed) => listed.clone(),
        None => ours()
            .map(|o| format!("{}/{}", o.kind(), o.meta().name))
            .collect(),
    };
    let want = desired(group.status.as_ref(), generated, invalid, now);
    if group.status.as_ref() == Some(&want) {
        return Ok(());
    }
    api.patch_status(
        &name,
        &PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        },
        &Patch::Merge(serde_json::json!({ "status": want })),
    )
    .await
    .map_err(kube_err(format!("update ASMSwimLaneGroup {name} status")))?;
    if newly_invalid(group.status.as_ref(), &want) {
        let regarding = ObjectReference {
            api_version: Some("istio.alibabacloud.com/v1".into()),
            kind: Some("ASMSwimLaneGroup".into()),
            name: Some(name.clone()),
            uid: group.metadata.uid.clone(),
            ..Default::default()
        };
        let message = want.message.clone().unwrap_or_default();
        crate::events::emit(
            client, "default", regarding, "Invalid", &message, true, "lanes", now,
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn the_ready_condition_says_what_stops_a_group_and_keeps_its_transition_time() {
        let ok = desired(
            None,
            vec!["VirtualService/a".into()],
            &[],
            t("2026-12-01T10:00:00Z"),
        );
        assert_eq!(ok.conditions[0].status, "True");
        assert_eq!(ok.conditions[0].message, "1 objects generated");
        // Later and unchanged: the same status, to the timestamp (nothing to write).
        let again = desired(
            Some(&ok),
            vec!["VirtualService/a".into()],
            &[],
            t("2026-12-01T11:00:00Z"),
        );
        assert_eq!(again, ok);
        let why = vec!["ASMSwimLane canary: spec.labelSelector: must select pods".to_string()];
        let bad = desired(Some(&ok), vec![], &why, t("2026-12-01T12:00:00Z"));
        assert_eq!(bad.conditions[0].status, "False");
        assert_eq!(bad.conditions[0].reason, "Invalid");
        assert!(bad.conditions[0].message.contains("spec.labelSelector"));
        assert_eq!(bad.generated, ["VirtualService/a"], "what it had is kept");
        assert!(newly_invalid(Some(&ok), &bad));
        assert!(!newly_invalid(Some(&bad), &bad));
        assert!(!newly_invalid(None, &ok));
    }
}
