//! The client of the embedded API, as the CLI uses it.

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use lanes_model::Kind;
use serde_json::Value;

use crate::merge::PatchType;

/// What can go wrong talking to the API.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server could not be reached.
    #[error(
        "cannot reach the Lanes API at {url}: {reason} (is `lanes up` running? set --server or LANES_SERVER)"
    )]
    Connect {
        /// Server URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The server answered with an error.
    #[error("{message}")]
    Api {
        /// HTTP status.
        status: StatusCode,
        /// The server's message.
        message: String,
    },
    /// The answer could not be read.
    #[error("unexpected answer from the Lanes API: {0}")]
    Decode(String),
}

impl ClientError {
    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A client of one Lanes API server.
#[derive(Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: HttpClient<HttpConnector, Full<Bytes>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("base", &self.base).finish()
    }
}

use crate::k8s::catalog::Resource;
pub use crate::k8s::catalog::encode;

/// The API path of an object (`name` given) or a collection (`namespace` none: every
/// namespace), at the kind's preferred version.
pub fn path(kind: Kind, name: Option<&str>, namespace: Option<&str>) -> String {
    let ns = namespace.or(name.map(|_| "default"));
    Resource::preferred(kind).path(ns, name, None)
}

/// The API path of an object's subresource (`status`).
pub fn sub_path(kind: Kind, name: &str, sub: &str, namespace: Option<&str>) -> String {
    Resource::preferred(kind).path(namespace.or(Some("default")), Some(name), Some(sub))
}

/// What `Client::apply` did to one object.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct ApplyResult {
    /// Kind.
    pub kind: String,
    /// Name.
    pub name: String,
    /// Namespace, for namespaced kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// `created`, `configured`, `unchanged`, `deleted` or `not found`.
    pub result: String,
}

/// The field manager of `lanes apply`.
pub const FIELD_MANAGER: &str = "lanes";

impl Client {
    /// A client of the server at `server` (`http://host:port`).
    pub fn new(server: &str, token: Option<String>) -> Result<Client, ClientError> {
        let base = server.trim_end_matches('/').to_string();
        if !base.starts_with("http://") {
            return Err(ClientError::Connect {
                url: base,
                reason: "the server URL must start with http://".into(),
            });
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(std::time::Duration::from_secs(5)));
        Ok(Client {
            base,
            token,
            http: HttpClient::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// The server URL.
    pub fn server(&self) -> &str {
        &self.base
    }

    /// Sends a request; returns the status and body of any answer.
    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let resp = self
            .start(method, path_and_query, content_type, body)
            .await?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))?
            .to_bytes();
        Ok((status, bytes))
    }

