//! Shared helpers of the operator's tests: the mocked API server, the seed manifests,
//! and the two rollout drivers (embedded and operator) behind one interface, so the same
//! scenario table runs against both.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod fake;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use fake::FakeApi;
use lanes_model::Kind;
use lanes_server::merge::PatchType;
use lanes_store::Store;
use serde_json::{Value, json};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The seed manifests, as the API server would store them.
pub fn seed() -> Vec<Value> {
    lanes_model::load_paths(&[repo().join("examples/seed")])
        .unwrap()
        .into_iter()
        .map(|l| l.object.raw)
        .collect()
}

/// Ready pods for a Deployment, as the cluster would run them (`suffix` tells replica
/// sets apart; `ip` is the first address).
pub fn pods_of(d: &Value, suffix: &str, ip: u8) -> Vec<Value> {
    let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1);
    let name = d["metadata"]["name"].as_str().unwrap();
    (0..replicas)
        .map(|i| {
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {
                    "name": format!("{name}-{suffix}-{i}"),
                    "namespace": d["metadata"]["namespace"].as_str().unwrap_or("default"),
                    "labels": d["spec"]["template"]["metadata"]["labels"],
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                          "name": format!("{name}-{suffix}"), "uid": format!("rs-{name}")}],
                },
                "spec": d["spec"]["template"]["spec"],
                "status": {
                    "phase": "Running",
                    "podIP": format!("10.0.0.{}", ip as i64 + i),
                    "conditions": [{"type": "Ready", "status": "True"}],
                },
            })
        })
        .collect()
}

/// What the Deployment controller reports once it has caught up with `d`: all
/// replicas updated and available; a paused Deployment keeps its pods where they are.
pub fn settled_status(d: &Value) -> Value {
    let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1);
    let generation = d["metadata"]["generation"].as_i64().unwrap_or(1);
    let paused = d["spec"]["paused"].as_bool().unwrap_or(false);
    let updated = if paused {
        d["status"]["updatedReplicas"].as_i64().unwrap_or(replicas)
    } else {
        replicas
    };
    json!({
        "observedGeneration": generation,
        "replicas": replicas,
        "updatedReplicas": updated,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
    })
}

