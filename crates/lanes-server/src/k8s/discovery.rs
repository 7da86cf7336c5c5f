//! Discovery: `/version`, the legacy documents (`/api`, `/apis`, `/apis/{group}`, each
//! group-version's `APIResourceList`) and the aggregated `APIGroupDiscoveryList`
//! (`apidiscovery.k8s.io/v2` and `v2beta1`) that kubectl 1.32 asks for first.

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::catalog::{Resource, VERBS};

/// The Kubernetes API version whose behaviour Lanes follows.
pub const KUBE_MINOR: &str = "32";

/// `GET /version`.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": KUBE_MINOR,
        "gitVersion": format!("v1.{KUBE_MINOR}.0+lanes-{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "none (lanes is Rust)",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
    })
}

/// Which aggregated discovery version the `Accept` header asks for, if any.
fn aggregated_version(headers: &HeaderMap) -> Option<&'static str> {
    let accept = headers.get(header::ACCEPT)?.to_str().ok()?;
    for offer in accept.split(',') {
        let params: Vec<&str> = offer.split(';').map(str::trim).collect();
        let has = |p: &str| params.contains(&p);
        if has("g=apidiscovery.k8s.io") && has("as=APIGroupDiscoveryList") {
            if has("v=v2") {
                return Some("v2");
            }
            if has("v=v2beta1") {
                return Some("v2beta1");
            }
        }
    }
    None
}

fn with_type(body: Value, content_type: String) -> Response {
    let mut resp = axum::Json(body).into_response();
    if let Ok(v) = HeaderValue::from_str(&content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

/// `GET /api`: the core group, aggregated when asked, else `APIVersions`.
pub fn core(headers: &HeaderMap) -> Response {
    match aggregated_version(headers) {
        Some(v) => aggregated(v, true),
        None => axum::Json(json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
        }))
        .into_response(),
    }
}

/// `GET /apis`: every named group, aggregated when asked, else `APIGroupList`.
pub fn groups(headers: &HeaderMap) -> Response {
    match aggregated_version(headers) {
        Some(v) => aggregated(v, false),
        None => {
            let groups: Vec<Value> = Resource::groups()
                .into_iter()
                .filter(|(g, _)| !g.is_empty())
                .map(|(g, versions)| api_group(g, &versions))
                .collect();
            axum::Json(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
                .into_response()
        }
    }
}

/// `GET /apis/{group}`.
pub fn group(name: &str) -> Option<Value> {
    let (g, versions) = Resource::groups()
        .into_iter()
        .find(|(g, _)| !g.is_empty() && *g == name)?;
    let mut doc = api_group(g, &versions);
    doc["kind"] = "APIGroup".into();
    doc["apiVersion"] = "v1".into();
    Some(doc)
}

fn api_group(group: &str, versions: &[&str]) -> Value {
    let gv = |v: &str| json!({"groupVersion": format!("{group}/{v}"), "version": v});
    json!({
        "name": group,
        "versions": versions.iter().map(|v| gv(v)).collect::<Vec<_>>(),
        "preferredVersion": gv(versions[0]),
    })
}

/// `GET /api/v1`, `GET /apis/{group}/{version}`: the `APIResourceList`.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let resources: Vec<Resource> = Resource::all()
        .into_iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if resources.is_empty() {
        return None;
    }
    let mut list = Vec::new();
    for r in &resources {
        list.push(json!({
            "name": r.plural(),
            "singularName": r.singular(),
            "namespaced": r.namespaced(),
            "kind": r.kind.name(),
            "verbs": VERBS,
            "shortNames": r.short_names(),
            "categories": r.categories(),
        }));
        for sub in r.subresources() {
            let mut doc = json!({
                "name": format!("{}/{}", r.plural(), sub.name()),
                "singularName": "",
                "namespaced": r.namespaced(),
                "kind": r.kind.name(),
                "verbs": sub.verbs(),
            });
            if let Some((group, version, kind)) = sub.response_kind() {
                doc["group"] = json!(group);
                doc["version"] = json!(version);
                doc["kind"] = json!(kind);
            }
            list.push(doc);
        }
    }
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": resources[0].api_version(),
        "resources": list,
    }))
}

fn discovery_resource(r: &Resource) -> Value {
    let response_kind = json!({"group": r.group, "version": r.version, "kind": r.kind.name()});
    let subresources: Vec<Value> = r
        .subresources()
        .iter()
        .map(|s| {
            let kind = match s.response_kind() {
                Some((group, version, kind)) => {
                    json!({"group": group, "version": version, "kind": kind})
                }
                None => response_kind.clone(),
            };
            json!({"subresource": s.name(), "responseKind": kind, "verbs": s.verbs()})
        })
        .collect();
    let mut doc = json!({
        "resource": r.plural(),
        "responseKind": response_kind,
        "scope": if r.namespaced() { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular(),
        "verbs": VERBS,
    });
    if !r.short_names().is_empty() {
        doc["shortNames"] = json!(r.short_names());
    }
    if !r.categories().is_empty() {
        doc["categories"] = json!(r.categories());
    }
    if !subresources.is_empty() {
        doc["subresources"] = Value::Array(subresources);
    }
    doc
}

/// The aggregated document of the core group (`core`) or of every named group.
fn aggregated(version: &str, core: bool) -> Response {
    let all = Resource::all();
    let items: Vec<Value> = Resource::groups()
        .into_iter()
        .filter(|(g, _)| g.is_empty() == core)
        .map(|(group, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|v| {
                    let resources: Vec<Value> = all
                        .iter()
                        .filter(|r| r.group == group && r.version == *v)
                        .map(discovery_resource)
                        .collect();
                    json!({"version": v, "resources": resources, "freshness": "Current"})
                })
                .collect();
            let mut metadata = json!({"creationTimestamp": null});
            if !group.is_empty() {
                metadata["name"] = group.into();
            }
            json!({"metadata": metadata, "versions": versions})
        })
        .collect();
    let body = json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{version}"),
        "metadata": {},
        "items": items,
    });
    with_type(
        body,
        format!("application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_lists_carry_subresources() {
        let core = resource_list("", "v1").unwrap();
        let names: Vec<&str> = core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["name"].as_str())
            .collect();
        for n in [
            "pods",
            "pods/log",
            "pods/status",
            "services",
            "namespaces",
            "events",
        ] {
            assert!(names.contains(&n), "{n} in {names:?}");
        }
        assert!(resource_list("apps", "v2").is_none());
        assert_eq!(
            group("networking.istio.io").unwrap()["preferredVersion"]["version"],
            "v1alpha3"
        );
    }

    #[test]
    fn aggregated_discovery_is_negotiated() {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static(
                "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json",
            ),
        );
        assert_eq!(aggregated_version(&h), Some("v2"));
        let resp = groups(&h);
        assert!(
            resp.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .contains("as=APIGroupDiscoveryList")
        );
        assert_eq!(aggregated_version(&HeaderMap::new()), None);
    }
}
