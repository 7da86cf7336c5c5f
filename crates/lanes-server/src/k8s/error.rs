//! Errors as the Kubernetes API server gives them: a `metav1.Status` with the code,
//! the reason, a message in the API server's words and, where a field is at fault,
//! its causes.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use lanes_model::FieldError;
use lanes_store::StoreError;
use serde_json::{Value, json};

use super::catalog::Resource;

/// Why a request failed, as `Status.reason` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// 400.
    BadRequest,
    /// 401.
    Unauthorized,
    /// 404.
    NotFound,
    /// 405.
    MethodNotAllowed,
    /// 406.
    NotAcceptable,
    /// 409, the object exists.
    AlreadyExists,
    /// 409, a stale resourceVersion or a field manager conflict.
    Conflict,
    /// 410.
    Expired,
    /// 413.
    RequestEntityTooLarge,
    /// 415.
    UnsupportedMediaType,
    /// 422.
    Invalid,
    /// 500.
    InternalError,
    /// 503.
    ServiceUnavailable,
}

impl Reason {
    /// The HTTP status and the reason's name.
    pub fn parts(self) -> (StatusCode, &'static str) {
        match self {
            Reason::BadRequest => (StatusCode::BAD_REQUEST, "BadRequest"),
            Reason::Unauthorized => (StatusCode::UNAUTHORIZED, "Unauthorized"),
            Reason::NotFound => (StatusCode::NOT_FOUND, "NotFound"),
            Reason::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed"),
            Reason::NotAcceptable => (StatusCode::NOT_ACCEPTABLE, "NotAcceptable"),
            Reason::AlreadyExists => (StatusCode::CONFLICT, "AlreadyExists"),
            Reason::Conflict => (StatusCode::CONFLICT, "Conflict"),
            Reason::Expired => (StatusCode::GONE, "Expired"),
            Reason::RequestEntityTooLarge => {
                (StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLarge")
            }
            Reason::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaType")
            }
            Reason::Invalid => (StatusCode::UNPROCESSABLE_ENTITY, "Invalid"),
            Reason::InternalError => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
            Reason::ServiceUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable"),
        }
    }
}

/// One field at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// `FieldValueInvalid`, `FieldValueRequired`, `FieldManagerConflict`...
    pub reason: &'static str,
    /// What is wrong.
    pub message: String,
    /// The field's path (`spec.replicas`).
    pub field: String,
}

/// A failed request.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// Why.
    pub reason: Reason,
    /// The message.
    pub message: String,
    /// The object it is about: name, group, kind (the resource's plural, as upstream).
    pub details: Option<Box<(String, String, String)>>,
    /// The fields at fault.
    pub causes: Vec<Cause>,
}

