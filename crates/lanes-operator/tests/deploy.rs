//! `deploy/`: every manifest parses as its Kubernetes type, and the RBAC rules grant
//! exactly the requests the controllers make — recorded from the mocked API server while
//! the operator runs every path it has (lane writes and deletes, a whole release, a
//! rollback, an analysis pause, an orphaned release, leader election, watches).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::fake::{FakeApi, Req};
use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use lanes_compile::Flavor;
use serde_json::{Value, json};

fn manifests() -> Vec<(String, Value)> {
    let dir = repo().join("deploy");
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let docs: Vec<Value> =
            serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        for d in docs {
            out.push((f.file_name().unwrap().to_string_lossy().to_string(), d));
        }
    }
    out
}

#[test]
fn every_manifest_in_deploy_parses_as_its_kubernetes_type() {
    let docs = manifests();
    let mut kinds = BTreeSet::new();
    for (file, d) in &docs {
        let kind = d["kind"].as_str().unwrap_or_default().to_string();
        let ok = match kind.as_str() {
            "Namespace" => serde_json::from_value::<Namespace>(d.clone()).is_ok(),
            "ServiceAccount" => serde_json::from_value::<ServiceAccount>(d.clone()).is_ok(),
            "ClusterRole" => serde_json::from_value::<ClusterRole>(d.clone()).is_ok(),
            "ClusterRoleBinding" => serde_json::from_value::<ClusterRoleBinding>(d.clone()).is_ok(),
            "Role" => serde_json::from_value::<Role>(d.clone()).is_ok(),
            "RoleBinding" => serde_json::from_value::<RoleBinding>(d.clone()).is_ok(),
            "Deployment" => serde_json::from_value::<Deployment>(d.clone()).is_ok(),
            "Service" => {
                serde_json::from_value::<k8s_openapi::api::core::v1::Service>(d.clone()).is_ok()
            }
            "MutatingWebhookConfiguration" => serde_json::from_value::<
                k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration,
            >(d.clone())
            .is_ok(),
            "ValidatingWebhookConfiguration" => serde_json::from_value::<
                k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration,
            >(d.clone())
            .is_ok(),
            "CustomResourceDefinition" => {
                serde_json::from_value::<CustomResourceDefinition>(d.clone()).is_ok()
            }
            other => panic!("{file}: unexpected kind {other:?}"),
        };
        assert!(ok, "{file}: {kind} does not parse");
        kinds.insert(kind);
    }
    for k in [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
        "CustomResourceDefinition",
        "Service",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        assert!(kinds.contains(k), "deploy/ has no {k}");
    }
    // The operator runs as the ServiceAccount the bindings name, in their namespace.
    let d: Deployment = docs
        .iter()
        .find(|(_, d)| d["kind"] == "Deployment")
        .map(|(_, d)| serde_json::from_value(d.clone()).unwrap())
        .unwrap();
    let spec = d.spec.unwrap().template.spec.unwrap();
    assert_eq!(spec.service_account_name.as_deref(), Some("lanes-operator"));
    // The webhook: the API server calls the path the operator serves, on the Service
    // that reaches the container's webhook port, which serves the mounted certificate.
    let find = |kind: &str| {
        docs.iter()
            .find(|(_, d)| d["kind"] == kind)
            .unwrap()
            .1
            .clone()
    };
    let rollouts = find("ValidatingWebhookConfiguration");
    let client = &rollouts["webhooks"][0]["clientConfig"]["service"];
    assert_eq!(client["path"], lanes_operator::webhook::ROLLOUT_PATH);
    let hook = find("MutatingWebhookConfiguration");
    let client = &hook["webhooks"][0]["clientConfig"]["service"];
    assert_eq!(client["path"], lanes_operator::webhook::PATH);
    let svc = find("Service");
    assert_eq!(client["name"], svc["metadata"]["name"]);
    assert_eq!(client["port"], svc["spec"]["ports"][0]["port"]);
    let container = &spec.containers[0];
    let target = svc["spec"]["ports"][0]["targetPort"].as_str().unwrap();
    assert!(
        container
            .ports
            .iter()
            .flatten()
            .any(|p| p.name.as_deref() == Some(target) && p.container_port == 9443)
    );
    let args = container.args.clone().unwrap_or_default();
    let at = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(at("--webhook-addr"), "0.0.0.0:9443");
    let mounted = container
        .volume_mounts
        .iter()
        .flatten()
        .any(|m| m.mount_path == at("--webhook-cert-dir"));
    assert!(mounted, "the webhook's certificate directory is mounted");
    assert_eq!(d.metadata.namespace.as_deref(), Some("lanes-system"));
    for (_, b) in docs
        .iter()
        .filter(|(_, d)| d["kind"].as_str().is_some_and(|k| k.ends_with("Binding")))
    {
        assert_eq!(b["subjects"][0]["name"], "lanes-operator");
        assert_eq!(b["subjects"][0]["namespace"], "lanes-system");
    }
}

