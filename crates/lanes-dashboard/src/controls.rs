//! The releases' controls from the page — approve, pause, resume, undo of a Rollout or a
//! LaneRelease — carried out as the CLI carries them out ([`lanes_rollout::controls`]),
//! through the Kubernetes API with the dashboard's client.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use lanes_model::lane_release::{LaneRelease, LaneReleasePhase};
use lanes_model::rollout::Rollout;
use lanes_rollout::controls::{
    Control, ControlPatch, Refused, lane_release_control, past, rollout_control, stable_template,
};
use serde::Serialize;
use serde_json::json;

use crate::server::Maps;

/// What a control did, for the page.
#[derive(Debug, Serialize)]
pub struct Done {
    /// In words.
    pub message: String,
}

/// Why a control was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Not `rollout` or `lanerelease`.
    #[error("unknown kind {0:?}: use rollout or lanerelease")]
    UnknownKind(String),
    /// Not a control.
    #[error("{0}")]
    UnknownAction(String),
    /// The release is not there.
    #[error("{0} not found")]
    NotFound(String),
    /// Refused by the release's state.
    #[error(transparent)]
    Refused(#[from] Refused),
    /// It changed between the read and the write.
    #[error("{0} changed meanwhile; try again")]
    Changed(String),
    /// The API failed.
    #[error("the API failed: {0}")]
    Api(#[from] kube::Error),
}

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        let status = match &self {
            ControlError::UnknownKind(_) | ControlError::UnknownAction(_) => {
                StatusCode::BAD_REQUEST
            }
            ControlError::NotFound(_) => StatusCode::NOT_FOUND,
            ControlError::Refused(_) | ControlError::Changed(_) => StatusCode::CONFLICT,
            ControlError::Api(kube::Error::Api(s)) if s.code == 403 => StatusCode::FORBIDDEN,
            ControlError::Api(_) => StatusCode::BAD_GATEWAY,
        };
        (status, Json(json!({"error": self.to_string()}))).into_response()
    }
}

/// `POST /ui/api/releases/{kind}/{namespace}/{name}/{action}`.
pub async fn control(
    State(maps): State<Maps>,
    Path((kind, namespace, name, action)): Path<(String, String, String, String)>,
) -> Result<Json<Done>, ControlError> {
    let control: Control = action.parse().map_err(ControlError::UnknownAction)?;
    let client = maps.client;
    let message = match kind.as_str() {
        "rollout" => rollout(client, &namespace, &name, control).await?,
        "lanerelease" => lane_release(client, &namespace, &name, control).await?,
        other => return Err(ControlError::UnknownKind(other.to_string())),
    };
    Ok(Json(Done { message }))
}

/// A 404 as [`ControlError::NotFound`], a 409 as [`ControlError::Changed`].
fn api_error(what: &str) -> impl FnOnce(kube::Error) -> ControlError + '_ {
    move |e| match e {
        kube::Error::Api(s) if s.code == 404 => ControlError::NotFound(what.to_string()),
        kube::Error::Api(s) if s.code == 409 => ControlError::Changed(what.to_string()),
        e => ControlError::Api(e),
    }
}

async fn rollout(
    client: kube::Client,
    ns: &str,
    name: &str,
    control: Control,
) -> Result<String, ControlError> {
    let what = format!("rollout/{name}");
    let api: Api<Rollout> = Api::namespaced(client.clone(), ns);
    let r = api.get(name).await.map_err(api_error(&what))?;
    let releases = match Api::<LaneRelease>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
    {
        Ok(list) => list.items,
        // No LaneRelease kind: none holds it.
        Err(kube::Error::Api(s)) if s.code == 404 => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let refs: Vec<&LaneRelease> = releases.iter().collect();
    let held = lanes_rollout::lane_release::owner_of(&refs, name, r.metadata.labels.as_ref())
        .filter(|o| o.phase() != LaneReleasePhase::Invalid)
        .and_then(|o| o.metadata.name.clone());
    match rollout_control(&r, held.as_deref(), control, jiff::Timestamp::now())? {
        ControlPatch::RestoreWorkload => {
            let workload = &r.spec.workload_ref.name;
            restore(client, ns, workload).await?;
            Ok(format!(
                "{what} undone: deployment/{workload} is back on its stable template"
            ))
        }
        patch => send(&api, &what, &r.metadata, control, patch).await,
    }
}

/// Sends `patch` (a spec patch, or a status patch guarded by the resourceVersion in
/// `meta`) to object `what` through `api`; what it did, in words.
async fn send<K>(
    api: &Api<K>,
    what: &str,
    meta: &kube::api::ObjectMeta,
    control: Control,
    patch: ControlPatch,
) -> Result<String, ControlError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let name = meta.name.as_deref().unwrap_or("");
    let pp = PatchParams::default();
    match patch {
        ControlPatch::AlreadySo(said) => return Ok(said),
        ControlPatch::Spec(patch) => {
            api.patch(name, &pp, &Patch::Merge(&patch))
                .await
                .map_err(api_error(what))?;
        }
        ControlPatch::Status(status) => {
            let patch = json!({
                "metadata": {"resourceVersion": meta.resource_version},
                "status": status,
            });
            api.patch_status(name, &pp, &Patch::Merge(&patch))
                .await
                .map_err(api_error(what))?;
        }
        ControlPatch::RestoreWorkload => {
            return Err(Refused(format!("{what}: nothing to restore")).into());
        }
    }
    Ok(format!("{what} {}", past(control)))
}

/// Writes Deployment `name`'s stable template back (refused when no release is under
/// way), only if it has not changed since read.
async fn restore(client: kube::Client, ns: &str, name: &str) -> Result<(), ControlError> {
    let what = format!("deployment/{name}");
    let api: Api<Deployment> = Api::namespaced(client, ns);
    let mut d = api.get(name).await.map_err(api_error(&what))?;
    let stable = stable_template(d.metadata.annotations.as_ref())
        .and_then(|v| serde_json::from_value::<PodTemplateSpec>(v).ok())
        .ok_or_else(|| {
            Refused(format!(
                "no release in progress; {what} is on its stable template already"
            ))
        })?;
    if let Some(spec) = d.spec.as_mut() {
        spec.template = stable;
    }
    d.metadata.managed_fields = None;
    api.replace(name, &PostParams::default(), &d)
        .await
        .map_err(api_error(&what))?;
    Ok(())
}

async fn lane_release(
    client: kube::Client,
    ns: &str,
    name: &str,
    control: Control,
) -> Result<String, ControlError> {
    let what = format!("lanerelease/{name}");
    let api: Api<LaneRelease> = Api::namespaced(client, ns);
    let lr = api.get(name).await.map_err(api_error(&what))?;
    let patch = lane_release_control(&lr, control, jiff::Timestamp::now())?;
    send(&api, &what, &lr.metadata, control, patch).await
}
