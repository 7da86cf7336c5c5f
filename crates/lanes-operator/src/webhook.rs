//! The admission webhooks, as Kruise Rollout has them: Rollouts validated (below), and
//! the mutating admission webhook for Deployments: on a
//! cluster the API server sends every Deployment update here (an `AdmissionReview`,
//! over TLS), and the answer is the JSON Patch of what
//! [`lanes_rollout::admission::admit_deployment`] — the function `lanes up` calls
//! in-process — does to it: a new template under an enabled Rollout pauses the
//! Deployment and marks the release. Every replica serves it, leader or not.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::routing::post;
use futures_util::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use lanes_model::rollout::Rollout;
use serde_json::Value;

/// The path the `MutatingWebhookConfiguration` names.
pub const PATH: &str = "/mutate-apps-v1-deployment";

/// The Rollouts the webhook decides by: a watch cache, or a fixed list (tests).
#[derive(Clone)]
pub enum Rollouts {
    /// A watch cache of every Rollout.
    Cache(reflector::Store<Rollout>),
    /// A given list.
    Fixed(Arc<Vec<Rollout>>),
}

impl Rollouts {
    /// A watch cache of the cluster's Rollouts, kept by a task that runs until the
    /// process ends.
    pub fn watch(client: kube::Client) -> Rollouts {
        let (reader, writer) = reflector::store();
        let events = watcher(Api::<Rollout>::all(client), watcher::Config::default())
            .default_backoff()
            .reflect(writer)
            .touched_objects();
        tokio::spawn(async move {
            let mut events = std::pin::pin!(events);
            while let Some(e) = events.next().await {
                if let Err(e) = e {
                    tracing::debug!(error = %e, "webhook: Rollout watch");
                }
            }
        });
        Rollouts::Cache(reader)
    }

    fn all(&self) -> Vec<Rollout> {
        match self {
            Rollouts::Cache(s) => s.state().iter().map(|r| (**r).clone()).collect(),
            Rollouts::Fixed(v) => v.as_ref().clone(),
        }
    }
}

/// The patch the admission makes to an update of Deployment `new` (stored as `old`),
/// with `rollouts` deciding whether one manages it; empty when it changes nothing.
pub fn patch_for(old: &Value, new: &Value, rollouts: &[Rollout]) -> json_patch::Patch {
    let ns = new
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default");
    let name = new
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let managing = lanes_rollout::admission::managing(rollouts, ns, name);
    let mut admitted = new.clone();
    lanes_rollout::admission::admit_deployment(Some(old), &mut admitted, managing);
    json_patch::diff(new, &admitted)
}

/// Whether the request is one the admission acts on: an update of a Deployment with
/// both the stored and the new object.
fn is_deployment_update(req: &AdmissionRequest<DynamicObject>) -> bool {
    req.kind.group == "apps" && req.kind.kind == "Deployment" && req.operation == Operation::Update
}

/// Decodes a review and answers it with `answer`; a review that does not decode gets an
/// invalid response.
fn answered(
    body: AdmissionReview<DynamicObject>,
    answer: impl FnOnce(&AdmissionRequest<DynamicObject>) -> AdmissionResponse,
) -> AdmissionReview<DynamicObject> {
    let req: Result<AdmissionRequest<DynamicObject>, _> = body.try_into();
    match req {
        Ok(req) => answer(&req).into_review(),
        Err(e) => AdmissionResponse::invalid(e.to_string()).into_review(),
    }
}

/// Answers one review: allowed always (the admission never refuses), with the patch
/// when there is one.
pub fn review(
    body: AdmissionReview<DynamicObject>,
    rollouts: &[Rollout],
) -> AdmissionReview<DynamicObject> {
    answered(body, |req| {
        let answer = AdmissionResponse::from(req);
        let objects = (req.old_object.as_ref(), req.object.as_ref());
        let (true, (Some(old), Some(new))) = (is_deployment_update(req), objects) else {
            return answer;
        };
        let (Ok(old), Ok(new)) = (serde_json::to_value(old), serde_json::to_value(new)) else {
            return answer;
        };
        let patch = patch_for(&old, &new, rollouts);
        if patch.0.is_empty() {
            return answer;
        }
        match answer.with_patch(patch) {
            Ok(a) => a,
            Err(e) => AdmissionResponse::from(req).deny(format!("lanes admission: {e}")),
        }
    })
}

