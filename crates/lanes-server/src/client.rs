//! The client the CLI talks the Kubernetes API with — of `lanes up` or of any cluster
//! in a kubeconfig — through kube-rs (its transport, TLS and authentication).

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
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

/// A client of one API server.
#[derive(Clone)]
pub struct Client {
    base: String,
    kube: kube::Client,
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
    /// A client of the server at `server` (`http://host:port` or `https://...`, whose
    /// certificate must be trusted by the system), with a bearer token.
    pub fn new(server: &str, token: Option<String>) -> Result<Client, ClientError> {
        let base = server.trim_end_matches('/').to_string();
        let connect = |reason: String| ClientError::Connect {
            url: base.clone(),
            reason,
        };
        if !base.starts_with("http://") && !base.starts_with("https://") {
            return Err(connect(
                "the server URL must start with http:// or https://".into(),
            ));
        }
        let uri: http::Uri = base.parse().map_err(|e| connect(format!("{e}")))?;
        let mut config = kube::Config::new(uri);
        config.connect_timeout = Some(std::time::Duration::from_secs(5));
        config.read_timeout = None;
        config.auth_info.token = token.map(secrecy::SecretString::from);
        Self::from_config(config)
    }

    /// A client of the current context of a kubeconfig.
    pub async fn from_kubeconfig(path: &std::path::Path) -> Result<Client, ClientError> {
        let fail = |reason: String| ClientError::Connect {
            url: path.display().to_string(),
            reason,
        };
        let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| fail(e.to_string()))?;
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .map_err(|e| fail(e.to_string()))?;
        Self::from_config(config)
    }

    /// A client as kubectl finds its cluster: `KUBECONFIG`, `~/.kube/config`, or the
    /// in-cluster service account.
    pub async fn infer() -> Result<Client, ClientError> {
        let config = kube::Config::infer()
            .await
            .map_err(|e| ClientError::Connect {
                url: "the kubeconfig".into(),
                reason: e.to_string(),
            })?;
        Self::from_config(config)
    }

    fn from_config(mut config: kube::Config) -> Result<Client, ClientError> {
        config.read_timeout = None;
        let base = config
            .cluster_url
            .to_string()
            .trim_end_matches('/')
            .to_string();
        let kube = kube::Client::try_from(config).map_err(|e| ClientError::Connect {
            url: base.clone(),
            reason: e.to_string(),
        })?;
        Ok(Client { base, kube })
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
    ) -> Result<http::Response<kube::client::Body>, ClientError> {
        let mut req = Request::builder().method(method).uri(path_and_query);
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        let req = req
            .body(kube::client::Body::from(body.unwrap_or_default()))
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        self.kube.send(req).await.map_err(|e| ClientError::Connect {
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
    /// creates counts as there). Namespaces are applied first, then the rest, several
    /// in flight; results come in the order given.
    pub async fn apply(&self, objects: Vec<Value>) -> Result<Vec<ApplyResult>, ClientError> {
        let new_namespaces: Vec<String> = objects
            .iter()
            .filter(|o| o.get("kind").and_then(Value::as_str) == Some("Namespace"))
            .filter_map(|o| o.pointer("/metadata/name").and_then(Value::as_str))
            .map(str::to_string)
            .collect();
        let mut errors = Vec::new();
        let mut targets = Vec::with_capacity(objects.len());
        let mut seen = std::collections::BTreeSet::new();
        for (i, o) in objects.iter().enumerate() {
            match ApplyTarget::of(o) {
                Ok(t) if !seen.insert((t.kind, t.namespace.clone(), t.name.clone())) => {
                    errors.push(format!("object {} ({}) is given twice", i + 1, t.described));
                }
                Ok(t) => targets.push((i, t)),
                Err(e) => errors.push(format!("object {}: {e}", i + 1)),
            }
        }
        let mut checks = Vec::with_capacity(targets.len());
        for chunk in targets.chunks(IN_FLIGHT) {
            let mut batch = Vec::with_capacity(chunk.len());
            for (_, t) in chunk {
                batch.push(self.dry_run_one(t));
            }
            checks.extend(futures_util::future::join_all(batch).await);
        }
        let checks = targets.iter().zip(checks).map(|((i, t), r)| (i, t, r));
        for (i, t, r) in checks {
            match r {
                Ok(_) => {}
                Err(ClientError::Api { status, .. })
                    if status == StatusCode::NOT_FOUND
                        && t.namespace
                            .as_ref()
                            .is_some_and(|n| new_namespaces.contains(n)) => {}
                Err(ClientError::Api { message, .. }) => {
                    errors.push(format!("object {} ({}): {message}", i + 1, t.described));
                }
                Err(e) => return Err(e),
            }
        }
        if !errors.is_empty() {
            return Err(ClientError::Api {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                message: format!("nothing applied: {}", errors.join("; ")),
            });
        }
        let mut results: Vec<Option<ApplyResult>> = vec![None; targets.len()];
        // Namespaces before what lives in them; lane groups after their lanes (a
        // group's fallback target must name one of its lanes once it has any).
        let (first, rest): (Vec<_>, Vec<_>) = targets
            .iter()
            .enumerate()
            .partition(|(_, (_, t))| t.kind == Kind::Namespace);
        let (last, rest): (Vec<_>, Vec<_>) = rest
            .into_iter()
            .partition(|(_, (_, t))| t.kind == Kind::LaneGroup);
        for (slot, (_, t)) in first {
            results[slot] = Some(self.apply_one(t).await?);
        }
        let slots: Vec<usize> = rest.iter().map(|(slot, _)| *slot).collect();
        let mut applied = Vec::with_capacity(rest.len());
        for chunk in rest.chunks(IN_FLIGHT) {
            let mut batch = Vec::with_capacity(chunk.len());
            for (_, (_, t)) in chunk {
                batch.push(self.apply_one(t));
            }
            applied.extend(futures_util::future::join_all(batch).await);
        }
        let applied = slots.into_iter().zip(applied);
        for (slot, r) in applied {
            results[slot] = Some(r?);
        }
        for (slot, (_, t)) in last {
            results[slot] = Some(self.apply_one(t).await?);
        }
        Ok(results.into_iter().flatten().collect())
    }

    async fn dry_run_one(&self, t: &ApplyTarget) -> Result<Value, ClientError> {
        let url = format!("{}&dryRun=All", t.url);
        self.json(Method::PATCH, &url, Some(APPLY), Some(&t.body))
            .await
    }

    async fn apply_one(&self, t: &ApplyTarget) -> Result<ApplyResult, ClientError> {
        let before = match self.get(t.kind, t.namespace.as_deref(), &t.name).await {
            Ok(v) => Some(v),
            Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => None,
            Err(e) => return Err(e),
        };
        let after = self
            .json(Method::PATCH, &t.url, Some(APPLY), Some(&t.body))
            .await?;
        let result = match before {
            None => "created",
            Some(b) if unchanged_by_apply(&b, &after, &t.body) => "unchanged",
            Some(_) => "configured",
        };
        Ok(ApplyResult {
            kind: t.kind.name().to_string(),
            name: t.name.clone(),
            namespace: t.namespace.clone(),
            result: result.into(),
        })
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
        let kind = Kind::of_value(object)
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

/// One object of an apply: where it goes and what is sent.
struct ApplyTarget {
    kind: Kind,
    namespace: Option<String>,
    name: String,
    described: String,
    url: String,
    body: Value,
}

impl ApplyTarget {
    fn of(o: &Value) -> Result<ApplyTarget, String> {
        let described = lanes_model::object::describe_value(o).unwrap_or_else(|| "object".into());
        let kind = Kind::of_value(o)
            .ok_or_else(|| format!("{described}: kind: not a kind Lanes serves"))?;
        let name = o
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let namespace = kind.namespaced().then(|| {
            o.pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .unwrap_or("default")
                .to_string()
        });
        let mut body = o.clone();
        if let (Some(ns), Some(meta)) = (
            &namespace,
            body.get_mut("metadata").and_then(Value::as_object_mut),
        ) {
            meta.insert("namespace".into(), Value::String(ns.clone()));
        }
        let api_version = o.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        if kind == Kind::Rollout && api_version.ends_with("/v1alpha1") {
            // Kruise's conversion, as its webhook makes it on a cluster.
            lanes_model::rollout::convert_v1alpha1(&mut body);
        }
        let api_version = body.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let resource = Resource::for_object(kind, api_version);
        let url = format!(
            "{}?fieldManager={FIELD_MANAGER}&force=true&fieldValidation=Strict",
            resource.path(namespace.as_deref(), Some(&name), None)
        );
        Ok(ApplyTarget {
            kind,
            namespace,
            name,
            described,
            url,
            body,
        })
    }
}

/// Requests `apply` keeps in flight at once.
const IN_FLIGHT: usize = 16;

/// The media type of a server-side apply.
const APPLY: &str = "application/apply-patch+yaml";

/// Whether two reads of an object differ only where controllers write (the status,
/// and the resourceVersion and managed fields that follow any write) or in the version
/// they were read at: a status written between the read and the apply is no change the
/// apply made.
/// Whether an apply left the object as it was, but for what the server and controllers
/// keep: status, versions, field managers, and the finalizers a controller may add
/// between the read before the apply and the apply itself (unless the manifest names
/// finalizers of its own).
fn unchanged_by_apply(a: &Value, b: &Value, applied: &Value) -> bool {
    let keeps_finalizers = applied
        .get("metadata")
        .is_some_and(|m| m.get("finalizers").is_some());
    let user_part = |v: &Value| {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("status");
            o.remove("apiVersion");
        }
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
            m.remove("managedFields");
            if !keeps_finalizers {
                m.remove("finalizers");
            }
        }
        v
    };
    user_part(a) == user_part(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_finalizer_a_controller_added_meanwhile_leaves_an_apply_unchanged() {
        let manifest = json!({"metadata": {"name": "r"}, "spec": {"a": 1}});
        let before = json!({"metadata": {"name": "r", "resourceVersion": "1"}, "spec": {"a": 1}});
        let after = json!({"metadata": {"name": "r", "resourceVersion": "2",
            "finalizers": ["rollouts.kruise.io/rollout"]}, "spec": {"a": 1}, "status": {"x": 1}});
        assert!(unchanged_by_apply(&before, &after, &manifest));
        let changed = json!({"metadata": {"name": "r"}, "spec": {"a": 2}});
        assert!(!unchanged_by_apply(&before, &changed, &manifest));
        let own = json!({"metadata": {"name": "r", "finalizers": ["mine"]}, "spec": {"a": 1}});
        assert!(!unchanged_by_apply(&before, &after, &own));
    }
}