/// A step of a rollout scenario.
#[derive(Debug, Clone)]
pub enum Step {
    /// `kubectl apply` of an object.
    Apply(Value),
    /// The user sets the workload's image (`kubectl set image`).
    SetImage(&'static str),
    /// The Deployment controller catches up with every Deployment.
    Settle,
    /// One pass of the rollout controller, at t0 + seconds.
    Reconcile(i64),
    /// `kubectl-kruise rollout approve`.
    Approve,
    /// `kubectl patch rollout --type merge`: pause, resume, a plan change, disable.
    PatchRollout(Value),
    /// `kubectl delete rollout`.
    DeleteRollout,
    /// One pass of the lane release controller over [`RELEASE`], at t0 + seconds.
    ReconcileRelease(i64),
    /// `lanes release approve`: the status patch it sends.
    ApproveRelease,
}

/// A rollout driver: the embedded one over the store, or the operator over the API.
pub trait Driver {
    /// Carries out one step.
    fn step(&mut self, s: &Step) -> impl std::future::Future<Output = ()>;
    /// The Rollout, if it exists.
    fn rollout(&self) -> impl std::future::Future<Output = Option<Value>>;
    /// The Deployments of the namespace.
    fn deployments(&self) -> impl std::future::Future<Output = Vec<Value>>;
    /// The LaneRelease [`RELEASE`], if it exists.
    fn lane_release(&self) -> impl std::future::Future<Output = Option<Value>>;
}

/// A release of [`ROLLOUT`] under the LaneRelease: its canary comes up and waits at its
/// gate, the release waits in its step, an approval of the Rollout alone is held back,
/// then the release's approval promotes it, every controller taking a few more rounds.
pub fn lane_release_steps() -> Vec<Step> {
    use Step::*;
    let mut steps = seed_lanes();
    steps.extend([
        Apply(workload("a:1")),
        Apply(rollout()),
        Apply(lane_release(json!({}))),
        Settle,
        Reconcile(0),
        ReconcileRelease(0),
        SetImage("a:2"),
        Reconcile(1),
        ReconcileRelease(1),
        Settle,
        Reconcile(2),
        Reconcile(3),
        ReconcileRelease(3),
        Approve,
        Reconcile(4),
        ReconcileRelease(4),
    ]);
    steps.push(ApproveRelease);
    for t in 5..12 {
        steps.extend([ReconcileRelease(t), Reconcile(t), Settle]);
    }
    steps.push(ReconcileRelease(12));
    steps
}

/// A lane release whose member's canary is not ready within its deadline, with
/// `onFailure: pause`: the release pauses.
pub fn lane_release_deadline_steps() -> Vec<Step> {
    use Step::*;
    let mut steps = seed_lanes();
    steps.extend([
        Apply(workload("a:1")),
        Apply(rollout()),
        Apply(lane_release(
            json!({"onFailure": "pause", "progressDeadlineSeconds": 5}),
        )),
        Settle,
        Reconcile(0),
        ReconcileRelease(0),
        SetImage("a:2"),
        Reconcile(1),
        ReconcileRelease(1),
        ReconcileRelease(10),
    ]);
    steps
}

/// The scenario's namespace, workload and Rollout.
pub const NS: &str = "default";
pub const WORKLOAD: &str = "mocka-v1";
pub const ROLLOUT: &str = "rollouts-mocka";
/// The scenario's LaneRelease (over [`ROLLOUT`]).
pub const RELEASE: &str = "checkout-v2";

/// The scenario's LaneRelease: [`ROLLOUT`] released in lane `canary`, one approval;
/// `spec` entries added.
pub fn lane_release(spec: Value) -> Value {
    let mut v = json!({
        "apiVersion": "lanes.dev/v1alpha1", "kind": "LaneRelease",
        "metadata": {"name": RELEASE, "namespace": NS},
        "spec": {
            "laneGroup": "rollout", "lane": "canary",
            "rollouts": [ROLLOUT],
            "steps": [{"pause": {}}],
        },
    });
    if let (Some(base), Some(extra)) = (v["spec"].as_object_mut(), spec.as_object()) {
        base.extend(extra.clone());
    }
    v
}

/// The seed's lane group and its lanes (the LaneRelease's `laneGroup` and `lane`), to
/// apply.
fn seed_lanes() -> Vec<Step> {
    seed()
        .into_iter()
        .filter(|v| v["kind"] == "ASMSwimLaneGroup" || v["kind"] == "ASMSwimLane")
        .map(Step::Apply)
        .collect()
}

/// The status patch of `lanes release approve`.
fn release_approval() -> Value {
    json!({"status": {"currentStepState": "StepReady"}})
}

/// One pass of the lane release controller over [`RELEASE`] at t0 + `secs`.
async fn reconcile_release(client: &kube::Client, secs: i64) {
    let now = t0() + jiff::SignedDuration::from_secs(secs);
    let ctx = lanes_operator::rollouts::Context::new(client.clone());
    lanes_operator::lane_release_controller::reconcile_named(&ctx, NS, RELEASE, now)
        .await
        .unwrap();
}

/// The start of the scenario's clock.
pub fn t0() -> jiff::Timestamp {
    "2026-11-26T12:00:00Z".parse().unwrap()
}

/// The scenario's Deployment at `image`.
pub fn workload(image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": WORKLOAD, "namespace": NS},
        "spec": {
            "replicas": 4,
            "selector": {"matchLabels": {"app": "mocka"}},
            "template": {
                "metadata": {"labels": {"app": "mocka", "ASM_TRAFFIC_TAG": "base"}},
                "spec": {"containers": [{"name": "default", "image": image}]},
            },
        },
    })
}

/// The scenario's Rollout: one canary pod awaiting approval, then half the replicas
/// for a timed 30 s pause.
pub fn rollout() -> Value {
    json!({
        "apiVersion": "rollouts.kruise.io/v1beta1", "kind": "Rollout",
        "metadata": {"name": ROLLOUT, "namespace": NS},
        "spec": {
            "workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": WORKLOAD},
            "strategy": {"canary": {
                "enableExtraWorkloadForCanary": true,
                "steps": [{"replicas": 1}, {"replicas": "50%", "pause": {"duration": 30}}],
                "patchPodTemplateMetadata": {"labels": {"ASM_TRAFFIC_TAG": "canary"}},
            }},
        },
    })
}

