use super::*;
use lanes_compile::{Emit, Flavor, compile_with};
use lanes_model::Object;
use lanes_model::mesh::PodView;

const IMAGE: &str = "registry.cn-beijing.aliyuncs.com/aliacs-app-catalog/go-http-sample";

fn seed() -> Vec<Object> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/seed");
    lanes_model::load_paths(&[root])
        .unwrap()
        .into_iter()
        .map(|l| l.object)
        .collect()
}

/// A pod of `app` in `lane` running image tag `tag`.
fn pod(app: &str, lane: &str, tag: &str, ready: bool) -> (PodView, MapPod) {
    let labels: BTreeMap<String, String> =
        [("app", app), ("version", "v1"), ("ASM_TRAFFIC_TAG", lane)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    let view = PodView {
        name: format!("{app}-{lane}"),
        namespace: "default".into(),
        labels: labels.clone(),
        ready,
        ip: Some("10.0.0.1".into()),
    };
    let map = MapPod {
        namespace: "default".into(),
        labels,
        ready,
        images: vec![format!("{IMAGE}:{tag}")],
    };
    (view, map)
}

fn map_of(pods: &[(PodView, MapPod)]) -> LanesMap {
    let objects = seed();
    let refs: Vec<&Object> = objects.iter().collect();
    let views: Vec<PodView> = pods.iter().map(|p| p.0.clone()).collect();
    let table = compile_with(&refs, &views, Flavor::Asm, Emit::RoutesOnly).routes;
    let pods: Vec<MapPod> = pods.iter().map(|p| p.1.clone()).collect();
    lanes_map(&table, &pods)
}

fn cell<'a>(m: &'a LanesMap, service: &str, lane: &str) -> &'a Cell {
    let row = m.groups[0]
        .services
        .iter()
        .find(|s| s.name == service)
        .unwrap();
    row.cells.iter().find(|c| c.lane == lane).unwrap()
}

fn v(s: &str) -> Vec<String> {
    vec![s.to_string()]
}

#[test]
fn the_seed_runs_v1_in_base_and_canary_falls_through_to_it() {
    let mut pods: Vec<_> = ["mocka", "mockb", "mockc"]
        .iter()
        .map(|a| pod(a, "base", "1.0", true))
        .collect();
    let m = map_of(&pods);
    let g = &m.groups[0];
    assert_eq!(g.name, "rollout");
    assert_eq!(g.lanes, ["base", "canary"]);
    for svc in ["mocka", "mockb", "mockc"] {
        let base = cell(&m, svc, "base");
        assert_eq!((&base.versions, base.ready, base.total), (&v("v1"), 1, 1));
        assert_eq!(base.falls_back_to, None);
        let canary = cell(&m, svc, "canary");
        assert_eq!(canary.falls_back_to.as_deref(), Some("base"), "{svc}");
        assert_eq!(canary.total, 0);
    }
    // mocka's canary comes up: its cell shows v2, serving once ready.
    pods.push(pod("mocka", "canary", "2.0", false));
    let c = cell(&map_of(&pods), "mocka", "canary").clone();
    assert_eq!(
        (c.ready, c.total, c.falls_back_to.as_deref()),
        (0, 1, Some("base"))
    );
    if let Some(last) = pods.last_mut() {
        last.0.ready = true;
        last.1.ready = true;
    }
    let m = map_of(&pods);
    let c = cell(&m, "mocka", "canary");
    assert_eq!(
        (&c.versions, c.ready, c.falls_back_to.as_deref()),
        (&v("v2"), 1, None)
    );
    let b = cell(&m, "mockb", "canary");
    assert_eq!(b.falls_back_to.as_deref(), Some("base"));
}
