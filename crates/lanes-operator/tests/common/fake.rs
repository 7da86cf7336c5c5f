//! A mocked Kubernetes API server for the operator's tests: a `tower-test` mock service
//! whose requests are answered by an in-memory object store with the API server's REST
//! semantics that the controllers rely on — create/get/list (label selectors)/replace
//! (resourceVersion checked)/merge patch/server-side apply/delete, the `status`
//! subresource — plus a log of every request and faults to inject.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::{Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};

/// One request the operator sent.
#[derive(Debug, Clone)]
pub struct Req {
    /// HTTP method.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// The query string.
    pub query: String,
    /// Content-Type, if any.
    pub content_type: String,
    /// The JSON body, if any.
    pub body: Option<Value>,
}

impl Req {
    /// The RBAC (resource, verb) pairs this request needs: a server-side apply may
    /// create, and is then authorised as create too.
    pub fn rbac(&self) -> Vec<(String, String)> {
        let p = parse(&self.path);
        let resource = match &p.sub {
            Some(s) => format!("{}/{s}", p.plural),
            None => p.plural.clone(),
        };
        let verbs: &[&str] = match (self.method.as_str(), p.name.is_some()) {
            ("GET", _) if self.query.contains("watch=true") => &["watch"],
            ("GET", true) => &["get"],
            ("GET", false) => &["list"],
            ("POST", _) => &["create"],
            ("PUT", _) => &["update"],
            ("PATCH", _) if self.content_type.starts_with("application/apply-patch") => {
                &["patch", "create"]
            }
            ("PATCH", _) => &["patch"],
            ("DELETE", _) => &["delete"],
            _ => &["unknown"],
        };
        verbs
            .iter()
            .map(|v| (resource.clone(), v.to_string()))
            .collect()
    }

    /// The API group of the request's resource (`""` for the core group).
    pub fn group(&self) -> String {
        let p = parse(&self.path);
        p.prefix
            .strip_prefix("/apis/")
            .and_then(|gv| gv.split('/').next())
            .unwrap_or("")
            .to_string()
    }
}

type Collection = (String, String);

/// One change, as a watch reports it.
#[derive(Clone)]
struct Change {
    collection: Collection,
    namespace: String,
    rv: u64,
    kind: &'static str,
    object: Value,
}

impl State {
    /// Stores an object (already stamped) and records the change.
    fn store(&mut self, key: Collection, ns: String, name: String, mut v: Value) {
        if key.1 == "deployments" {
            self.admit_deployment(&key, &ns, &name, &mut v);
        }
        let coll = self.objects.entry(key.clone()).or_default();
        let kind = if coll.contains_key(&(ns.clone(), name.clone())) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        coll.insert((ns.clone(), name), v.clone());
        let rv = self.rv;
        self.changes.push(Change {
            collection: key,
            namespace: ns,
            rv,
            kind,
            object: v,
        });
    }

    /// What the cluster's mutating webhook for Deployments (Lanes' admission, as
    /// Kruise's) does to every write of one, whoever sends it.
    fn admit_deployment(&self, key: &Collection, ns: &str, name: &str, v: &mut Value) {
        let old = self
            .objects
            .get(key)
            .and_then(|c| c.get(&(ns.to_string(), name.to_string())));
        let rollouts = (
            "/apis/rollouts.kruise.io/v1beta1".to_string(),
            "rollouts".to_string(),
        );
        let rollouts: Vec<lanes_model::rollout::Rollout> = self
            .objects
            .get(&rollouts)
            .into_iter()
            .flat_map(|c| c.values())
            .filter_map(|r| serde_json::from_value(r.clone()).ok())
            .collect();
        let managing = lanes_rollout::admission::managing(&rollouts, ns, name);
        lanes_rollout::admission::admit_deployment(old, v, managing);
    }