/// What handlers return.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// An error with `reason` and `message`.
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        ApiError {
            reason,
            message: message.into(),
            details: None,
            causes: Vec::new(),
        }
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(Reason::BadRequest, message)
    }

    /// 500.
    pub fn internal(message: impl std::fmt::Display) -> Self {
        Self::new(Reason::InternalError, message.to_string())
    }

    /// Sets the details: the object's name, its group, its kind (as upstream names it).
    pub fn with_details(mut self, name: &str, group: &str, kind: &str) -> Self {
        self.details = Some(Box::new((
            name.to_string(),
            group.to_string(),
            kind.to_string(),
        )));
        self
    }

    /// Names the object the error is about.
    pub fn about(mut self, resource: &Resource, name: &str) -> Self {
        self.details = Some(Box::new((
            name.to_string(),
            resource.group.to_string(),
            resource.plural().to_string(),
        )));
        self
    }

    /// `deployments.apps "x" not found`.
    pub fn not_found(resource: &Resource, name: &str) -> Self {
        Self::new(
            Reason::NotFound,
            format!("{} {name:?} not found", resource.qualified()),
        )
        .about(resource, name)
    }

    /// The `Status` for a store error about `name` of `resource`.
    pub fn from_store(e: StoreError, resource: &Resource, name: &str) -> Self {
        let q = resource.qualified();
        match e {
            StoreError::NotFound(_) => Self::not_found(resource, name),
            StoreError::AlreadyExists(_) => {
                Self::new(Reason::AlreadyExists, format!("{q} {name:?} already exists"))
                    .about(resource, name)
            }
            StoreError::Conflict { .. } => Self::new(
                Reason::Conflict,
                format!(
                    "Operation cannot be fulfilled on {q} {name:?}: the object has been modified; please apply your changes to the latest version and try again"
                ),
            )
            .about(resource, name),
            StoreError::Invalid(message) => invalid_message(resource, name, message),
            StoreError::Forbidden { field, message, .. } => {
                let message = format!("Forbidden: {message}");
                let mut err = invalid_message(resource, name, format!("{field}: {message}"));
                err.causes = vec![Cause {
                    reason: "FieldValueForbidden",
                    message,
                    field,
                }];
                err
            }
            other => other.into(),
        }
    }

    /// 422 or 400 for an object that does not decode or validate: the first decode
    /// error makes it a 400 (`cannot be handled as a Deployment`), as upstream.
    pub fn from_fields(resource: &Resource, name: &str, errors: &[FieldError]) -> Self {
        let kind = resource.kind.name();
        if let Some(e) = errors.iter().find(|e| e.decode) {
            let at = if e.path.is_empty() {
                String::new()
            } else {
                format!("{}: ", e.path)
            };
            return Self::bad_request(format!(
                "{kind} in version {:?} cannot be handled as a {kind}: {at}{}",
                resource.version, e.message
            ));
        }
        let causes: Vec<Cause> = errors
            .iter()
            .map(|e| Cause {
                reason: "FieldValueInvalid",
                message: e.message.clone(),
                field: e.path.clone(),
            })
            .collect();
        let listed: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        let group = if resource.group.is_empty() {
            String::new()
        } else {
            format!(".{}", resource.group)
        };
        let mut err = Self::new(
            Reason::Invalid,
            format!("{kind}{group} {name:?} is invalid: {}", listed.join(", ")),
        );
        err.details = Some(Box::new((
            name.to_string(),
            resource.group.to_string(),
            kind.to_string(),
        )));
        err.causes = causes;
        err
    }

    /// The `Status` object.
    pub fn status(&self) -> Value {
        let (code, reason) = self.reason.parts();
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": reason,
            "code": code.as_u16(),
        });
        if self.details.is_some() || !self.causes.is_empty() {
            let mut details = serde_json::Map::new();
            if let Some((name, group, kind)) = self.details.as_deref() {
                details.insert("name".into(), name.clone().into());
                if !group.is_empty() {
                    details.insert("group".into(), group.clone().into());
                }
                details.insert("kind".into(), kind.clone().into());
            }
            if !self.causes.is_empty() {
                let causes: Vec<Value> = self
                    .causes
                    .iter()
                    .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
                    .collect();
                details.insert("causes".into(), causes.into());
            }
            status["details"] = Value::Object(details);
        }
        status
    }
}

/// A store-level refusal (`StoreError::Invalid`) of an object: 422 naming it.
fn invalid_message(resource: &Resource, name: &str, message: String) -> ApiError {
    let group = if resource.group.is_empty() {
        String::new()
    } else {
        format!(".{}", resource.group)
    };
    let kind = resource.kind.name();
    let mut err = ApiError::new(
        Reason::Invalid,
        format!("{kind}{group} {name:?} is invalid: {message}"),
    );
    err.details = Some(Box::new((
        name.to_string(),
        resource.group.to_string(),
        kind.to_string(),
    )));
    err
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let reason = match &e {
            StoreError::NotFound(_) => Reason::NotFound,
            StoreError::AlreadyExists(_) => Reason::AlreadyExists,
            StoreError::Conflict { .. } => Reason::Conflict,
            StoreError::Gone(_) => Reason::Expired,
            StoreError::Invalid(_) | StoreError::Forbidden { .. } => Reason::Invalid,
            StoreError::TooLarge { .. } => Reason::RequestEntityTooLarge,
            StoreError::Corrupt { .. }
            | StoreError::Damaged(_)
            | StoreError::InUse(_)
            | StoreError::Db(_) => Reason::InternalError,
        };
        ApiError::new(reason, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (code, _) = self.reason.parts();
        (code, axum::Json(self.status())).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lanes_model::Kind;

    #[test]
    fn messages_read_as_the_api_servers() {
        let deploy = Resource::find("apps", "v1", "deployments").unwrap();
        let e = ApiError::not_found(&deploy, "x");
        assert_eq!(e.message, "deployments.apps \"x\" not found");
        assert_eq!(e.status()["details"]["kind"], "deployments");
        let e = ApiError::from_fields(
            &deploy,
            "x",
            &[FieldError::decode(
                "spec.replicas",
                "invalid type: string \"a\"",
            )],
        );
        assert_eq!(e.reason, Reason::BadRequest);
        assert!(
            e.message
                .contains("cannot be handled as a Deployment: spec.replicas")
        );
        let e = ApiError::from_fields(&deploy, "Bad", &[FieldError::new("metadata.name", "no")]);
        assert_eq!(e.reason, Reason::Invalid);
        assert_eq!(e.status()["details"]["causes"][0]["field"], "metadata.name");
        assert_eq!(deploy.kind, Kind::Deployment);
    }
}