fn image_patch(image: &str) -> Value {
    json!({"spec": {"template": {"spec": {"containers": [{"name": "default", "image": image}]}}}})
}

// ---------------------------------------------------------------------------------
// The embedded driver: the store behind the real API server (admission included), the
// embedded rollout controller's reconcile.

/// The rollout driver of `lanes up`: the operator's reconcile against the real API
/// server (admission included), through a kube-rs client whose transport is the API
/// router in-process, as `lanes up` runs it.
pub struct Embedded {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    client: lanes_server::Client,
    kube: kube::Client,
}

impl Embedded {
    /// A fresh store and API server on 127.0.0.1:0.
    pub async fn start() -> Embedded {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("state.redb")).unwrap());
        lanes_server::k8s::admission::ensure_namespaces(&store).unwrap();
        let app = lanes_server::router(
            lanes_server::ApiState {
                store: store.clone(),
                auth: lanes_server::Auth::Open,
                logs: None,
                max_replicas: lanes_server::api::DEFAULT_MAX_REPLICAS,
            },
            axum::Router::new(),
        );
        let kube = kube::Client::new(app.clone(), "default");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client = lanes_server::Client::new(&format!("http://{addr}"), None).unwrap();
        Embedded {
            _dir: dir,
            store,
            client,
            kube,
        }
    }
}

fn key(kind: Kind, name: &str) -> lanes_model::ObjectKey {
    lanes_model::ObjectKey {
        kind,
        namespace: Some(NS.into()),
        name: name.into(),
    }
}

impl Driver for Embedded {
    async fn step(&mut self, s: &Step) {
        match s {
            Step::Apply(v) => {
                self.client.apply(vec![v.clone()]).await.unwrap();
            }
            Step::SetImage(image) => {
                self.client
                    .patch(
                        Kind::Deployment,
                        Some(NS),
                        WORKLOAD,
                        PatchType::Strategic,
                        &image_patch(image),
                        false,
                    )
                    .await
                    .unwrap();
            }
            Step::Settle => {
                let store = self.store.clone();
                store
                    .write(|txn| {
                        for d in txn.list(Kind::Deployment, Some(NS))? {
                            let name = d["metadata"]["name"].as_str().unwrap().to_string();
                            txn.replace_status(
                                &key(Kind::Deployment, &name),
                                settled_status(&d),
                                None,
                            )?;
                        }
                        Ok(())
                    })
                    .unwrap();
            }
            Step::Reconcile(secs) => {
                let now = t0() + jiff::SignedDuration::from_secs(*secs);
                let ctx = lanes_operator::rollouts::Context::new(self.kube.clone());
                lanes_operator::rollouts::reconcile_rollout(&ctx, NS, ROLLOUT, now)
                    .await
                    .unwrap();
                lanes_operator::rollouts::sweep_orphans(&self.kube)
                    .await
                    .unwrap();
            }
            Step::PatchRollout(patch) => {
                self.client
                    .patch(
                        Kind::Rollout,
                        Some(NS),
                        ROLLOUT,
                        PatchType::Merge,
                        patch,
                        false,
                    )
                    .await
                    .unwrap();
            }
            Step::Approve => {
                let patch = json!({"status": {"canaryStatus": {"currentStepState": "StepReady"}}});
                self.client
                    .patch(
                        Kind::Rollout,
                        Some(NS),
                        ROLLOUT,
                        PatchType::Merge,
                        &patch,
                        true,
                    )
                    .await
                    .unwrap();
            }
            Step::DeleteRollout => {
                self.client
                    .delete(Kind::Rollout, Some(NS), ROLLOUT)
                    .await
                    .unwrap();
            }
            Step::ReconcileRelease(secs) => reconcile_release(&self.kube, *secs).await,
            Step::ApproveRelease => {
                self.client
                    .patch(
                        Kind::LaneRelease,
                        Some(NS),
                        RELEASE,
                        PatchType::Merge,
                        &release_approval(),
                        true,
                    )
                    .await
                    .unwrap();
            }
        }
    }