    /// A client's delete: an object that finalizers hold is marked (`deletionTimestamp`,
    /// once) and stays; any other goes.
    fn delete_or_mark(&mut self, key: Collection, ns: &str, name: &str) -> Option<Value> {
        let current = self
            .objects
            .get(&key)?
            .get(&(ns.to_string(), name.to_string()))?
            .clone();
        if !held(&current) {
            return self.delete(key, ns, name);
        }
        if current["metadata"].get("deletionTimestamp").is_none() {
            let mut marked = current.clone();
            marked["metadata"]["deletionTimestamp"] = json!("2026-12-01T00:00:00Z");
            self.rv += 1;
            let rv = self.rv;
            stamp(&mut marked, Some(&current), rv);
            self.store(key, ns.to_string(), name.to_string(), marked.clone());
            return Some(marked);
        }
        Some(current)
    }

    /// Deletes an object and records the change.
    fn delete(&mut self, key: Collection, ns: &str, name: &str) -> Option<Value> {
        let gone = self
            .objects
            .get_mut(&key)?
            .remove(&(ns.to_string(), name.to_string()))?;
        self.rv += 1;
        let mut object = gone.clone();
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let rv = self.rv;
        self.changes.push(Change {
            collection: key,
            namespace: ns.to_string(),
            rv,
            kind: "DELETED",
            object,
        });
        Some(gone)
    }
}

#[derive(Default)]
struct State {
    /// Every change, for watches.
    changes: Vec<Change>,
    /// (prefix, plural) → (namespace, name) → object.
    objects: BTreeMap<(String, String), BTreeMap<(String, String), Value>>,
    rv: u64,
    log: Vec<Req>,
    /// (method, path suffix, code, reason): answered instead of the next matching request.
    faults: Vec<(String, String, u16, String)>,
}

/// The mocked API server.
#[derive(Clone)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
}

struct Parsed {
    prefix: String,
    namespace: Option<String>,
    plural: String,
    name: Option<String>,
    sub: Option<String>,
}

fn parse(path: &str) -> Parsed {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (prefix, rest) = if segs.first() == Some(&"api") {
        (
            format!("/api/{}", segs.get(1).unwrap_or(&"")),
            &segs[2.min(segs.len())..],
        )
    } else {
        (
            format!(
                "/apis/{}/{}",
                segs.get(1).unwrap_or(&""),
                segs.get(2).unwrap_or(&"")
            ),
            &segs[3.min(segs.len())..],
        )
    };
    let (namespace, rest) = if rest.first() == Some(&"namespaces") && rest.len() >= 3 {
        (Some(rest[1].to_string()), &rest[2..])
    } else {
        (None, rest)
    };
    Parsed {
        prefix,
        namespace,
        plural: rest.first().unwrap_or(&"").to_string(),
        name: rest.get(1).map(|s| s.to_string()),
        sub: rest.get(2).map(|s| s.to_string()),
    }
}

/// Where an object of `apiVersion`/`kind` lives: (prefix, plural, namespaced).
fn resource_of(v: &Value) -> (String, String, bool) {
    let api_version = v["apiVersion"].as_str().unwrap_or("");
    let kind = v["kind"].as_str().unwrap_or("");
    let prefix = if api_version.contains('/') {
        format!("/apis/{api_version}")
    } else {
        format!("/api/{api_version}")
    };
    let (plural, namespaced) = match lanes_model::Kind::from_api(api_version, kind) {
        Some(k) => (k.info().plural.to_string(), k.namespaced()),
        None => match kind {
            "Lease" => ("leases".to_string(), true),
            other => (format!("{}s", other.to_lowercase()), true),
        },
    };
    (prefix, plural, namespaced)
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

fn labels_match(obj: &Value, selector: &str) -> bool {
    selector.split(',').filter(|s| !s.is_empty()).all(|term| {
        let labels = &obj["metadata"]["labels"];
        match term.split_once('=') {
            Some((k, v)) => labels.get(k).and_then(Value::as_str) == Some(v),
            None => labels.get(term).is_some(),
        }
    })
}

fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| {
            v.replace("%3D", "=")
                .replace("%2C", ",")
                .replace("%2F", "/")
                .replace("%3d", "=")
                .replace("%2c", ",")
                .replace("%2f", "/")
        })
    })
}

