//! What the API serves: each resource as a group, version and plural, the kind stored
//! behind it, and the facts discovery publishes (verbs, short names, subresources).

use lanes_model::Kind;

/// Every verb of a resource that can be listed, watched and written.
pub const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// How a resource's objects are shown: as stored, or converted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// As stored.
    Stored,
    /// `events.k8s.io/v1`: core Events with their fields renamed.
    EventsV1,
}

/// A subresource of a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sub {
    /// `status`: get, update and patch the status alone.
    Status,
    /// `log` (pods): the container's output.
    Log,
    /// `scale` (Deployments): an `autoscaling/v1` `Scale` of its replicas.
    Scale,
}

impl Sub {
    /// The path segment.
    pub fn name(self) -> &'static str {
        match self {
            Sub::Status => "status",
            Sub::Log => "log",
            Sub::Scale => "scale",
        }
    }

    /// Its verbs, as discovery publishes them.
    pub fn verbs(self) -> &'static [&'static str] {
        match self {
            Sub::Status | Sub::Scale => &["get", "patch", "update"],
            Sub::Log => &["get"],
        }
    }

    /// The kind it answers with, when not the resource's own: (group, version, kind).
    pub fn response_kind(self) -> Option<(&'static str, &'static str, &'static str)> {
        match self {
            Sub::Scale => Some(("autoscaling", "v1", "Scale")),
            Sub::Status | Sub::Log => None,
        }
    }
}

/// One served resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource {
    /// The kind stored behind it.
    pub kind: Kind,
    /// API group, empty for the core group.
    pub group: &'static str,
    /// Version.
    pub version: &'static str,
    /// How its objects are shown.
    pub form: Form,
}

const ISTIO: &str = "networking.istio.io";
/// The Istio versions served, the preferred (the stored form, as the article prints
/// it) first.
const ISTIO_VERSIONS: [&str; 3] = ["v1alpha3", "v1beta1", "v1"];

impl Resource {
    /// Every served resource, grouped by group-version in discovery order.
    pub fn all() -> Vec<Resource> {
        let mut out = Vec::new();
        let stored = |kind: Kind, group, version| Resource {
            kind,
            group,
            version,
            form: Form::Stored,
        };
        for kind in [Kind::Namespace, Kind::Service, Kind::Pod, Kind::Event] {
            out.push(stored(kind, "", "v1"));
        }
        out.push(stored(Kind::Deployment, "apps", "v1"));
        out.push(stored(Kind::ReplicaSet, "apps", "v1"));
        out.push(stored(Kind::Lease, "coordination.k8s.io", "v1"));
        out.push(Resource {
            kind: Kind::Event,
            group: "events.k8s.io",
            version: "v1",
            form: Form::EventsV1,
        });
        for version in ISTIO_VERSIONS {
            for kind in [Kind::Gateway, Kind::VirtualService, Kind::DestinationRule] {
                out.push(stored(kind, ISTIO, version));
            }
        }
        for version in ["v1", "v1beta1"] {
            for kind in [Kind::KubeGateway, Kind::HttpRoute] {
                out.push(stored(kind, lanes_model::gateway_api::GROUP, version));
            }
        }
        out.push(stored(
            Kind::GrpcRoute,
            lanes_model::gateway_api::GROUP,
            "v1",
        ));
        for kind in [Kind::LaneGroup, Kind::Lane] {
            out.push(stored(kind, "istio.alibabacloud.com", "v1"));
        }
        out.push(stored(Kind::Rollout, "rollouts.kruise.io", "v1beta1"));
        out.push(stored(Kind::LaneRelease, "lanes.dev", "v1alpha1"));
        out
    }

    /// The resource a kind is read and written through by default (its stored form, at
    /// its preferred version).
    pub fn preferred(kind: Kind) -> Resource {
        Resource::all()
            .into_iter()
            .find(|r| r.kind == kind && r.form == Form::Stored)
            .unwrap_or(Resource {
                kind,
                group: kind.info().group,
                version: kind.info().version,
                form: Form::Stored,
            })
    }

    /// The resource an object of `kind` written as `api_version` goes through: that
    /// version when served, else the kind's preferred one.
    pub fn for_object(kind: Kind, api_version: &str) -> Resource {
        let (group, version) = lanes_model::kind::split_api_version(api_version);
        Resource::all()
            .into_iter()
            .find(|r| r.kind == kind && r.group == group && r.version == version)
            .unwrap_or_else(|| Resource::preferred(kind))
    }

    /// The path of a collection (`namespace` none: every namespace) or, with `name`, of
    /// an object; `sub` adds a subresource (`status`, `log`).
    pub fn path(&self, namespace: Option<&str>, name: Option<&str>, sub: Option<&str>) -> String {
        let mut p = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        if let Some(ns) = namespace.filter(|_| self.namespaced()) {
            p.push_str("/namespaces/");
            p.push_str(&encode(ns));
        }
        p.push('/');
        p.push_str(self.plural());
        if let Some(n) = name {
            p.push('/');
            p.push_str(&encode(n));
            if let Some(s) = sub {
                p.push('/');
                p.push_str(s);
            }
        }
        p
    }