    /// Sends a request and returns the response as it streams.
    pub async fn start(
        &self,
        method: Method,
        path_and_query: &str,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Result<http::Response<hyper::body::Incoming>, ClientError> {
        let url = format!("{}{path_and_query}", self.base);
        let mut req = Request::builder().method(method).uri(&url);
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        if let Some(t) = &self.token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        self.http
            .request(req)
            .await
            .map_err(|e| ClientError::Connect {
                url: self.base.clone(),
                reason: {
                    let mut s = e.to_string();
                    let mut src = std::error::Error::source(&e);
                    while let Some(inner) = src {
                        s = format!("{s}: {inner}");
                        src = inner.source();
                    }
                    s
                },
            })
    }

    /// Sends JSON and reads JSON; an error status becomes [`ClientError::Api`] with the
    /// server's message.
    pub async fn json(
        &self,
        method: Method,
        path_and_query: &str,
        content_type: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let body = body.map(|b| serde_json::to_vec(b).unwrap_or_default());
        let ct = content_type.or(body.as_ref().map(|_| "application/json"));
        let (status, bytes) = self.send(method, path_and_query, ct, body).await?;
        let value: Value = serde_json::from_slice(&bytes).map_err(|_| {
            ClientError::Decode(format!("{status}: {}", String::from_utf8_lossy(&bytes)))
        })?;
        if !status.is_success() {
            let message = value
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("request failed")
                .to_string();
            return Err(ClientError::Api { status, message });
        }
        Ok(value)
    }

    /// Applies objects (server-side apply, as field manager `lanes`, taking over
    /// fields others set, as a declarative apply does): every object is first applied
    /// as a dry run, and nothing is stored unless all pass (a namespace the same batch
    /// creates counts as there).
    pub async fn apply(&self, objects: Vec<Value>) -> Result<Vec<ApplyResult>, ClientError> {
        let mut targets = Vec::with_capacity(objects.len());
        let mut errors = Vec::new();
        let new_namespaces: Vec<&str> = objects
            .iter()
            .filter(|o| o.get("kind").and_then(Value::as_str) == Some("Namespace"))
            .filter_map(|o| o.pointer("/metadata/name").and_then(Value::as_str))
            .collect();
        for (i, o) in objects.iter().enumerate() {
            let described =
                lanes_model::object::describe_value(o).unwrap_or_else(|| "object".into());
            let Some(kind) = o
                .get("kind")
                .and_then(Value::as_str)
                .and_then(Kind::from_kind_name)
            else {
                errors.push(format!(
                    "object {} ({described}): kind: not a kind Lanes serves",
                    i + 1
                ));
                continue;
            };
            let name = o
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let ns = kind.namespaced().then(|| {
                o.pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .unwrap_or("default")
                    .to_string()
            });
            let mut body = o.clone();
            if let (Some(ns), Some(meta)) =
                (&ns, body.get_mut("metadata").and_then(Value::as_object_mut))
            {
                meta.insert("namespace".into(), Value::String(ns.clone()));
            }
            let api_version = o.get("apiVersion").and_then(Value::as_str).unwrap_or("");
            if kind == Kind::Rollout && api_version.ends_with("/v1alpha1") {
                // Kruise's conversion, as its webhook makes it on a cluster.
                lanes_model::rollout::convert_v1alpha1(&mut body);
            }
            let api_version = body.get("apiVersion").and_then(Value::as_str).unwrap_or("");
            let resource = Resource::for_object(kind, api_version);
            let p = format!(
                "{}?fieldManager={FIELD_MANAGER}&force=true&fieldValidation=Strict",
                resource.path(ns.as_deref(), Some(&name), None)
            );
            match self
                .json(
                    Method::PATCH,
                    &format!("{p}&dryRun=All"),
                    Some(APPLY),
                    Some(&body),
                )
                .await
            {
                Ok(_) => {}
                Err(ClientError::Api { status, .. })
                    if status == StatusCode::NOT_FOUND
                        && ns.as_deref().is_some_and(|n| new_namespaces.contains(&n)) => {}
                Err(ClientError::Api { message, .. }) => {
                    errors.push(format!("object {} ({described}): {message}", i + 1));
                    continue;
                }
                Err(e) => return Err(e),
            }
            targets.push((kind, ns, name, p, body));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (kind, ns, name, ..) in &targets {
            if !seen.insert((*kind, ns.clone(), name.clone())) {
                errors.push(format!(
                    "{kind} {}{name} is given twice",
                    ns.as_ref().map(|n| format!("{n}/")).unwrap_or_default()
                ));
            }
        }
        if !errors.is_empty() {
            return Err(ClientError::Api {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                message: format!("nothing applied: {}", errors.join("; ")),
            });
        }
        let mut results = Vec::with_capacity(targets.len());
        for (kind, ns, name, p, body) in targets {
            let before = match self.get(kind, ns.as_deref(), &name).await {
                Ok(v) => Some(resource_version_of(&v)),
                Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => None,
                Err(e) => return Err(e),
            };
            let after = self
                .json(Method::PATCH, &p, Some(APPLY), Some(&body))
                .await?;
            let result = match before {
                None => "created",
                Some(rv) if rv == resource_version_of(&after) => "unchanged",
                Some(_) => "configured",
            };
            results.push(ApplyResult {
                kind: kind.name().to_string(),
                name,
                namespace: ns,
                result: result.into(),
            });
        }
        Ok(results)
    }

    /// Lists objects of a kind (`namespace` none: all namespaces).
    pub async fn list(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        selector: Option<&str>,
    ) -> Result<Vec<Value>, ClientError> {
        let mut p = path(kind, None, namespace);
        if let Some(sel) = selector {
            p.push('?');
            p.push_str("labelSelector=");
            p.push_str(&encode(sel));
        }
        let v = self.json(Method::GET, &p, None, None).await?;
        Ok(v.get("items")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default())
    }

    /// Reads one object.
    pub async fn get(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, ClientError> {
        self.json(Method::GET, &path(kind, Some(name), namespace), None, None)
            .await
    }

    /// Creates an object.
    pub async fn create(&self, object: &Value) -> Result<Value, ClientError> {
        let kind = object
            .get("kind")
            .and_then(Value::as_str)
            .and_then(Kind::from_kind_name)
            .ok_or_else(|| ClientError::Decode("object has no known kind".into()))?;
        let ns = object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("default");
        self.json(
            Method::POST,
            &path(kind, None, Some(ns)),
            None,
            Some(object),
        )
        .await
    }

    /// Replaces an object (its `metadata.resourceVersion`, when set, must be current).
    pub async fn replace(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        name: &str,
        object: &Value,
    ) -> Result<Value, ClientError> {
        self.json(
            Method::PUT,
            &path(kind, Some(name), namespace),
            None,
            Some(object),
        )
        .await
    }

    /// Replaces an object's status.
    pub async fn replace_status(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        name: &str,
        object: &Value,
    ) -> Result<Value, ClientError> {
        let p = sub_path(kind, name, "status", namespace);
        self.json(Method::PUT, &p, None, Some(object)).await
    }

    /// Patches an object (or its status, with `status`).
    pub async fn patch(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        name: &str,
        ptype: PatchType,
        patch: &Value,
        status: bool,
    ) -> Result<Value, ClientError> {
        let p = if status {
            sub_path(kind, name, "status", namespace)
        } else {
            path(kind, Some(name), namespace)
        };
        self.json(Method::PATCH, &p, Some(ptype.content_type()), Some(patch))
            .await
    }

    /// Deletes an object.
    pub async fn delete(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, ClientError> {
        self.json(
            Method::DELETE,
            &path(kind, Some(name), namespace),
            None,
            None,
        )
        .await
    }

    /// The end of a pod's log: the running container's, or its previous run's.
    pub async fn log(
        &self,
        namespace: &str,
        name: &str,
        previous: bool,
    ) -> Result<String, ClientError> {
        let p = format!(
            "{}/log?previous={previous}",
            path(Kind::Pod, Some(name), Some(namespace))
        );
        let (status, body) = self.send(Method::GET, &p, None, None).await?;
        if !status.is_success() {
            let message = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
            return Err(ClientError::Api { status, message });
        }
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// Whether the server answers `/healthz`.
    pub async fn healthy(&self) -> bool {
        matches!(self.send(Method::GET, "/healthz", None, None).await, Ok((s, _)) if s.is_success())
    }
}

/// The media type of a server-side apply.
const APPLY: &str = "application/apply-patch+yaml";

fn resource_version_of(v: &Value) -> String {
    v.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}