/// Everything the operator asks of the API server, over all its paths.
async fn operator_requests() -> Vec<Req> {
    let mut all = Vec::new();
    // The lane controller: applies, then deletes once the group is gone.
    let (fake, client) = seeded();
    lanes_operator::lanes::reconcile(&client, Flavor::Asm)
        .await
        .unwrap();
    remove_lane_group(&fake);
    let changes = lanes_operator::lanes::reconcile(&client, Flavor::Asm)
        .await
        .unwrap();
    assert!(!changes.deleted.is_empty());
    all.extend(fake.requests());

    // A whole release, a cancelled one and an orphaned one.
    let mut op = Operator::start();
    use Step::*;
    for s in [
        Apply(workload("a:1")),
        Apply(rollout()),
        Settle,
        Reconcile(0),
        SetImage("a:2"),
        Reconcile(1),
        Settle,
        Reconcile(2),
        Approve,
        Reconcile(3),
        Settle,
        Reconcile(4),
        Reconcile(40),
        Settle,
        Reconcile(41),
        SetImage("a:3"),
        Reconcile(50),
        SetImage("a:2"),
        Reconcile(51),
        SetImage("a:4"),
        Reconcile(60),
        DeleteRollout,
        Reconcile(61),
    ] {
        op.step(&s).await;
    }
    all.extend(op.fake.requests());

    // A rollback at the progress deadline.
    let mut op = Operator::start();
    let mut r = rollout();
    r["spec"]["strategy"]["canary"]["progressDeadlineSeconds"] = json!(5);
    for s in [
        Apply(workload("a:1")),
        Apply(r),
        Settle,
        Reconcile(0),
        SetImage("a:2"),
        Reconcile(1),
        Reconcile(10),
    ] {
        op.step(&s).await;
    }
    assert!(
        op.fake
            .requests()
            .iter()
            .any(|r| r.method == "PUT" && r.path.contains("/deployments/"))
    );
    all.extend(op.fake.requests());

    // An analysis that pauses the Rollout.
    let op = analysed_release(&prometheus(0.1).await).await;
    let r = op.rollout().await.unwrap();
    assert_eq!(r["spec"]["strategy"]["paused"], true, "{:#}", r["status"]);
    all.extend(op.fake.requests());

    // A lane release promoted by one approval, and one that pauses at its deadline.
    for (steps, done) in [
        (lane_release_steps(), "Completed"),
        (lane_release_deadline_steps(), "Progressing"),
    ] {
        let mut op = Operator::start();
        for s in &steps {
            op.step(s).await;
        }
        let lr = op.lane_release().await.unwrap();
        assert_eq!(lr["status"]["phase"], done, "{:#}", lr["status"]);
        all.extend(op.fake.requests());
    }

    // The main loop: leader election and watches.
    let (fake, stop) = main_loop(lanes_operator::Config {
        lease_duration: Duration::from_secs(3),
        ..Default::default()
    });
    until("the lease is renewed (a third of its duration)", || {
        fake.requests()
            .iter()
            .any(|r| r.method == "PUT" && r.path.contains("/leases/"))
    })
    .await;
    stop().await.unwrap();
    all.extend(fake.requests());

    // The gateway-api flavor: HTTPRoutes and lane Services watched, applied, and
    // deleted with their group.
    let (fake, stop) = main_loop(lanes_operator::Config {
        flavor: Flavor::GatewayApi,
        leader_election: false,
        ..Default::default()
    });
    let applied = |plural: &'static str| {
        let fake = fake.clone();
        move || {
            fake.requests()
                .iter()
                .any(|r| r.method == "PATCH" && r.path.contains(&format!("/{plural}/")))
        }
    };
    until("HTTPRoutes are applied", applied("httproutes")).await;
    until("lane Services are applied", applied("services")).await;
    fake.remove(
        "istio.alibabacloud.com/v1",
        "ASMSwimLaneGroup",
        "",
        "rollout",
    );
    until("the group's objects are deleted", || {
        let deleted = |plural: &str| {
            fake.requests()
                .iter()
                .any(|r| r.method == "DELETE" && r.path.contains(&format!("/{plural}/")))
        };
        deleted("httproutes") && deleted("services")
    })
    .await;
    stop().await.unwrap();
    all.extend(fake.requests());
    all
}