    /// The resource at `group`/`version`/`plural`, if served.
    pub fn find(group: &str, version: &str, plural: &str) -> Option<Resource> {
        Resource::all()
            .into_iter()
            .find(|r| r.group == group && r.version == version && r.plural() == plural)
    }

    /// The served group-versions, in discovery order, each once.
    pub fn group_versions() -> Vec<(&'static str, &'static str)> {
        let mut out: Vec<(&str, &str)> = Vec::new();
        for r in Resource::all() {
            if !out.contains(&(r.group, r.version)) {
                out.push((r.group, r.version));
            }
        }
        out
    }

    /// The served groups, in discovery order, with their versions (preferred first).
    pub fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
        let mut out: Vec<(&str, Vec<&str>)> = Vec::new();
        for (group, version) in Resource::group_versions() {
            match out.iter_mut().find(|(g, _)| *g == group) {
                Some((_, versions)) => versions.push(version),
                None => out.push((group, vec![version])),
            }
        }
        out
    }

    /// `group/version`, or the bare version for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Lower-case plural, as in paths.
    pub fn plural(&self) -> &'static str {
        self.kind.info().plural
    }

    /// Lower-case singular.
    pub fn singular(&self) -> String {
        self.kind.name().to_ascii_lowercase()
    }

    /// Whether objects live in a namespace.
    pub fn namespaced(&self) -> bool {
        self.kind.namespaced()
    }

    /// `plural.group`, as errors name a resource (`deployments.apps`).
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural().to_string()
        } else {
            format!("{}.{}", self.plural(), self.group)
        }
    }

    /// kubectl's short names (none for the `events.k8s.io` copy, as upstream).
    pub fn short_names(&self) -> &'static [&'static str] {
        match self.form {
            Form::EventsV1 => &[],
            Form::Stored => self.kind.info().short_names,
        }
    }

    /// The categories it belongs to (`kubectl get all` lists the `all` category).
    pub fn categories(&self) -> &'static [&'static str] {
        match self.kind {
            Kind::Service | Kind::Pod | Kind::Deployment | Kind::ReplicaSet => &["all"],
            Kind::Gateway | Kind::VirtualService | Kind::DestinationRule => {
                &["istio-io", "networking-istio-io"]
            }
            Kind::KubeGateway | Kind::HttpRoute | Kind::GrpcRoute => &["gateway-api"],
            _ => &[],
        }
    }

    /// Its subresources.
    pub fn subresources(&self) -> &'static [Sub] {
        match (self.kind, self.form) {
            (Kind::Pod, _) => &[Sub::Status, Sub::Log],
            (Kind::Deployment, Form::Stored) => &[Sub::Status, Sub::Scale],
            (
                Kind::ReplicaSet
                | Kind::Service
                | Kind::Namespace
                | Kind::Rollout
                | Kind::LaneRelease
                | Kind::LaneGroup
                | Kind::KubeGateway
                | Kind::HttpRoute
                | Kind::GrpcRoute,
                Form::Stored,
            ) => &[Sub::Status],
            _ => &[],
        }
    }

    /// Whether the object has a status only the `status` subresource writes.
    pub fn has_status(&self) -> bool {
        self.subresources().contains(&Sub::Status)
    }

    /// An object as this resource shows it (its apiVersion, its form).
    pub fn present(&self, stored: &serde_json::Value) -> serde_json::Value {
        let mut out = match self.form {
            Form::Stored => stored.clone(),
            Form::EventsV1 => lanes_model::events::to_events_v1(stored),
        };
        if let Some(o) = out.as_object_mut() {
            o.insert("apiVersion".into(), self.api_version().into());
            o.insert("kind".into(), self.kind.name().into());
        }
        out
    }
}

/// Percent-encodes a path segment or query value.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_resources_by_path() {
        let r = Resource::find("apps", "v1", "deployments").unwrap();
        assert_eq!(r.kind, Kind::Deployment);
        assert_eq!(r.qualified(), "deployments.apps");
        assert!(Resource::find("", "v1", "deployments").is_none());
        assert_eq!(
            Resource::find(ISTIO, "v1", "destinationrules")
                .unwrap()
                .kind,
            Kind::DestinationRule
        );
        let groups = Resource::groups();
        let istio = groups.iter().find(|(g, _)| *g == ISTIO).unwrap();
        assert_eq!(istio.1, ISTIO_VERSIONS);
    }

    #[test]
    fn every_kind_is_served() {
        for kind in Kind::ALL {
            assert!(Resource::all().iter().any(|r| r.kind == kind), "{kind}");
        }
    }
}