    async fn rollout(&self) -> Option<Value> {
        self.store.get(&key(Kind::Rollout, ROLLOUT)).unwrap()
    }

    async fn deployments(&self) -> Vec<Value> {
        self.store.list(Kind::Deployment, Some(NS)).unwrap().0
    }

    async fn lane_release(&self) -> Option<Value> {
        self.store.get(&key(Kind::LaneRelease, RELEASE)).unwrap()
    }
}

// ---------------------------------------------------------------------------------
// The operator driver: the mocked API server, the operator's reconcile; the test plays
// the users (their writes go straight into the mocked server's store, so the request log
// holds the operator's requests only) and the cluster's Deployment controller and
// garbage collector.

/// The operator's rollout driver.
pub struct Operator {
    /// The mocked API server.
    pub fake: FakeApi,
    /// A client of it.
    pub client: kube::Client,
}

impl Operator {
    /// A fresh mocked API server.
    pub fn start() -> Operator {
        let (fake, client) = FakeApi::start();
        Operator { fake, client }
    }
}

impl Driver for Operator {
    async fn step(&mut self, s: &Step) {
        let f = &self.fake;
        match s {
            Step::Apply(v) => {
                // kubectl apply: the spec is the user's; fields others set are kept.
                let (api_version, kind) = (
                    v["apiVersion"].as_str().unwrap(),
                    v["kind"].as_str().unwrap(),
                );
                let name = v["metadata"]["name"].as_str().unwrap();
                match f.get(api_version, kind, NS, name) {
                    Some(mut cur) => {
                        cur["spec"] = v["spec"].clone();
                        f.put(cur);
                    }
                    None => f.put(v.clone()),
                }
            }
            Step::SetImage(image) => {
                f.merge(
                    "apps/v1",
                    "Deployment",
                    NS,
                    WORKLOAD,
                    &image_patch(image),
                    false,
                );
            }
            Step::Settle => {
                for mut d in f.list("apps/v1", "Deployment") {
                    d["status"] = settled_status(&d);
                    f.put(d);
                }
            }
            Step::Reconcile(secs) => {
                let now = t0() + jiff::SignedDuration::from_secs(*secs);
                if f.get("rollouts.kruise.io/v1beta1", "Rollout", NS, ROLLOUT)
                    .is_some()
                {
                    lanes_operator::rollouts::reconcile_rollout(
                        &lanes_operator::rollouts::Context::new(self.client.clone()),
                        NS,
                        ROLLOUT,
                        now,
                    )
                    .await
                    .unwrap();
                }
                lanes_operator::rollouts::sweep_orphans(&self.client)
                    .await
                    .unwrap();
            }
            Step::PatchRollout(patch) => {
                f.merge(
                    "rollouts.kruise.io/v1beta1",
                    "Rollout",
                    NS,
                    ROLLOUT,
                    patch,
                    false,
                );
            }
            Step::Approve => {
                // The patch kubectl-kruise sends, on the status subresource.
                let patch = json!({"status": {"canaryStatus": {"currentStepState": "StepReady"}}});
                f.merge(
                    "rollouts.kruise.io/v1beta1",
                    "Rollout",
                    NS,
                    ROLLOUT,
                    &patch,
                    true,
                );
            }
            Step::DeleteRollout => {
                let r = f
                    .get("rollouts.kruise.io/v1beta1", "Rollout", NS, ROLLOUT)
                    .unwrap();
                f.remove("rollouts.kruise.io/v1beta1", "Rollout", NS, ROLLOUT);
                // The garbage collector removes what the Rollout owned.
                for d in f.list("apps/v1", "Deployment") {
                    let owned = d["metadata"]["ownerReferences"]
                        .as_array()
                        .is_some_and(|os| os.iter().any(|o| o["uid"] == r["metadata"]["uid"]));
                    if owned {
                        f.remove(
                            "apps/v1",
                            "Deployment",
                            NS,
                            d["metadata"]["name"].as_str().unwrap(),
                        );
                    }
                }
            }
            Step::ReconcileRelease(secs) => reconcile_release(&self.client, *secs).await,
            Step::ApproveRelease => {
                let patch = release_approval();
                f.merge(
                    "lanes.dev/v1alpha1",
                    "LaneRelease",
                    NS,
                    RELEASE,
                    &patch,
                    true,
                );
            }
        }
    }