/// The operator's main loop on the seeded mocked API server, and how to stop it.
fn main_loop(
    config: lanes_operator::Config,
) -> (FakeApi, impl FnOnce() -> tokio::task::JoinHandle<()>) {
    let (fake, client) = seeded();
    let (tx, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(lanes_operator::run(
        lanes_operator::rollouts::Context::new(client),
        config,
        Arc::new(Default::default()),
        rx,
    ));
    (fake, move || {
        tx.send_replace(true);
        task
    })
}

fn granted(rules: &[PolicyRule]) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for r in rules {
        for g in r.api_groups.iter().flatten() {
            for res in r.resources.iter().flatten() {
                for v in &r.verbs {
                    out.insert((g.clone(), res.clone(), v.clone()));
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_grants_exactly_the_requests_the_controllers_make() {
    let docs = manifests();
    let rules = |kind: &str| -> Vec<PolicyRule> {
        docs.iter()
            .filter(|(_, d)| d["kind"] == kind)
            .flat_map(|(_, d)| {
                serde_json::from_value::<Vec<PolicyRule>>(d["rules"].clone()).unwrap()
            })
            .collect()
    };
    let cluster = granted(&rules("ClusterRole"));
    let leases = granted(&rules("Role"));
    // The Role is for the Lease only; nothing cluster-wide touches leases.
    assert!(
        leases
            .iter()
            .all(|(g, r, _)| g == "coordination.k8s.io" && r == "leases"),
        "{leases:?}"
    );
    assert!(cluster.iter().all(|(_, r, _)| r != "leases"), "{cluster:?}");
    let mut granted_all = cluster.clone();
    granted_all.extend(leases);

    let used: BTreeSet<(String, String, String)> = operator_requests()
        .await
        .iter()
        .flat_map(|r| {
            let g = r.group();
            r.rbac()
                .into_iter()
                .map(move |(res, verb)| (g.clone(), res, verb))
        })
        .collect();
    let missing: Vec<_> = used.difference(&granted_all).collect();
    assert!(
        missing.is_empty(),
        "requests the RBAC rules do not grant: {missing:?}"
    );
    let unused: Vec<_> = granted_all.difference(&used).collect();
    assert!(
        unused.is_empty(),
        "RBAC grants verbs no controller uses: {unused:?}"
    );
}

#[test]
fn the_fake_api_server_answers_like_kubernetes() {
    // The mock's own semantics the other tests rely on: stale writes conflict, status
    // writes touch only status, merge patches delete with null.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (fake, client) = FakeApi::start();
        fake.put(workload("a:1"));
        let api: kube::Api<Deployment> = kube::Api::namespaced(client, NS);
        let mut d = api.get(WORKLOAD).await.unwrap();
        d.metadata.resource_version = Some("0".into());
        let e = api
            .replace(WORKLOAD, &Default::default(), &d)
            .await
            .unwrap_err();
        assert!(matches!(e, kube::Error::Api(s) if s.code == 409));
        let d = api
            .patch(
                WORKLOAD,
                &Default::default(),
                &kube::api::Patch::Merge(
                    json!({"metadata": {"labels": {"x": "1"}}, "spec": {"paused": true}}),
                ),
            )
            .await
            .unwrap();
        assert_eq!(
            d.metadata.generation,
            Some(2),
            "a spec change bumps the generation"
        );
        let d = api
            .patch(
                WORKLOAD,
                &Default::default(),
                &kube::api::Patch::Merge(json!({"metadata": {"labels": {"x": null}}})),
            )
            .await
            .unwrap();
        assert!(!d.metadata.labels.unwrap().contains_key("x"));
        assert_eq!(d.metadata.generation, Some(2));
        let st = api
            .patch_status(
                WORKLOAD,
                &Default::default(),
                &kube::api::Patch::Merge(
                    json!({"spec": {"replicas": 9}, "status": {"replicas": 3}}),
                ),
            )
            .await
            .unwrap();
        assert_eq!(
            st.spec.unwrap().replicas,
            Some(4),
            "status writes leave the spec"
        );
        assert_eq!(st.status.unwrap().replicas, Some(3));
    });
}