fn status(code: u16, reason: &str, message: String) -> (u16, Value) {
    (
        code,
        json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
               "reason": reason, "code": code, "message": message}),
    )
}

impl FakeApi {
    /// A mocked API server and a client talking to it.
    pub fn start() -> (FakeApi, kube::Client) {
        let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let fake = FakeApi {
            state: Arc::new(Mutex::new(State::default())),
        };
        let server = fake.clone();
        tokio::spawn(async move {
            while let Some((req, send)) = handle.next_request().await {
                let server = server.clone();
                // Each request answered on its own task: a watch may wait for changes.
                tokio::spawn(async move {
                    let (parts, body) = req.into_parts();
                    let bytes = body.collect_bytes().await.unwrap_or_default();
                    let (code, bytes) = server.answer_http(&parts, &bytes).await;
                    let resp = Response::builder()
                        .status(code)
                        .header("content-type", "application/json")
                        .body(Body::from(bytes))
                        .unwrap();
                    send.send_response(resp);
                });
            }
        });
        (fake, kube::Client::new(svc, "default"))
    }

    /// A mocked API server served over loopback HTTP on `rt` (for the `lanes` binary),
    /// and its address.
    pub fn on_loopback(rt: &tokio::runtime::Runtime) -> (FakeApi, std::net::SocketAddr) {
        rt.block_on(async {
            let (fake, _client) = FakeApi::start();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = fake.clone();
            tokio::spawn(async move { server.serve_http(listener).await });
            (fake, addr)
        })
    }