    async fn rollout(&self) -> Option<Value> {
        self.fake
            .get("rollouts.kruise.io/v1beta1", "Rollout", NS, ROLLOUT)
    }

    async fn deployments(&self) -> Vec<Value> {
        self.fake.list("apps/v1", "Deployment")
    }

    async fn lane_release(&self) -> Option<Value> {
        self.fake
            .get("lanes.dev/v1alpha1", "LaneRelease", NS, RELEASE)
    }
}

/// The cluster of the article: the seed's objects and the pods of its Deployments.
pub fn seeded() -> (FakeApi, kube::Client) {
    let (fake, client) = FakeApi::start();
    let mut ip = 10;
    for mut v in seed() {
        if v["kind"] == "Deployment" {
            for p in pods_of(&v, "stable", ip) {
                fake.put(p);
            }
            ip += 10;
            v["status"] = settled_status(&v);
        }
        fake.put(v);
    }
    (fake, client)
}

/// A Prometheus on 127.0.0.1:0 that answers every instant query with `value`.
pub async fn prometheus(value: f64) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = listener.accept().await {
            // Read the whole request head before answering and closing.
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let body = json!({"status": "success", "data": {"resultType": "vector",
                "result": [{"metric": {}, "value": [1.0, value.to_string()]}]}})
            .to_string();
            let resp = format!(
                "HTTP/1.0 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(resp.as_bytes()).await;
        }
    });
    format!("http://{addr}")
}

/// A Rollout whose analysis asks `address` for a success ratio of at least 0.99 every
/// 10 s, and pauses the release on the first failure.
pub fn analysed_rollout(address: &str) -> Value {
    let mut r = rollout();
    r["spec"]["strategy"]["canary"]["analysis"] = json!({
        "interval": "10s", "failureLimit": 0, "onFailure": "pause",
        "metrics": [{"name": "success", "prometheus": {
            "address": address, "query": "istio_success_ratio", "min": 0.99}}],
    });
    r
}

/// The canary pod of mocka the article's second half has (image 2.0, canary lane label).
pub fn canary_pod() -> Value {
    let path = repo().join("crates/lanes-compile/tests/cases/mocka-canary/canary.yaml");
    let canary: Value = serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    pods_of(&canary, "canary", 200).remove(0)
}

/// Deletes the seed's lane group, as `kubectl delete` would.
pub fn remove_lane_group(fake: &FakeApi) {
    fake.remove(
        "istio.alibabacloud.com/v1",
        "ASMSwimLaneGroup",
        "",
        "rollout",
    );
}

/// A release of `a:2` under a Rollout whose Prometheus analysis (at `address`) has
/// just been measured once, 10 s into step 1.
pub async fn analysed_release(address: &str) -> Operator {
    let mut op = Operator::start();
    use Step::*;
    op.steps([
        Apply(workload("a:1")),
        Apply(analysed_rollout(address)),
        Settle,
        Reconcile(0),
        SetImage("a:2"),
        Reconcile(1),
        Settle,
        Reconcile(2),
        Reconcile(13),
    ])
    .await;
    op
}

impl Operator {
    /// Carries out steps in order.
    pub async fn steps(&mut self, steps: impl IntoIterator<Item = Step>) {
        for s in steps {
            self.step(&s).await;
        }
    }
}

/// Polls `f` until it holds, for at most 20 s; fails naming `what` otherwise.
pub async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within 20 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The operator's Lease, if it exists.
pub fn lease(fake: &FakeApi) -> Option<Value> {
    fake.get(
        "coordination.k8s.io/v1",
        "Lease",
        "lanes-system",
        "lanes-operator",
    )
}