/// The path the `ValidatingWebhookConfiguration` names for Rollouts.
pub const ROLLOUT_PATH: &str = "/validate-rollouts-kruise-io-rollout";

/// Kruise's Rollout webhook, as `lanes up`'s API runs it: a Rollout is refused, naming
/// the field, when Lanes does not run it or Kruise's rules forbid it (its steps, one
/// Rollout per workload from `rollouts`, the workload and step count of a release in
/// flight). Anything but a Rollout's create or update is allowed.
pub fn validate_rollout(
    body: AdmissionReview<DynamicObject>,
    rollouts: &[Rollout],
) -> AdmissionReview<DynamicObject> {
    answered(body, |req| {
        let answer = AdmissionResponse::from(req);
        let is_write = matches!(req.operation, Operation::Create | Operation::Update);
        let (true, Some(new)) = (is_write && req.kind.kind == "Rollout", req.object.as_ref())
        else {
            return answer;
        };
        let errors = rollout_errors(new, req.old_object.as_ref(), rollouts);
        if errors.is_empty() {
            answer
        } else {
            answer.deny(errors.join("; "))
        }
    })
}

/// What refuses Rollout `new` (replacing `old`), given the Rollouts that exist.
fn rollout_errors(
    new: &DynamicObject,
    old: Option<&DynamicObject>,
    rollouts: &[Rollout],
) -> Vec<String> {
    match serde_json::to_value(new).map(lanes_model::Object::from_value) {
        Err(e) => vec![format!("the Rollout does not read: {e}")],
        Ok(Err(errs)) => errs.iter().map(ToString::to_string).collect(),
        Ok(Ok(object)) => {
            let lanes_model::Typed::Rollout(r) = &object.typed else {
                return Vec::new();
            };
            let old: Option<Rollout> = old
                .and_then(|o| serde_json::to_value(o).ok())
                .and_then(|v| serde_json::from_value(v).ok());
            let others: Vec<Rollout> = rollouts
                .iter()
                .filter(|o| o.metadata.namespace == object.namespace)
                .cloned()
                .collect();
            let mut errs: Vec<String> =
                lanes_rollout::admission::check_rollout(old.as_ref(), r, &others)
                    .iter()
                    .map(|e| format!("{}: {}", e.path, e.message))
                    .collect();
            let mut cluster = Vec::new();
            lanes_model::rollout_rules::check_cluster(&mut cluster, &r.spec);
            errs.extend(cluster.iter().map(|e| format!("{}: {}", e.path, e.message)));
            errs
        }
    }
}

async fn validate(
    State(rollouts): State<Rollouts>,
    Json(body): Json<AdmissionReview<DynamicObject>>,
) -> Json<AdmissionReview<DynamicObject>> {
    Json(validate_rollout(body, &rollouts.all()))
}

async fn mutate(
    State(rollouts): State<Rollouts>,
    Json(body): Json<AdmissionReview<DynamicObject>>,
) -> Json<AdmissionReview<DynamicObject>> {
    Json(review(body, &rollouts.all()))
}