    /// Serves the mocked API over real HTTP on `listener` (for the `lanes` binary).
    pub async fn serve_http(&self, listener: tokio::net::TcpListener) {
        let fake = self.clone();
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let fake = fake.clone();
            async move {
                let (parts, body) = req.into_parts();
                let bytes = axum::body::to_bytes(body, 32 << 20)
                    .await
                    .unwrap_or_default();
                let (code, bytes) = fake.answer_http(&parts, &bytes).await;
                Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(axum::body::Body::from(bytes))
                    .unwrap()
            }
        });
        let _ = axum::serve(listener, app).await;
    }

    async fn answer_http(
        &self,
        parts: &http::request::Parts,
        bytes: &[u8],
    ) -> (StatusCode, Vec<u8>) {
        let body = if bytes.is_empty() {
            None
        } else {
            serde_json::from_slice::<Value>(bytes).ok()
        };
        let r = Req {
            method: parts.method.to_string(),
            path: parts.uri.path().to_string(),
            query: parts.uri.query().unwrap_or("").to_string(),
            content_type: parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string(),
            body,
        };
        let (code, out) = self.answer(r);
        if code == 0 {
            let query = parts.uri.query().unwrap_or("");
            return (StatusCode::OK, self.watch(parts.uri.path(), query).await);
        }
        (
            StatusCode::from_u16(code).unwrap(),
            serde_json::to_vec(&out).unwrap(),
        )
    }

    /// Stores an object as a cluster component would (no request logged).
    pub fn put(&self, mut v: Value) {
        let (prefix, plural, namespaced) = resource_of(&v);
        let ns = if namespaced {
            let ns = v["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_string();
            v["metadata"]["namespace"] = json!(ns);
            ns
        } else {
            String::new()
        };
        let name = v["metadata"]["name"].as_str().unwrap_or("").to_string();
        let mut s = self.state.lock().unwrap();
        s.rv += 1;
        let rv = s.rv;
        let key = (prefix, plural);
        let old = s
            .objects
            .get(&key)
            .and_then(|c| c.get(&(ns.clone(), name.clone())))
            .cloned();
        stamp(&mut v, old.as_ref(), rv);
        s.store(key, ns, name, v);
    }

    /// The stored object of `kind` (as `Kind` names it), if any.
    pub fn get(&self, api_version: &str, kind: &str, ns: &str, name: &str) -> Option<Value> {
        let (prefix, plural, namespaced) =
            resource_of(&json!({"apiVersion": api_version, "kind": kind}));
        let ns = if namespaced { ns } else { "" };
        let s = self.state.lock().unwrap();
        s.objects
            .get(&(prefix, plural))?
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
    }

    /// Every stored object of a kind.
    pub fn list(&self, api_version: &str, kind: &str) -> Vec<Value> {
        let (prefix, plural, _) = resource_of(&json!({"apiVersion": api_version, "kind": kind}));
        let s = self.state.lock().unwrap();
        s.objects
            .get(&(prefix, plural))
            .map(|c| c.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Merge-patches a stored object (its status, with `status`), as another client
    /// would through the API server: `kubectl patch`, `kubectl-kruise rollout approve`.
    pub fn merge(
        &self,
        api_version: &str,
        kind: &str,
        ns: &str,
        name: &str,
        patch: &Value,
        status: bool,
    ) {
        let mut v = self.get(api_version, kind, ns, name).unwrap();
        if status {
            let mut st = v.get("status").cloned().unwrap_or(json!({}));
            merge_patch(&mut st, &patch["status"]);
            v["status"] = st;
        } else {
            merge_patch(&mut v, patch);
        }
        self.put(v);
    }

    /// Deletes a stored object, as another client would.
    pub fn remove(&self, api_version: &str, kind: &str, ns: &str, name: &str) {
        let (prefix, plural, _) = resource_of(&json!({"apiVersion": api_version, "kind": kind}));
        let mut s = self.state.lock().unwrap();
        s.delete_or_mark((prefix, plural), ns, name);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Req> {
        self.state.lock().unwrap().log.clone()
    }

    /// Forgets the request log.
    pub fn clear_requests(&self) {
        self.state.lock().unwrap().log.clear();
    }

    /// Answers the next `method` request whose path ends with `suffix` with `code`.
    pub fn fail_next(&self, method: &str, suffix: &str, code: u16, reason: &str) {
        self.state
            .lock()
            .unwrap()
            .faults
            .push((method.into(), suffix.into(), code, reason.into()));
    }

    /// How many injected faults no request has met yet.
    pub fn pending_faults(&self) -> usize {
        self.state.lock().unwrap().faults.len()
    }

    /// Drops the faults no request has met yet.
    pub fn clear_faults(&self) {
        self.state.lock().unwrap().faults.clear();
    }

    /// The watch events after the request's resourceVersion, as JSON lines; waits a
    /// little for some when there are none (a watch that ends at once would spin).
    async fn watch(&self, path: &str, query: &str) -> Vec<u8> {
        let p = parse(path);
        let collection = (p.prefix.clone(), p.plural.clone());
        let since: u64 = query_param(query, "resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let selector = query_param(query, "labelSelector").unwrap_or_default();
        for _ in 0..10 {
            let out: Vec<u8> = {
                let s = self.state.lock().unwrap();
                s.changes
                    .iter()
                    .filter(|c| c.collection == collection && c.rv > since)
                    .filter(|c| p.namespace.as_ref().is_none_or(|ns| *ns == c.namespace))
                    .filter(|c| labels_match(&c.object, &selector))
                    .flat_map(|c| {
                        let mut line =
                            serde_json::to_vec(&json!({"type": c.kind, "object": c.object}))
                                .unwrap();
                        line.push(b'\n');
                        line
                    })
                    .collect()
            };
            if !out.is_empty() {
                return out;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Vec::new()
    }

    fn answer(&self, r: Req) -> (u16, Value) {
        let mut s = self.state.lock().unwrap();
        s.log.push(r.clone());
        if let Some(i) = s
            .faults
            .iter()
            .position(|(m, suffix, _, _)| *m == r.method && r.path.ends_with(suffix.as_str()))
        {
            let (_, _, code, reason) = s.faults.remove(i);
            return status(code, &reason, format!("injected {reason}"));
        }
        let p = parse(&r.path);
        let key = (p.prefix.clone(), p.plural.clone());
        if r.query.contains("watch=true") {
            // Answered by the async layer, which may wait for changes.
            return (0, Value::Null);
        }
        let ns = p.namespace.clone().unwrap_or_default();
        match (r.method.as_str(), &p.name) {
            ("GET", None) => {
                let selector = query_param(&r.query, "labelSelector").unwrap_or_default();
                let items: Vec<Value> = s
                    .objects
                    .get(&key)
                    .map(|c| {
                        c.iter()
                            .filter(|((ons, _), _)| p.namespace.is_none() || *ons == ns)
                            .map(|(_, v)| v.clone())
                            .filter(|v| labels_match(v, &selector))
                            .collect()
                    })
                    .unwrap_or_default();
                (
                    200,
                    json!({"apiVersion": "v1", "kind": "List",
                           "metadata": {"resourceVersion": s.rv.to_string()}, "items": items}),
                )
            }
            ("GET", Some(name)) => match s
                .objects
                .get(&key)
                .and_then(|c| c.get(&(ns.clone(), name.clone())))
            {
                Some(v) => (200, v.clone()),
                None => status(404, "NotFound", format!("{} {name:?} not found", p.plural)),
            },
            ("POST", _) => {
                let mut v = r.body.clone().unwrap_or(Value::Null);
                let name = v["metadata"]["name"].as_str().unwrap_or("").to_string();
                if s.objects
                    .get(&key)
                    .is_some_and(|c| c.contains_key(&(ns.clone(), name.clone())))
                {
                    return status(
                        409,
                        "AlreadyExists",
                        format!("{} {name:?} already exists", p.plural),
                    );
                }
                if p.namespace.is_some() {
                    v["metadata"]["namespace"] = json!(ns);
                }
                s.rv += 1;
                let rv = s.rv;
                stamp(&mut v, None, rv);
                s.store(key, ns, name, v.clone());
                (201, v)
            }
            ("PUT", Some(name)) | ("PATCH", Some(name)) => {
                let current = s
                    .objects
                    .get(&key)
                    .and_then(|c| c.get(&(ns.clone(), name.clone())))
                    .cloned();
                let body = r.body.clone().unwrap_or(Value::Null);
                let apply = r.content_type.starts_with("application/apply-patch");
                let Some(current) = current else {
                    if apply {
                        // Server-side apply creates what is missing.
                        let mut v = body;
                        if p.namespace.is_some() {
                            v["metadata"]["namespace"] = json!(ns);
                        }
                        s.rv += 1;
                        let rv = s.rv;
                        stamp(&mut v, None, rv);
                        s.store(key, ns, name.clone(), v.clone());
                        return (201, v);
                    }
                    return status(404, "NotFound", format!("{} {name:?} not found", p.plural));
                };
                if let Some(want) = body["metadata"]["resourceVersion"].as_str()
                    && Some(want) != current["metadata"]["resourceVersion"].as_str()
                {
                    return status(
                        409,
                        "Conflict",
                        format!(
                            "Operation cannot be fulfilled on {} {name:?}: the object has been modified; please apply your changes to the latest version and try again",
                            p.plural
                        ),
                    );
                }
                let mut next = if r.method == "PUT" {
                    body.clone()
                } else if r.content_type.starts_with("application/json-patch") {
                    match json_patch_of(&current, &body) {
                        Ok(n) => n,
                        Err(e) => return status(422, "Invalid", e),
                    }
                } else {
                    let mut n = current.clone();
                    merge_patch(&mut n, &body);
                    n
                };
                if let Some(t) = current["metadata"].get("deletionTimestamp") {
                    next["metadata"]["deletionTimestamp"] = t.clone();
                }
                let is_status = p.sub.as_deref() == Some("status");
                if is_status {
                    let st = next.get("status").cloned();
                    next = current.clone();
                    match st {
                        Some(st) => next["status"] = st,
                        None => {
                            next.as_object_mut().unwrap().remove("status");
                        }
                    }
                } else {
                    match current.get("status") {
                        Some(st) => next["status"] = st.clone(),
                        None => {
                            next.as_object_mut().unwrap().remove("status");
                        }
                    }
                }
                // The write that removes the last finalizer of an object being
                // deleted deletes it.
                if next["metadata"].get("deletionTimestamp").is_some() && !held(&next) {
                    s.delete(key, &ns, name);
                    return (200, next);
                }
                s.rv += 1;
                let rv = s.rv;
                stamp(&mut next, Some(&current), rv);
                s.store(key, ns, name.clone(), next.clone());
                (200, next)
            }
            ("DELETE", Some(name)) => match s.delete_or_mark(key, &ns, name) {
                Some(_) => (
                    200,
                    json!({"apiVersion": "v1", "kind": "Status", "status": "Success", "code": 200}),
                ),
                None => status(404, "NotFound", format!("{} {name:?} not found", p.plural)),
            },
            _ => status(405, "MethodNotAllowed", format!("{} {}", r.method, r.path)),
        }
    }
}

/// Whether finalizers hold an object.
fn held(v: &Value) -> bool {
    v["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty())
}

/// `current` with a JSON patch (RFC 6902) applied; a test of an absent member against
/// null passes, as on the API server.
fn json_patch_of(current: &Value, patch: &Value) -> Result<Value, String> {
    let ops: json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(|e| format!("not a JSON patch: {e}"))?;
    let mut out = current.clone();
    for op in ops.0 {
        if let json_patch::PatchOperation::Test(t) = &op
            && t.value.is_null()
            && out.pointer(t.path.as_str()).is_none()
        {
            continue;
        }
        json_patch::patch(&mut out, &[op]).map_err(|e| format!("JSON patch failed: {e}"))?;
    }
    Ok(out)
}

/// Sets the server's fields: uid, creation time and generation kept from `old`,
/// generation bumped when the spec changed, a new resourceVersion.
fn stamp(v: &mut Value, old: Option<&Value>, rv: u64) {
    let meta = &old.map(|o| o["metadata"].clone()).unwrap_or(Value::Null);
    let generation = match old {
        None => 1,
        Some(o) => {
            let g = o["metadata"]["generation"].as_i64().unwrap_or(1);
            if o.get("spec") != v.get("spec") {
                g + 1
            } else {
                g
            }
        }
    };
    let m = &mut v["metadata"];
    m["uid"] = meta
        .get("uid")
        .cloned()
        .unwrap_or_else(|| json!(format!("uid-{rv}")));
    m["creationTimestamp"] = meta.get("creationTimestamp").cloned().unwrap_or_else(|| {
        // Creation order is the order of resourceVersions.
        let t = jiff::Timestamp::from_second(1_795_000_000 + rv as i64).unwrap();
        json!(t.to_string())
    });
    m["generation"] = json!(generation);
    m["resourceVersion"] = json!(rv.to_string());
}

/// A kubeconfig naming the mocked API server at `addr` (a bearer token, namespace
/// `default`).
pub fn kubeconfig(addr: std::net::SocketAddr) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: mock\n  cluster:\n    server: http://{addr}\n\
         users:\n- name: test\n  user:\n    token: test-token\ncontexts:\n- name: mock\n  context:\n    cluster: mock\n    user: test\n    namespace: default\n\
         current-context: mock\n"
    )
}
