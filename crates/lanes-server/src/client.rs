//! The client of the embedded API, as the CLI uses it.

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use lanes_model::Kind;
use serde_json::Value;

use crate::api::{ApplyRequest, ApplyResult};
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

/// Percent-encodes a query value.
pub fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The API path of an object (`name` given) or a collection.
pub fn path(kind: Kind, name: Option<&str>, namespace: Option<&str>) -> String {
    sub_path(kind, name, "", namespace)
}

/// The API path of an object's subresource (`/status`), or of the object when `sub` is
/// empty.
pub fn sub_path(kind: Kind, name: Option<&str>, sub: &str, namespace: Option<&str>) -> String {
    let mut p = format!("/api/{}", kind.info().plural);
    if let Some(n) = name {
        p.push('/');
        p.push_str(&encode(n));
        p.push_str(sub);
    }
    if let Some(ns) = namespace.filter(|_| kind.namespaced()) {
        p.push_str("?namespace=");
        p.push_str(&encode(ns));
    }
    p
}

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

    /// Applies objects all or nothing.
    pub async fn apply(&self, objects: Vec<Value>) -> Result<Vec<ApplyResult>, ClientError> {
        let body = serde_json::to_value(ApplyRequest { objects })
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        let v = self
            .json(Method::POST, "/api/apply", None, Some(&body))
            .await?;
        serde_json::from_value(v).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// Deletes objects in one transaction; each result says `deleted` or `not found`.
    pub async fn delete_many(
        &self,
        objects: Vec<crate::api::ObjectRef>,
    ) -> Result<Vec<ApplyResult>, ClientError> {
        let body = serde_json::to_value(crate::api::DeleteRequest { objects })
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        let v = self
            .json(Method::POST, "/api/delete", None, Some(&body))
            .await?;
        serde_json::from_value(v).map_err(|e| ClientError::Decode(e.to_string()))
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
            p.push(if p.contains('?') { '&' } else { '?' });
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
        self.json(Method::POST, &path(kind, None, None), None, Some(object))
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
        let p = sub_path(kind, Some(name), "/status", namespace);
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
        let p = sub_path(
            kind,
            Some(name),
            if status { "/status" } else { "" },
            namespace,
        );
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
            "/api/pods/{}/log?namespace={}&previous={previous}",
            encode(name),
            encode(namespace)
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
