//! The operator against a mocked Kubernetes API server: the lane controller's
//! server-side applies, the rollout controller's requests, 409 handling, leader
//! election and the main loop.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::fake::FakeApi;
use common::*;
use lanes_compile::Flavor;
use lanes_operator::lease::LeaseLock;
use lanes_operator::metrics::Metrics;
use lanes_operator::rollouts::{Context, reconcile_rollout};
use serde_json::{Value, json};

const ISTIO: &str = "networking.istio.io/v1alpha3";

fn golden(file: &str) -> Vec<Value> {
    let path = repo().join("crates/lanes-compile/tests/golden").join(file);
    serde_saphyr::from_multiple(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Kind, namespace, name, labels and spec: what the article shows of an object.
fn shown(v: &Value) -> (String, String, String, Value, Value) {
    (
        v["kind"].as_str().unwrap().to_string(),
        v["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string(),
        v["metadata"]["name"].as_str().unwrap().to_string(),
        v["metadata"]["labels"].clone(),
        v["spec"].clone(),
    )
}

fn generated(fake: &FakeApi) -> Vec<(String, String, String, Value, Value)> {
    let mut out: Vec<_> = ["VirtualService", "DestinationRule"]
        .iter()
        .flat_map(|k| fake.list(ISTIO, k))
        .map(|v| shown(&v))
        .collect();
    out.sort_by(|a, b| (&a.0, &a.2).cmp(&(&b.0, &b.2)));
    out
}

fn applies(fake: &FakeApi) -> Vec<common::fake::Req> {
    fake.requests()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .collect()
}

/// The seed's lane group as the mocked API server holds it.
fn lane_group(fake: &FakeApi) -> Value {
    fake.get(
        "istio.alibabacloud.com/v1",
        "ASMSwimLaneGroup",
        "",
        "rollout",
    )
    .unwrap()
}

#[tokio::test]
async fn the_seed_reconciles_into_the_articles_eight_objects_by_server_side_apply() {
    let (fake, client) = seeded();
    let changes = lanes_operator::lanes::reconcile(&client, Flavor::Asm)
        .await
        .unwrap();
    assert_eq!(changes.applied.len(), 8, "{changes:?}");
    assert!(changes.skipped.is_empty(), "{:?}", changes.skipped);
    let mut want: Vec<_> = golden("article-initial.yaml").iter().map(shown).collect();
    want.sort_by(|a, b| (&a.0, &a.2).cmp(&(&b.0, &b.2)));
    assert_eq!(generated(&fake), want);
    // Every write of a generated object is a forced server-side apply by field manager
    // `lanes`; the one other write is the lane group's status.
    let (writes, status): (Vec<_>, Vec<_>) = fake
        .requests()
        .into_iter()
        .filter(|r| r.method != "GET")
        .partition(|r| !r.path.ends_with("/status"));
    assert_eq!(writes.len(), 8);
    assert_eq!(status.len(), 1, "{status:?}");
    assert_eq!(
        status[0].path,
        "/apis/istio.alibabacloud.com/v1/asmswimlanegroups/rollout/status"
    );
    let group = lane_group(&fake);
    assert_eq!(group["status"]["conditions"][0]["type"], "Ready");
    assert_eq!(group["status"]["conditions"][0]["status"], "True");
    assert_eq!(group["status"]["generated"].as_array().unwrap().len(), 8);
    for r in &writes {
        assert_eq!(r.method, "PATCH", "{r:?}");
        assert_eq!(r.content_type, "application/apply-patch+yaml", "{r:?}");
        assert!(r.query.contains("fieldManager=lanes"), "{r:?}");
        assert!(r.query.contains("force=true"), "{r:?}");
        assert!(
            r.path
                .starts_with("/apis/networking.istio.io/v1alpha3/namespaces/")
        );
    }
    // Nothing changed: a second reconcile writes nothing.
    fake.clear_requests();
    let again = lanes_operator::lanes::reconcile(&client, Flavor::Asm)
        .await
        .unwrap();
    assert_eq!((again.applied.len(), again.unchanged), (0, 8));
    assert!(applies(&fake).is_empty());
    assert!(
        fake.requests().iter().all(|r| r.method == "GET"),
        "nor the group's status"
    );
}

#[tokio::test]
async fn a_lane_that_does_not_validate_leaves_its_group_as_it_stands() {
    let (fake, client) = seeded();
    lanes_operator::lanes::reconcile(&client, Flavor::Asm)
        .await
        .unwrap();
    let before = generated(&fake);
    // An edit the CRD schema lets through but Lanes refuses: a lane selecting no pods.
    let mut lane = fake
        .get("istio.alibabacloud.com/v1", "ASMSwimLane", "", "canary")
        .unwrap();
    lane["spec"]["labelSelector"] = json!({});
    fake.put(lane);
    fake.put(canary_pod());
    let changes = lanes_operator::lanes::reconcile(&client, Flavor::Asm)
        .await
        .unwrap();
    assert_eq!(changes.frozen, ["rollout"]);
    assert!(
        changes.skipped[0].starts_with("ASMSwimLane canary: spec.labelSelector"),
        "{changes:?}"
    );
    assert!(
        changes.applied.is_empty() && changes.deleted.is_empty(),
        "{changes:?}"
    );
    assert_eq!(
        generated(&fake),
        before,
        "nothing vanished, nothing half-changed"
    );
    // The group says what stops it, and so does a Warning Event about it.
    let group = lane_group(&fake);
    let ready = &group["status"]["conditions"][0];
    assert_eq!(
        (&ready["status"], &ready["reason"]),
        (&json!("False"), &json!("Invalid"))
    );
    let message = ready["message"].as_str().unwrap();
    assert!(
        message.starts_with("ASMSwimLane canary: spec.labelSelector"),
        "{message}"
    );
    let events = fake.list("events.k8s.io/v1", "Event");
    let about: Vec<&Value> = events
        .iter()
        .filter(|e| e["regarding"]["kind"] == "ASMSwimLaneGroup")
        .collect();
    assert_eq!(about.len(), 1, "{events:?}");
    assert_eq!(about[0]["type"], "Warning");
    assert_eq!(about[0]["note"], message);
}

#[tokio::test]
async fn the_istio_flavor_rewrites_the_objects_as_plain_istio_runs_them() {
    let (fake, client) = seeded();
    lanes_operator::lanes::reconcile(&client, Flavor::Asm)
        .await
        .unwrap();
    let asm = generated(&fake);
    let changes = lanes_operator::lanes::reconcile(&client, Flavor::Istio)
        .await
        .unwrap();
    let mut want: Vec<_> = golden("seed.istio.yaml")
        .iter()
        .filter(|v| v["kind"] == "VirtualService" || v["kind"] == "DestinationRule")
        .map(shown)
        .collect();
    want.sort_by(|a, b| (&a.0, &a.2).cmp(&(&b.0, &b.2)));
    assert_eq!(want.len(), 8);
    assert_eq!(generated(&fake), want);
    assert_ne!(asm, want, "the flavors differ");
    // Only what differs is written; nothing is deleted (the names are the same).
    let differing = asm.iter().zip(&want).filter(|(a, b)| a != b).count();
    assert_eq!(changes.applied.len(), differing, "{changes:?}");
    assert!(changes.deleted.is_empty());
}

/// What the lane controller wrote in the `gateway-api` flavor: HTTPRoutes and the
/// Services it labels as generated (the seed's own Services are not).
fn generated_gateway_api(fake: &FakeApi) -> Vec<(String, String, String, Value, Value)> {
    let mut out: Vec<_> = fake
        .list("gateway.networking.k8s.io/v1", "HTTPRoute")
        .into_iter()
        .chain(fake.list("v1", "Service"))
        .filter(|v| v["metadata"]["labels"]["asm-system"] == "true")
        .map(|v| shown(&v))
        .collect();
    out.sort_by(|a, b| (&a.0, &a.2).cmp(&(&b.0, &b.2)));
    out
}

#[tokio::test]
async fn the_gateway_api_flavor_is_written_by_server_side_apply_and_owned_by_the_group() {
    let (fake, client) = seeded();
    let changes = lanes_operator::lanes::reconcile(&client, Flavor::GatewayApi)
        .await
        .unwrap();
    let mut want: Vec<_> = golden("seed.gateway-api.yaml")
        .iter()
        .filter(|v| v["kind"] == "HTTPRoute" || v["kind"] == "Service")
        .map(shown)
        .collect();
    want.sort_by(|a, b| (&a.0, &a.2).cmp(&(&b.0, &b.2)));
    assert_eq!(want.len(), 8, "5 HTTPRoutes, 3 lane Services");
    assert_eq!(generated_gateway_api(&fake), want);
    assert_eq!(changes.applied.len(), 8, "{changes:?}");
    assert!(fake.list(ISTIO, "VirtualService").is_empty());
    let writes: Vec<_> = applies(&fake)
        .into_iter()
        .filter(|r| !r.path.ends_with("/status"))
        .collect();
    assert_eq!(writes.len(), 8);
    let (routes, services): (Vec<_>, Vec<_>) = writes.iter().partition(|r| {
        r.path
            .starts_with("/apis/gateway.networking.k8s.io/v1/namespaces/default/httproutes/")
    });
    assert_eq!(routes.len(), 5, "{writes:?}");
    assert!(
        services
            .iter()
            .all(|r| r.path.starts_with("/api/v1/namespaces/default/services/")),
        "{services:?}"
    );
    for r in &writes {
        assert_eq!(r.content_type, "application/apply-patch+yaml", "{r:?}");
        assert!(r.query.contains("fieldManager=lanes") && r.query.contains("force=true"));
    }
    // Each is owned by the lane group, so it goes with it.
    let uid = lane_group(&fake)["metadata"]["uid"].clone();
    let route = fake
        .get(
            "gateway.networking.k8s.io/v1",
            "HTTPRoute",
            "default",
            "trafficlabel-route-rollout-mocka-8000",
        )
        .unwrap();
    assert_eq!(route["metadata"]["ownerReferences"][0]["uid"], uid);
    assert_eq!(route["spec"]["parentRefs"][0]["kind"], "Service");
    // Nothing changed: a second reconcile writes nothing.
    fake.clear_requests();
    let again = lanes_operator::lanes::reconcile(&client, Flavor::GatewayApi)
        .await
        .unwrap();
    assert_eq!((again.applied.len(), again.unchanged), (0, 8));
    assert!(applies(&fake).is_empty(), "{:?}", applies(&fake));
}

#[tokio::test]
async fn a_new_canary_pod_adds_the_subset_and_a_removed_group_deletes_its_objects() {
    let (fake, client) = seeded();
    lanes_operator::lanes::reconcile(&client, Flavor::Asm)
        .await
        .unwrap();
    fake.clear_requests();
    fake.put(canary_pod());
    let changes = lanes_operator::lanes::reconcile(&client, Flavor::Asm)
        .await
        .unwrap();
    assert_eq!(changes.applied.len(), 1, "{changes:?}");
    assert!(
        changes.applied[0].starts_with("DestinationRule ")
            && changes.applied[0].ends_with("/trafficlabel-dr-rollout-default-mocka"),
        "{changes:?}"
    );
    let want: Vec<_> = golden("article-mocka-canary-drs.yaml")
        .into_iter()
        .filter(|v| v["metadata"]["name"] == "trafficlabel-dr-rollout-default-mocka")
        .collect();
    let ns = want[0]["metadata"]["namespace"]
        .as_str()
        .unwrap()
        .to_string();
    let got = fake
        .get(
            ISTIO,
            "DestinationRule",
            &ns,
            "trafficlabel-dr-rollout-default-mocka",
        )
        .unwrap();
    assert_eq!(got["spec"], want[0]["spec"]);
    let subsets: Vec<&str> = got["spec"]["subsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(subsets, ["base", "canary"]);
    // An object someone else wrote is never touched; the group's go with the group.
    fake.put(json!({"apiVersion": ISTIO, "kind": "VirtualService",
                    "metadata": {"name": "theirs", "namespace": "default"},
                    "spec": {"hosts": ["x"]}}));
    remove_lane_group(&fake);
    let changes = lanes_operator::lanes::reconcile(&client, Flavor::Asm)
        .await
        .unwrap();
    assert_eq!(changes.deleted.len(), 8, "{changes:?}");
    let left = generated(&fake);
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].2, "theirs");
}

async fn release_started() -> Operator {
    let mut op = Operator::start();
    for s in [
        Step::Apply(workload("a:1")),
        Step::Apply(rollout()),
        Step::Settle,
        Step::Reconcile(0),
    ] {
        op.step(&s).await;
    }
    op
}

fn deployment(op: &Operator, name: &str) -> Option<Value> {
    op.fake.get("apps/v1", "Deployment", NS, name)
}

#[tokio::test]
async fn a_release_start_pauses_the_deployment_and_creates_an_owned_canary() {
    let mut op = release_started().await;
    let rest = deployment(&op, WORKLOAD).unwrap();
    assert_eq!(
        rest["spec"].get("paused"),
        None,
        "an ordinary Deployment between releases"
    );
    op.fake.clear_requests();
    op.step(&Step::SetImage("a:2")).await;
    op.step(&Step::Reconcile(1)).await;
    let w = deployment(&op, WORKLOAD).unwrap();
    assert_eq!(w["spec"]["paused"], true);
    let ann = &w["metadata"]["annotations"];
    let progressing: Value =
        serde_json::from_str(ann[lanes_rollout::IN_PROGRESSING].as_str().unwrap()).unwrap();
    assert_eq!(progressing["rolloutName"], ROLLOUT);
    let stable: Value =
        serde_json::from_str(ann[lanes_rollout::STABLE_TEMPLATE].as_str().unwrap()).unwrap();
    assert_eq!(stable["spec"]["containers"][0]["image"], "a:1");
    // The pods never left the stable version: the admission paused the Deployment in
    // the very write of the new template, and no request unpaused it.
    assert!(
        !op.fake.requests().iter().any(|r| r
            .body
            .as_ref()
            .is_some_and(|b| b["spec"]["paused"] == false)),
        "{:?}",
        op.fake.requests()
    );
    let canaries: Vec<Value> = op
        .fake
        .list("apps/v1", "Deployment")
        .into_iter()
        .filter(|d| d["metadata"]["name"] != WORKLOAD)
        .collect();
    assert_eq!(canaries.len(), 1);
    let c = &canaries[0];
    let rollout = op.rollout().await.unwrap();
    let owner = &c["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "Rollout");
    assert_eq!(owner["apiVersion"], "rollouts.kruise.io/v1beta1");
    assert_eq!(owner["name"], ROLLOUT);
    assert_eq!(owner["uid"], rollout["metadata"]["uid"]);
    assert_eq!(owner["controller"], true);
    assert_eq!(
        c["metadata"]["labels"][lanes_rollout::CANARY_LABEL],
        WORKLOAD
    );
    assert_eq!(c["spec"]["replicas"], 1);
    assert_eq!(
        c["spec"]["template"]["metadata"]["labels"]["ASM_TRAFFIC_TAG"],
        "canary"
    );
    assert_eq!(
        c["spec"]["template"]["spec"]["containers"][0]["image"],
        "a:2"
    );
    let create = op
        .fake
        .requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .unwrap();
    assert!(create.query.contains("fieldManager=lanes"), "{create:?}");
    assert_eq!(
        rollout["status"]["canaryStatus"]["currentStepState"],
        "StepUpgrade"
    );
}

#[tokio::test]
async fn approve_then_finalise_deletes_the_canary() {
    let mut op = release_started().await;
    for s in [
        Step::SetImage("a:2"),
        Step::Reconcile(1),
        Step::Settle,
        Step::Reconcile(2),
    ] {
        op.step(&s).await;
    }
    let canary = canary_name(&op);
    assert_eq!(
        op.rollout().await.unwrap()["status"]["canaryStatus"]["currentStepState"],
        "StepPaused"
    );
    op.step(&Step::Approve).await;
    for s in [
        Step::Reconcile(3),
        Step::Settle,
        Step::Reconcile(4),
        Step::Reconcile(40),
    ] {
        op.step(&s).await;
    }
    let r = op.rollout().await.unwrap();
    assert_eq!(r["status"]["canaryStatus"]["currentStepState"], "Completed");
    assert_eq!(deployment(&op, WORKLOAD).unwrap()["spec"]["paused"], false);
    op.fake.clear_requests();
    op.step(&Step::Settle).await;
    op.step(&Step::Reconcile(41)).await;
    assert!(deployment(&op, &canary).is_none());
    let deleted: Vec<_> = op
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "DELETE")
        .map(|r| r.path)
        .collect();
    assert_eq!(
        deleted,
        [format!(
            "/apis/apps/v1/namespaces/default/deployments/{canary}"
        )]
    );
    let r = op.rollout().await.unwrap();
    assert_eq!(r["status"]["phase"], "Healthy");
    assert_eq!(r["status"]["message"], "workload deployment is completed");
    // An ordinary Deployment again, at the new template, unmarked.
    let w = deployment(&op, WORKLOAD).unwrap();
    assert_eq!(w["spec"]["paused"], false);
    assert!(
        w["metadata"]["annotations"]
            .get(lanes_rollout::STABLE_TEMPLATE)
            .is_none()
    );
}

fn canary_name(op: &Operator) -> String {
    op.fake
        .list("apps/v1", "Deployment")
        .into_iter()
        .map(|d| d["metadata"]["name"].as_str().unwrap().to_string())
        .find(|n| n != WORKLOAD)
        .unwrap()
}

#[tokio::test]
async fn a_409_conflict_is_retried_on_fresh_reads() {
    let mut op = release_started().await;
    op.step(&Step::SetImage("a:2")).await;
    op.fake
        .fail_next("PUT", "/rollouts/rollouts-mocka/status", 409, "Conflict");
    let now = t0() + jiff::SignedDuration::from_secs(1);
    let out = reconcile_rollout(&Context::new(op.client.clone()), NS, ROLLOUT, now)
        .await
        .unwrap();
    assert_eq!(out.conflicts, 1);
    assert!(out.status_written);
    let r = op.rollout().await.unwrap();
    assert_eq!(
        r["status"]["canaryStatus"]["currentStepState"],
        "StepUpgrade"
    );
    // Each attempt read the Rollout afresh; the canary was created once.
    let reads = op
        .fake
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/rollouts/rollouts-mocka"))
        .count();
    assert!(reads >= 2, "{reads}");
    assert_eq!(op.fake.list("apps/v1", "Deployment").len(), 2);

    // An approval that lands between the controller's read and its status write is not
    // lost: the write is refused (stale resourceVersion) and the reconcile redone.
    op.step(&Step::Settle).await;
    op.step(&Step::Reconcile(2)).await;
    let stale = op.rollout().await.unwrap();
    op.step(&Step::Approve).await;
    let mut overwrite = stale.clone();
    overwrite["status"]["message"] = json!("a stale writer");
    let api: kube::Api<lanes_model::rollout::Rollout> =
        kube::Api::namespaced(op.client.clone(), NS);
    let stale_write = api
        .replace_status(
            ROLLOUT,
            &Default::default(),
            &serde_json::from_value(overwrite).unwrap(),
        )
        .await;
    assert!(
        matches!(&stale_write, Err(kube::Error::Api(s)) if s.code == 409),
        "{stale_write:?}"
    );
    op.step(&Step::Reconcile(3)).await;
    let r = op.rollout().await.unwrap();
    assert_eq!(r["status"]["canaryStatus"]["currentStepIndex"], 2);

    // Conflicts that never stop are reported, not looped on forever.
    for _ in 0..lanes_operator::rollouts::CONFLICT_ATTEMPTS {
        op.fake
            .fail_next("GET", "/rollouts/rollouts-mocka", 409, "Conflict");
    }
    let err = reconcile_rollout(&Context::new(op.client.clone()), NS, ROLLOUT, now)
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err}");
    assert!(
        err.to_string()
            .contains("get Rollout default/rollouts-mocka"),
        "{err}"
    );
}

#[tokio::test]
async fn a_canary_never_ready_is_rolled_back_at_the_progress_deadline() {
    let mut op = Operator::start();
    let mut r = rollout();
    r["spec"]["strategy"]["canary"]["progressDeadlineSeconds"] = json!(60);
    for s in [
        Step::Apply(workload("a:1")),
        Step::Apply(r),
        Step::Settle,
        Step::Reconcile(0),
        Step::SetImage("a:2"),
        Step::Reconcile(1),
        Step::Reconcile(62),
    ] {
        op.step(&s).await;
    }
    let r = op.rollout().await.unwrap();
    assert!(
        r["status"]["message"]
            .as_str()
            .unwrap()
            .starts_with("rolled back:"),
        "{r:#}"
    );
    // The stable template came back whole, by replace.
    let w = deployment(&op, WORKLOAD).unwrap();
    assert_eq!(
        w["spec"]["template"]["spec"]["containers"][0]["image"],
        "a:1"
    );
    assert!(
        op.fake
            .requests()
            .iter()
            .any(|r| r.method == "PUT" && r.path.ends_with("/deployments/mocka-v1"))
    );
    op.step(&Step::Reconcile(63)).await;
    let r = op.rollout().await.unwrap();
    assert_eq!(r["status"]["phase"], "Healthy");
    assert_eq!(op.fake.list("apps/v1", "Deployment").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_prometheus_analysis_pauses_the_rollout() {
    let op = analysed_release(&prometheus(0.5).await).await;
    let r = op.rollout().await.unwrap();
    assert_eq!(r["spec"]["strategy"]["paused"], true, "{r:#}");
    let message = r["status"]["message"].as_str().unwrap();
    assert!(message.starts_with("paused: analysis failed"), "{message}");
    assert!(message.contains("istio_success_ratio = 0.5"), "{message}");
}

#[tokio::test]
async fn one_replica_leads_until_its_lease_expires_or_is_released() {
    let (fake, client) = FakeApi::start();
    let d = Duration::from_secs(15);
    let a = LeaseLock::new(client.clone(), "lanes-system", "lanes-operator", "a", d);
    let b = LeaseLock::new(client.clone(), "lanes-system", "lanes-operator", "b", d);
    let t = t0();
    let secs = jiff::SignedDuration::from_secs;
    assert!(a.try_acquire(t).await.unwrap());
    assert!(!b.try_acquire(t).await.unwrap());
    assert!(a.try_acquire(t + secs(5)).await.unwrap(), "renewal");
    // b times the lease by its own clock from when it saw it change: renewed (changed)
    // when b looks at 19 s, so valid until 34 s whatever the clocks say.
    assert!(!b.try_acquire(t + secs(19)).await.unwrap());
    assert!(!b.try_acquire(t + secs(33)).await.unwrap());
    assert!(
        b.try_acquire(t + secs(34)).await.unwrap(),
        "unchanged for a whole duration: taken over"
    );
    let taken = lease(&fake).unwrap();
    assert_eq!(taken["spec"]["holderIdentity"], "b");
    assert_eq!(taken["spec"]["leaseTransitions"], 1);
    assert!(!a.try_acquire(t + secs(35)).await.unwrap());
    b.release().await.unwrap();
    assert!(
        a.try_acquire(t + secs(36)).await.unwrap(),
        "released: taken at once"
    );
    // Two replicas racing for a free lease: the write with the stale resourceVersion
    // loses.
    b.release().await.unwrap();
    a.release().await.unwrap();
    fake.fail_next("PUT", "/leases/lanes-operator", 409, "Conflict");
    assert!(!b.try_acquire(t + secs(40)).await.unwrap());
    assert!(b.try_acquire(t + secs(41)).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_leads_reconciles_and_shuts_down_cleanly() {
    let (fake, client) = seeded();
    let metrics = Arc::new(Metrics::default());
    let (tx, rx) = tokio::sync::watch::channel(false);
    let config = lanes_operator::Config {
        identity: "test-replica".into(),
        lease_duration: Duration::from_secs(3),
        ..Default::default()
    };
    let task = tokio::spawn(lanes_operator::run(
        lanes_operator::rollouts::Context::new(client),
        config,
        metrics.clone(),
        rx,
    ));
    // Both controllers run: the lane controller generates, the rollout controller
    // reports the seed's Rollouts.
    until("the operator reconciles", || {
        let vs = fake.list(ISTIO, "VirtualService").len();
        let reported = fake
            .list("rollouts.kruise.io/v1beta1", "Rollout")
            .iter()
            .all(|r| r["status"]["phase"].is_string());
        vs == 5 && reported
    })
    .await;
    let held = lease(&fake).unwrap();
    assert_eq!(held["spec"]["holderIdentity"], "test-replica");
    // The round's metrics are recorded when it ends, after its last write (the lane
    // groups' status): wait for the round, then read them.
    until("the lane controller's round is counted", || {
        metrics
            .encode()
            .contains(r#"lanes_operator_reconciles_total{controller="lanes",result="ok"}"#)
    })
    .await;
    let text = metrics.encode();
    assert!(
        text.lines().any(|l| l == "lanes_operator_leader 1"),
        "{text}"
    );
    assert!(
        text.contains(r#"lanes_operator_reconcile_duration_seconds_count{controller="lanes"}"#),
        "{text}"
    );
    assert!(
        text.contains(r#"lanes_operator_reconciles_total{controller="lanes",result="ok"}"#),
        "{text}"
    );
    // Each Rollout's move to Healthy is an Event on it.
    until("an Event per Rollout", || {
        fake.list("events.k8s.io/v1", "Event").len() >= 3
    })
    .await;
    for e in fake.list("events.k8s.io/v1", "Event") {
        assert_eq!(e["regarding"]["kind"], "Rollout", "{e}");
        assert_eq!(e["reportingController"], "lanes.dev/operator");
        assert_eq!(e["reportingInstance"], "test-replica");
        assert_eq!(
            (e["type"].as_str(), e["reason"].as_str()),
            (Some("Normal"), Some("Healthy")),
            "{e}"
        );
        assert!(e["eventTime"].is_string());
    }
    // Changes arrive through the watches: a canary pod adds its subset; a generated
    // object someone deletes is put back.
    fake.put(canary_pod());
    let dr = |fake: &FakeApi| {
        fake.list(ISTIO, "DestinationRule")
            .into_iter()
            .find(|d| d["metadata"]["name"] == "trafficlabel-dr-rollout-default-mocka")
    };
    let ns = dr(&fake).unwrap()["metadata"]["namespace"]
        .as_str()
        .unwrap()
        .to_string();
    until("the canary subset comes", || {
        dr(&fake).unwrap()["spec"]["subsets"]
            .as_array()
            .is_some_and(|s| s.len() == 2)
    })
    .await;
    fake.remove(
        ISTIO,
        "DestinationRule",
        &ns,
        "trafficlabel-dr-rollout-default-mocka",
    );
    until("the deleted DestinationRule comes back", || {
        dr(&fake).is_some()
    })
    .await;
    // A release through the watch caches: a new image (marked by the admission, as the
    // webhook marks it on a cluster) gets a canary.
    release_mockb(&fake).await;
    // Graceful shutdown: controllers stop, the lease is given up.
    stop(tx, task).await;
    let given_up = lease(&fake).unwrap();
    assert!(
        given_up["spec"].get("holderIdentity").is_none(),
        "{given_up}"
    );
    assert!(
        metrics
            .encode()
            .lines()
            .any(|l| l == "lanes_operator_leader 0")
    );
    // Watches were opened on every kind the controllers read.
    let watched: std::collections::BTreeSet<String> = fake
        .requests()
        .into_iter()
        .filter(|r| r.query.contains("watch=true"))
        .flat_map(|r| r.rbac())
        .map(|(resource, _)| resource)
        .collect();
    for kind in [
        "services",
        "pods",
        "asmswimlanegroups",
        "asmswimlanes",
        "virtualservices",
        "destinationrules",
        "rollouts",
        "deployments",
    ] {
        assert!(watched.contains(kind), "{kind} not watched: {watched:?}");
    }
}

/// The operator's loop as `lanes up` runs it (no leader election), until the sender
/// says stop.
fn unelected(
    client: kube::Client,
) -> (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let config = lanes_operator::Config {
        leader_election: false,
        ..Default::default()
    };
    let task = tokio::spawn(lanes_operator::run(
        Context::new(client),
        config,
        Arc::new(Metrics::default()),
        rx,
    ));
    (tx, task)
}

/// Tells the operator's loop to stop, and waits (at most 10 s) until it has.
async fn stop(tx: tokio::sync::watch::Sender<bool>, task: tokio::task::JoinHandle<()>) {
    tx.send_replace(true);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
}

/// Releases mockb's new image `b:2` (its Rollout reported first) and waits for the
/// canary Deployment.
async fn release_mockb(fake: &FakeApi) {
    until("mockb's Rollout is reported", || {
        fake.get(
            "rollouts.kruise.io/v1beta1",
            "Rollout",
            "default",
            "rollouts-mockb",
        )
        .is_some_and(|r| r["status"]["phase"] == "Healthy")
    })
    .await;
    let image = json!({"spec": {"template": {"spec": {"containers": [{"name": "default", "image": "b:2"}]}}}});
    fake.merge(
        "apps/v1",
        "Deployment",
        "default",
        "mockb-v1",
        &image,
        false,
    );
    until("a canary Deployment for mockb", || {
        fake.list("apps/v1", "Deployment").len() == 4
    })
    .await;
}

/// The objects generated for lane group `group`.
fn generated_for(fake: &FakeApi, group: &str) -> Vec<Value> {
    ["VirtualService", "DestinationRule"]
        .iter()
        .flat_map(|k| fake.list(ISTIO, k))
        .filter(|v| v["metadata"]["labels"]["swimlane-group"] == group)
        .collect()
}

#[tokio::test]
async fn the_lane_controller_looks_at_one_group_per_change_and_sweeps_a_deleted_groups_objects() {
    let (fake, client) = seeded();
    // A second group over the same gateway and services, with a lane of its own.
    let mut second = lane_group(&fake);
    second["metadata"] = json!({"name": "second"});
    fake.put(second);
    let mut lane = fake
        .get("istio.alibabacloud.com/v1", "ASMSwimLane", "", "base")
        .unwrap();
    lane["metadata"] = json!({"name": "second-base", "labels": {"swimlane-group": "second"}});
    fake.put(lane);
    let (tx, task) = unelected(client);
    until("both groups are generated", || {
        !generated_for(&fake, "second").is_empty() && generated_for(&fake, "rollout").len() == 8
    })
    .await;
    // Each generated object is owned by its group, so it goes with it.
    for group in ["rollout", "second"] {
        let uid = fake
            .get("istio.alibabacloud.com/v1", "ASMSwimLaneGroup", "", group)
            .unwrap()["metadata"]["uid"]
            .clone();
        for v in generated_for(&fake, group) {
            let owner = &v["metadata"]["ownerReferences"][0];
            assert_eq!(
                (
                    &owner["kind"],
                    &owner["name"],
                    &owner["uid"],
                    &owner["controller"]
                ),
                (
                    &json!("ASMSwimLaneGroup"),
                    &json!(group),
                    &uid,
                    &json!(true)
                ),
                "{v}"
            );
        }
    }
    // Someone edits an object generated for `rollout`: the edit is undone, compared
    // with the generated objects' watch caches (no LIST), and nothing of `second` is
    // written.
    tokio::time::sleep(Duration::from_millis(500)).await;
    fake.clear_requests();
    let mut vs = generated_for(&fake, "rollout")
        .into_iter()
        .find(|v| v["kind"] == "VirtualService")
        .unwrap();
    let name = vs["metadata"]["name"].as_str().unwrap().to_string();
    let ns = vs["metadata"]["namespace"].as_str().unwrap().to_string();
    let spec = vs["spec"].clone();
    vs["spec"]["hosts"] = json!(["edited"]);
    fake.put(vs);
    until("the edit is undone", || {
        fake.get(ISTIO, "VirtualService", &ns, &name)
            .is_some_and(|v| v["spec"] == spec)
    })
    .await;
    let listed = |group: &str| {
        fake.requests()
            .iter()
            .filter(|r| r.method == "GET" && r.query.contains(&format!("swimlane-group%3D{group}")))
            .count()
    };
    let applied = |group: &str| {
        fake.requests()
            .iter()
            .filter(|r| r.method == "PATCH" && r.path.contains(&format!("-{group}-")))
            .count()
    };
    assert!(applied("rollout") >= 1, "{:?}", fake.requests());
    assert_eq!(applied("second"), 0, "{:?}", fake.requests());
    assert_eq!(
        listed("rollout") + listed("second"),
        0,
        "{:?}",
        fake.requests()
    );
    // A deleted group's objects are deleted (here by the sweep: the mocked API server
    // has no garbage collector); the other group's stay.
    fake.remove(
        "istio.alibabacloud.com/v1",
        "ASMSwimLaneGroup",
        "",
        "second",
    );
    until("the deleted group's objects are gone", || {
        generated_for(&fake, "second").is_empty()
    })
    .await;
    assert_eq!(generated_for(&fake, "rollout").len(), 8);
    stop(tx, task).await;
}

#[tokio::test]
async fn a_deleted_rollout_stays_until_its_release_is_stood_down() {
    let (fake, client) = seeded();
    let (tx, task) = unelected(client);
    let rollout = |fake: &FakeApi| {
        fake.get(
            "rollouts.kruise.io/v1beta1",
            "Rollout",
            "default",
            "rollouts-mockb",
        )
    };
    // Every Rollout carries Kruise's finalizer.
    until("the finalizer is added", || {
        fake.list("rollouts.kruise.io/v1beta1", "Rollout")
            .iter()
            .all(|r| r["metadata"]["finalizers"] == json!(["rollouts.kruise.io/rollout"]))
    })
    .await;
    release_mockb(&fake).await;
    let workload = || {
        fake.get("apps/v1", "Deployment", "default", "mockb-v1")
            .unwrap()
    };
    assert!(
        workload()["metadata"]["annotations"][lanes_rollout::STABLE_TEMPLATE].is_string(),
        "marked mid-release"
    );
    // Deleted mid-release: marked, stood down, then gone.
    fake.clear_requests();
    fake.remove(
        "rollouts.kruise.io/v1beta1",
        "Rollout",
        "default",
        "rollouts-mockb",
    );
    until("the Rollout goes once its release is stood down", || {
        rollout(&fake).is_none()
    })
    .await;
    assert_eq!(
        fake.list("apps/v1", "Deployment").len(),
        3,
        "the canary is deleted"
    );
    let w = workload();
    assert!(
        w["metadata"]["annotations"]
            .get(lanes_rollout::STABLE_TEMPLATE)
            .is_none(),
        "{w}"
    );
    assert_ne!(w["spec"]["paused"], true, "{w}");
    let unfinalised: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| {
            r.content_type == "application/json-patch+json" && r.path.ends_with("/rollouts-mockb")
        })
        .collect();
    assert_eq!(unfinalised.len(), 1, "{unfinalised:?}");
    assert_eq!(unfinalised[0].body.as_ref().unwrap()[1]["op"], "remove");
    // The workload was let go before the finalizer came off.
    let log = fake.requests();
    let at = |f: &dyn Fn(&common::fake::Req) -> bool| log.iter().position(f).unwrap();
    let let_go = at(&|r| {
        r.method == "PATCH"
            && r.path.ends_with("/deployments/mockb-v1")
            && r.body
                .as_ref()
                .is_some_and(|b| b["spec"]["paused"] == false)
    });
    let released = at(&|r| r.content_type == "application/json-patch+json");
    assert!(let_go < released, "{log:?}");
    // The other Rollouts are untouched and keep their finalizer.
    assert!(
        fake.get(
            "rollouts.kruise.io/v1beta1",
            "Rollout",
            "default",
            "rollouts-mocka"
        )
        .is_some_and(|r| r["metadata"]["finalizers"] == json!(["rollouts.kruise.io/rollout"]))
    );
    stop(tx, task).await;
}

#[tokio::test]
async fn transitions_are_reported_once_and_failures_as_warnings() {
    let mut op = Operator::start();
    let mut r = rollout();
    r["spec"]["strategy"]["canary"]["progressDeadlineSeconds"] = json!(60);
    op.steps([
        Step::Apply(workload("a:1")),
        Step::Apply(r),
        Step::Settle,
        Step::Reconcile(0),
        Step::SetImage("a:2"),
    ])
    .await;
    let at = |s: i64| t0() + jiff::SignedDuration::from_secs(s);
    let o = reconcile_rollout(&Context::new(op.client.clone()), NS, ROLLOUT, at(1))
        .await
        .unwrap();
    let t = o.transition.unwrap();
    assert_eq!((t.reason.as_str(), t.warning), ("StepUpgrade", false));
    assert_eq!(
        t.uid,
        op.rollout().await.unwrap()["metadata"]["uid"]
            .as_str()
            .unwrap()
    );
    // Nothing moved: nothing to report.
    let o = reconcile_rollout(&Context::new(op.client.clone()), NS, ROLLOUT, at(2))
        .await
        .unwrap();
    assert_eq!(o.transition, None);
    // The canary never gets ready: rolled back, a warning.
    let o = reconcile_rollout(&Context::new(op.client.clone()), NS, ROLLOUT, at(62))
        .await
        .unwrap();
    let t = o.transition.unwrap();
    assert!(t.warning, "{t:?}");
    assert_eq!(t.reason, "RolledBack");
    assert!(t.note.starts_with("rolled back:"), "{t:?}");
    // Back on the stable template: healthy, still saying why.
    let o = reconcile_rollout(&Context::new(op.client.clone()), NS, ROLLOUT, at(63))
        .await
        .unwrap();
    let t = o.transition.unwrap();
    assert_eq!((t.reason.as_str(), t.warning), ("Healthy", true), "{t:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_loses_the_lease_stops_its_controllers() {
    let (fake, client) = seeded();
    let metrics = Arc::new(Metrics::default());
    let (tx, rx) = tokio::sync::watch::channel(false);
    let config = lanes_operator::Config {
        identity: "first".into(),
        // Long enough that it cannot take the lease back before the test ends: the
        // other holder's lease must be seen unchanged for 6 s first.
        lease_duration: Duration::from_secs(6),
        ..Default::default()
    };
    let task = tokio::spawn(lanes_operator::run(
        lanes_operator::rollouts::Context::new(client),
        config,
        metrics.clone(),
        rx,
    ));
    until("it leads", || {
        metrics
            .encode()
            .lines()
            .any(|l| l == "lanes_operator_leader 1")
    })
    .await;
    // Another replica holds the lease now (as after a partition).
    let now = jiff::Timestamp::now().to_string();
    fake.merge(
        "coordination.k8s.io/v1",
        "Lease",
        "lanes-system",
        "lanes-operator",
        &json!({"spec": {"holderIdentity": "second", "renewTime": now}}),
        false,
    );
    until("it stands by", || {
        metrics
            .encode()
            .lines()
            .any(|l| l == "lanes_operator_leader 0")
    })
    .await;
    // Standing by, it writes nothing: a deleted generated object stays deleted.
    let dr = fake.list(ISTIO, "DestinationRule").remove(0);
    let (ns, name) = (
        dr["metadata"]["namespace"].as_str().unwrap(),
        dr["metadata"]["name"].as_str().unwrap(),
    );
    fake.remove(ISTIO, "DestinationRule", ns, name);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(fake.get(ISTIO, "DestinationRule", ns, name).is_none());
    assert_eq!(lease(&fake).unwrap()["spec"]["holderIdentity"], "second");
    stop(tx, task).await;
    // Shutting down does not give away a lease it does not hold.
    assert_eq!(lease(&fake).unwrap()["spec"]["holderIdentity"], "second");
}

/// Dropped watches and failing reads: the watches re-list and the reconciles back off
/// and retry, and a release started meanwhile goes ahead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controllers_go_on_through_dropped_watches_and_failed_reads() {
    let (fake, client) = seeded();
    let (tx, task) = unelected(client);
    let healthy = |fake: &FakeApi| {
        fake.list("rollouts.kruise.io/v1beta1", "Rollout")
            .iter()
            .all(|r| r["status"]["phase"] == "Healthy")
    };
    until("the seed's Rollouts are healthy", || healthy(&fake)).await;
    // The next requests for Deployments and Rollouts fail: watches re-established
    // meanwhile end at once, and reads in reconciles fail.
    for _ in 0..3 {
        fake.fail_next("GET", "/deployments", 500, "InternalError");
        fake.fail_next("GET", "/rollouts", 500, "InternalError");
        fake.fail_next("GET", "/deployments/mocka-v1", 504, "Timeout");
    }
    let image = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "default", "image": "registry.cn-beijing.aliyuncs.com/aliacs-app-catalog/go-http-sample:2.0"}]}}}});
    fake.merge(
        "apps/v1",
        "Deployment",
        "default",
        "mocka-v1",
        &image,
        false,
    );
    until("every injected fault is met", || fake.pending_faults() == 0).await;
    until("the release creates its canary", || {
        fake.list("apps/v1", "Deployment")
            .iter()
            .any(|d| d["metadata"]["labels"]["rollouts.kruise.io/canary-deployment"] == "mocka-v1")
    })
    .await;
    until("the Rollout reports the release", || {
        fake.get(
            "rollouts.kruise.io/v1beta1",
            "Rollout",
            "default",
            "rollouts-mocka",
        )
        .is_some_and(|r| r["status"]["phase"] == "Progressing")
    })
    .await;
    tx.send_replace(true);
    tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .expect("the operator stops")
        .unwrap();
}