/// The webhook's routes (serve them over TLS: the API server calls only HTTPS).
pub fn router(rollouts: Rollouts) -> axum::Router {
    axum::Router::new()
        .route(PATH, post(mutate))
        .route(ROLLOUT_PATH, post(validate))
        .with_state(rollouts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rollouts() -> Vec<Rollout> {
        vec![
            serde_json::from_value(json!({
                "apiVersion": "rollouts.kruise.io/v1beta1", "kind": "Rollout",
                "metadata": {"name": "r", "namespace": "default"},
                "spec": {"workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d"},
                         "strategy": {"canary": {"steps": [{"replicas": 1}]}}}
            }))
            .unwrap(),
        ]
    }

    fn deployment(name: &str, image: &str) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": name, "namespace": "default"},
               "spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}}})
    }

    #[test]
    fn the_patch_turns_the_request_into_what_the_admission_makes_of_it() {
        let (old, new) = (deployment("d", "a:1"), deployment("d", "a:2"));
        let patch = patch_for(&old, &new, &rollouts());
        let mut out = new.clone();
        json_patch::patch(&mut out, &patch).unwrap();
        let mut expected = new.clone();
        lanes_rollout::admission::admit_deployment(Some(&old), &mut expected, Some("r"));
        assert_eq!(out, expected);
        assert_eq!(out["spec"]["paused"], true);
        // Unmanaged, or the template kept: nothing to patch.
        let other = patch_for(
            &deployment("e", "a:1"),
            &deployment("e", "a:2"),
            &rollouts(),
        );
        assert!(other.0.is_empty());
        assert!(patch_for(&old, &old, &rollouts()).0.is_empty());
    }

    fn rollout_review(op: &str, object: Value, old: Option<Value>) -> Value {
        let mut request = json!({
            "uid": "u2", "operation": op,
            "kind": {"group": "rollouts.kruise.io", "version": "v1beta1", "kind": "Rollout"},
            "resource": {"group": "rollouts.kruise.io", "version": "v1beta1", "resource": "rollouts"},
            "userInfo": {}, "object": object,
        });
        if let Some(old) = old {
            request["oldObject"] = old;
        }
        let body: AdmissionReview<DynamicObject> = serde_json::from_value(
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}),
        )
        .unwrap();
        serde_json::to_value(validate_rollout(body, &rollouts())).unwrap()["response"].clone()
    }

    fn a_rollout(name: &str, workload: &str, strategy: Value) -> Value {
        json!({"apiVersion": "rollouts.kruise.io/v1beta1", "kind": "Rollout",
               "metadata": {"name": name, "namespace": "default"},
               "spec": {"workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": workload},
                        "strategy": strategy}})
    }

    #[test]
    fn the_rollout_webhook_refuses_what_the_api_refuses() {
        let canary =
            json!({"canary": {"enableExtraWorkloadForCanary": true, "steps": [{"replicas": 1}]}});
        let ok = rollout_review("CREATE", a_rollout("s", "e", canary.clone()), None);
        assert_eq!(ok["allowed"], true, "{ok}");
        let partition = json!({"canary": {"steps": [{"replicas": 1}]}});
        let refused = rollout_review("CREATE", a_rollout("s", "e", partition), None);
        assert_eq!(refused["allowed"], false);
        assert!(
            refused["status"]["message"].as_str().unwrap().contains(
                "spec.strategy.canary.enableExtraWorkloadForCanary: a partition-style release"
            ),
            "{refused}"
        );
        let blue = json!({"blueGreen": {"steps": [{"replicas": 1}]}});
        let refused = rollout_review("CREATE", a_rollout("s", "e", blue), None);
        assert_eq!(refused["allowed"], false);
        assert!(
            refused["status"]["message"]
                .as_str()
                .unwrap()
                .contains("spec.strategy.blueGreen: Lanes does not run blue-green releases"),
            "{refused}"
        );
        // Rollout "r" already releases Deployment "d".
        let taken = rollout_review("CREATE", a_rollout("s", "d", canary.clone()), None);
        assert_eq!(taken["allowed"], false);
        assert!(
            taken["status"]["message"]
                .as_str()
                .unwrap()
                .contains("spec.workloadRef: Rollout \"r\" already releases Deployment \"d\""),
            "{taken}"
        );
        // While Progressing, the step count stays.
        let mut old = a_rollout("s", "e", canary.clone());
        old["status"] = json!({"phase": "Progressing"});
        let two = json!({"canary": {"enableExtraWorkloadForCanary": true, "steps": [{"replicas": 1}, {"replicas": 2}]}});
        let changed = rollout_review("UPDATE", a_rollout("s", "e", two), Some(old));
        assert_eq!(changed["allowed"], false);
        assert!(
            changed["status"]["message"]
                .as_str()
                .unwrap()
                .contains("the number of steps (1) is immutable"),
            "{changed}"
        );
    }

    #[test]
    fn a_review_of_anything_but_a_deployment_update_is_allowed_untouched() {
        let body: AdmissionReview<DynamicObject> = serde_json::from_value(json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": "u1", "operation": "CREATE",
                "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
                "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
                "userInfo": {}, "object": deployment("d", "a:2"),
            }
        }))
        .unwrap();
        let answer = serde_json::to_value(review(body, &rollouts())).unwrap();
        assert_eq!(answer["response"]["allowed"], true);
        assert_eq!(answer["response"]["uid"], "u1");
        assert!(answer["response"].get("patch").is_none());
    }
}
