//! The `scale` subresource of Deployments: an `autoscaling/v1` `Scale`, as `kubectl
//! scale` (and a HorizontalPodAutoscaler) reads and writes it. A write sets the
//! Deployment's `spec.replicas` through the object's own patch path, so admission, the
//! resourceVersion precondition and the controllers see an ordinary update.

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use lanes_model::FieldError;
use serde_json::{Value, json};

use super::error::{ApiError, ApiResult, Reason};
use super::objects::{self, Answer};
use super::params::Params;
use super::path::Target;
use crate::ApiState;
use crate::merge::{PatchType, apply_patch};

/// The `Scale` of a stored Deployment.
pub fn of(object: &Value) -> Value {
    let meta = |k: &str| {
        object
            .pointer(&format!("/metadata/{k}"))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let selector = object
        .pointer("/spec/selector")
        .map(lanes_model::object::match_labels_query)
        .unwrap_or_default();
    json!({
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {
            "name": meta("name"),
            "namespace": meta("namespace"),
            "uid": meta("uid"),
            "resourceVersion": meta("resourceVersion"),
            "creationTimestamp": meta("creationTimestamp"),
        },
        "spec": {"replicas": object.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1)},
        "status": {
            "replicas": object.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0),
            "selector": selector,
        },
    })
}

/// `GET .../deployments/{name}/scale`.
pub async fn get(state: ApiState, target: Target, name: String) -> ApiResult<Response> {
    let object = objects::stored(&state, &target, &name).await?;
    Ok(axum::Json(of(&object)).into_response())
}

/// `PUT` (a whole `Scale`) or `PATCH` (a patch of one) of `.../deployments/{name}/scale`.
pub async fn write(
    state: ApiState,
    target: Target,
    name: String,
    headers: HeaderMap,
    params: Params,
    body: Bytes,
    put: bool,
) -> ApiResult<Answer> {
    let r = target.resource;
    let current = of(&objects::stored(&state, &target, &name).await?);
    let sent = objects::parse_body(&headers, &body)?;
    let wanted = if put {
        sent
    } else {
        let media = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        let kind = PatchType::from_content_type(&media).ok_or_else(|| {
            ApiError::new(
                Reason::UnsupportedMediaType,
                format!(
                    "the body of the request was in an unknown format ({media:?}) - accepted media types of the scale subresource: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json"
                ),
            )
        })?;
        apply_patch(&current, &sent, kind).map_err(ApiError::bad_request)?
    };
    let replicas = wanted
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .filter(|n| (0..=i64::from(i32::MAX)).contains(n))
        .ok_or_else(|| {
            let e = FieldError::new(
                "spec.replicas",
                format!(
                    "must be a whole number from 0, got {}",
                    wanted.pointer("/spec/replicas").unwrap_or(&Value::Null)
                ),
            );
            ApiError::from_fields(&r, &name, &[e])
        })?;
    let mut change = json!({"spec": {"replicas": replicas}});
    if let Some(rv) = wanted
        .pointer("/metadata/resourceVersion")
        .filter(|rv| rv.as_str().is_some_and(|s| !s.is_empty()))
    {
        change["metadata"] = json!({"resourceVersion": rv});
    }
    let mut merge = headers.clone();
    merge.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/merge-patch+json"),
    );
    let object = Target {
        sub: None,
        ..target
    };
    let answer = objects::patch(
        state,
        object,
        name,
        merge,
        params,
        Bytes::from(change.to_string()),
        false,
    )
    .await?;
    Ok(answer.map_body(|b| of(&b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deployment_shows_its_scale() {
        let d = json!({
            "metadata": {"name": "d", "namespace": "ns", "resourceVersion": "7"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "d", "tier": "web"}}},
            "status": {"replicas": 2},
        });
        let s = of(&d);
        assert_eq!(s["kind"], "Scale");
        assert_eq!(s["apiVersion"], "autoscaling/v1");
        assert_eq!(s["spec"]["replicas"], 3);
        assert_eq!(s["status"]["replicas"], 2);
        assert_eq!(s["status"]["selector"], "app=d,tier=web");
        assert_eq!(s["metadata"]["resourceVersion"], "7");
        // A Deployment without replicas has one.
        assert_eq!(
            of(&json!({"metadata": {"name": "e"}}))["spec"]["replicas"],
            1
        );
    }
}
