//! The kinds Lanes accepts (design §2): their API groups, versions, scope and names.

use std::fmt;

/// One of the resource kinds Lanes knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `v1` Service.
    Service,
    /// `v1` Pod.
    Pod,
    /// `apps/v1` Deployment.
    Deployment,
    /// `apps/v1` ReplicaSet (in `lanes up`, a record of each of a Deployment's
    /// templates: its revision history).
    ReplicaSet,
    /// Istio Gateway.
    Gateway,
    /// Istio VirtualService.
    VirtualService,
    /// Istio DestinationRule.
    DestinationRule,
    /// Gateway API Gateway (`gateway.networking.k8s.io`; the same kind name as Istio's).
    KubeGateway,
    /// Gateway API HTTPRoute.
    HttpRoute,
    /// Gateway API GRPCRoute.
    GrpcRoute,
    /// ASM lane group (`ASMSwimLaneGroup`), cluster-scoped.
    LaneGroup,
    /// ASM lane (`ASMSwimLane`), cluster-scoped.
    Lane,
    /// Kruise Rollout.
    Rollout,
    /// Lanes' release of several Rollouts as one (`lanes.dev/v1alpha1`).
    LaneRelease,
    /// `v1` Namespace, cluster-scoped.
    Namespace,
    /// `v1` Event (also served as `events.k8s.io/v1`).
    Event,
    /// `coordination.k8s.io/v1` Lease.
    Lease,
}

/// Static facts about a kind.
#[derive(Debug, Clone, Copy)]
pub struct KindInfo {
    /// The kind as written in `kind:`.
    pub name: &'static str,
    /// The API group, empty for the core group.
    pub group: &'static str,
    /// The version Lanes stores and emits.
    pub version: &'static str,
    /// Every version accepted on input.
    pub accepted_versions: &'static [&'static str],
    /// Lower-case plural, as in REST paths.
    pub plural: &'static str,
    /// kubectl's short names.
    pub short_names: &'static [&'static str],
    /// Whether objects live in a namespace.
    pub namespaced: bool,
}

const ISTIO_VERSIONS: &[&str] = &["v1alpha3", "v1beta1", "v1"];
const GATEWAY_API: &str = "gateway.networking.k8s.io";
/// The versions the standard-channel CRDs serve (v1beta1 only as a deprecated alias).
const GATEWAY_API_VERSIONS: &[&str] = &["v1", "v1beta1"];

impl Kind {
    /// Every kind, in the order `lanes get all` and listings use.
    pub const ALL: [Kind; 17] = [
        Kind::Service,
        Kind::Pod,
        Kind::Deployment,
        Kind::ReplicaSet,
        Kind::Gateway,
        Kind::VirtualService,
        Kind::DestinationRule,
        Kind::KubeGateway,
        Kind::HttpRoute,
        Kind::GrpcRoute,
        Kind::LaneGroup,
        Kind::Lane,
        Kind::Rollout,
        Kind::LaneRelease,
        Kind::Namespace,
        Kind::Event,
        Kind::Lease,
    ];

    /// Static facts about this kind.
    pub fn info(self) -> KindInfo {
        match self {
            Kind::Service => KindInfo {
                name: "Service",
                group: "",
                version: "v1",
                accepted_versions: &["v1"],
                plural: "services",
                short_names: &["svc"],
                namespaced: true,
            },
            Kind::Pod => KindInfo {
                name: "Pod",
                group: "",
                version: "v1",
                accepted_versions: &["v1"],
                plural: "pods",
                short_names: &["po"],
                namespaced: true,
            },
            Kind::Deployment => KindInfo {
                name: "Deployment",
                group: "apps",
                version: "v1",
                accepted_versions: &["v1"],
                plural: "deployments",
                short_names: &["deploy"],
                namespaced: true,
            },
            Kind::ReplicaSet => KindInfo {
                name: "ReplicaSet",
                group: "apps",
                version: "v1",
                accepted_versions: &["v1"],
                plural: "replicasets",
                short_names: &["rs"],
                namespaced: true,
            },
            Kind::Gateway => KindInfo {
                name: "Gateway",
                group: "networking.istio.io",
                version: "v1alpha3",
                accepted_versions: ISTIO_VERSIONS,
                plural: "gateways",
                short_names: &["gw"],
                namespaced: true,
            },
            Kind::VirtualService => KindInfo {
                name: "VirtualService",
                group: "networking.istio.io",
                version: "v1alpha3",
                accepted_versions: ISTIO_VERSIONS,
                plural: "virtualservices",
                short_names: &["vs"],
                namespaced: true,
            },
            Kind::DestinationRule => KindInfo {
                name: "DestinationRule",
                group: "networking.istio.io",
                version: "v1alpha3",
                accepted_versions: ISTIO_VERSIONS,
                plural: "destinationrules",
                short_names: &["dr"],
                namespaced: true,
            },
            Kind::KubeGateway => KindInfo {
                name: "Gateway",
                group: GATEWAY_API,
                version: "v1",
                accepted_versions: GATEWAY_API_VERSIONS,
                plural: "gateways",
                short_names: &["gtw"],
                namespaced: true,
            },
            Kind::HttpRoute => KindInfo {
                name: "HTTPRoute",
                group: GATEWAY_API,
                version: "v1",
                accepted_versions: GATEWAY_API_VERSIONS,
                plural: "httproutes",
                short_names: &[],
                namespaced: true,
            },
            Kind::GrpcRoute => KindInfo {
                name: "GRPCRoute",
                group: GATEWAY_API,
                version: "v1",
                accepted_versions: &["v1"],
                plural: "grpcroutes",
                short_names: &[],
                namespaced: true,
            },
            Kind::LaneGroup => KindInfo {
                name: "ASMSwimLaneGroup",
                group: "istio.alibabacloud.com",
                version: "v1",
                accepted_versions: &["v1"],
                plural: "asmswimlanegroups",
                short_names: &["slg", "lanegroup", "lanegroups"],
                namespaced: false,
            },
            Kind::Lane => KindInfo {
                name: "ASMSwimLane",
                group: "istio.alibabacloud.com",
                version: "v1",
                accepted_versions: &["v1"],
                plural: "asmswimlanes",
                short_names: &["sl", "lane", "lanes"],
                namespaced: false,
            },
            Kind::Rollout => KindInfo {
                name: "Rollout",
                group: "rollouts.kruise.io",
                version: "v1beta1",
                accepted_versions: &["v1beta1", "v1alpha1"],
                plural: "rollouts",
                short_names: &["ro"],
                namespaced: true,
            },
            Kind::LaneRelease => KindInfo {
                name: "LaneRelease",
                group: "lanes.dev",
                version: "v1alpha1",
                accepted_versions: &["v1alpha1"],
                plural: "lanereleases",
                short_names: &["lrel"],
                namespaced: true,
            },
            Kind::Namespace => KindInfo {
                name: "Namespace",
                group: "",
                version: "v1",
                accepted_versions: &["v1"],
                plural: "namespaces",
                short_names: &["ns"],
                namespaced: false,
            },
            Kind::Event => KindInfo {
                name: "Event",
                group: "",
                version: "v1",
                accepted_versions: &["v1"],
                plural: "events",
                short_names: &["ev"],
                namespaced: true,
            },
            Kind::Lease => KindInfo {
                name: "Lease",
                group: "coordination.k8s.io",
                version: "v1",
                accepted_versions: &["v1"],
                plural: "leases",
                short_names: &[],
                namespaced: true,
            },
        }
    }

    /// The kind's name as written in `kind:`.
    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// The name objects of this kind are stored under: its name, qualified by its group
    /// where two kinds share a name (Istio's Gateway and the Gateway API's).
    pub fn storage_name(self) -> &'static str {
        match self {
            Kind::KubeGateway => "Gateway.gateway.networking.k8s.io",
            _ => self.name(),
        }
    }

    /// Whether objects of this kind live in a namespace.
    pub fn namespaced(self) -> bool {
        self.info().namespaced
    }

    /// The `apiVersion` Lanes stores and emits for this kind.
    pub fn api_version(self) -> String {
        let info = self.info();
        if info.group.is_empty() {
            info.version.to_string()
        } else {
            format!("{}/{}", info.group, info.version)
        }
    }

    /// The kind named by `kind:`, whatever its group and version; where two groups
    /// share a name (`Gateway`), the first (Istio's). Use [`Kind::from_api`] when the
    /// `apiVersion` is known.
    pub fn from_kind_name(kind: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == kind)
    }

    /// The kind named by `kind:` in the group of `api_version`; when no kind of that
    /// name is in that group, the one [`Kind::from_kind_name`] gives (so a wrong
    /// version is reported against it).
    pub fn from_api(api_version: &str, kind: &str) -> Option<Kind> {
        let (group, _) = split_api_version(api_version);
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == kind && k.info().group == group)
            .or_else(|| Kind::from_kind_name(kind))
    }

    /// The kind of an object's JSON, by its `apiVersion` and `kind`.
    pub fn of_value(v: &serde_json::Value) -> Option<Kind> {
        let kind = v.get("kind")?.as_str()?;
        let api_version = v.get("apiVersion").and_then(serde_json::Value::as_str);
        Kind::from_api(api_version.unwrap_or_default(), kind)
    }

    /// Checks an `apiVersion` against this kind; `Err` says what is accepted.
    pub fn check_api_version(self, api_version: &str) -> Result<(), String> {
        let info = self.info();
        let (group, version) = split_api_version(api_version);
        if group == info.group && info.accepted_versions.contains(&version) {
            return Ok(());
        }
        if self == Kind::Event && api_version == EVENTS_V1 {
            return Ok(());
        }
        let accepted: Vec<String> = info
            .accepted_versions
            .iter()
            .map(|v| {
                if info.group.is_empty() {
                    (*v).to_string()
                } else {
                    format!("{}/{v}", info.group)
                }
            })
            .collect();
        Err(format!(
            "{api_version:?} is not served for kind {}; use {}",
            info.name,
            accepted.join(" or ")
        ))
    }

    /// Resolves a name typed on the command line: kind (any case), plural or short name.
    pub fn resolve(word: &str) -> Option<Kind> {
        let lower = word.to_ascii_lowercase();
        let bare = lower.split('.').next().unwrap_or(&lower);
        Kind::ALL.into_iter().find(|k| {
            let info = k.info();
            info.name.eq_ignore_ascii_case(bare)
                || info.plural == bare
                || info.short_names.contains(&bare)
                || lower == format!("{}.{}", info.plural, info.group)
                || lower == format!("{}.{}", info.name.to_ascii_lowercase(), info.group)
        })
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The `events.k8s.io` form of [`Kind::Event`], read and written as the core one.
pub const EVENTS_V1: &str = "events.k8s.io/v1";

/// Splits `group/version` (or a bare core `version`) into its parts.
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.rsplit_once('/') {
        Some((group, version)) => (group, version),
        None => ("", api_version),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_cli_names() {
        for (word, kind) in [
            ("deploy", Kind::Deployment),
            ("Deployments", Kind::Deployment),
            ("rs", Kind::ReplicaSet),
            ("replicasets.apps", Kind::ReplicaSet),
            ("svc", Kind::Service),
            ("po", Kind::Pod),
            ("vs", Kind::VirtualService),
            ("dr", Kind::DestinationRule),
            ("destinationrule", Kind::DestinationRule),
            ("gw", Kind::Gateway),
            ("asmswimlanegroup", Kind::LaneGroup),
            ("ASMSwimLane", Kind::Lane),
            ("rollout", Kind::Rollout),
            ("rollouts.rollouts.kruise.io", Kind::Rollout),
            ("lanerelease", Kind::LaneRelease),
            ("lrel", Kind::LaneRelease),
            ("lanereleases.lanes.dev", Kind::LaneRelease),
        ] {
            assert_eq!(Kind::resolve(word), Some(kind), "{word}");
        }
        assert_eq!(Kind::resolve("configmap"), None);
    }

    #[test]
    fn checks_api_versions() {
        assert!(
            Kind::VirtualService
                .check_api_version("networking.istio.io/v1beta1")
                .is_ok()
        );
        assert!(
            Kind::Rollout
                .check_api_version("rollouts.kruise.io/v1alpha1")
                .is_ok()
        );
        let err = Kind::Deployment.check_api_version("v1").unwrap_err();
        assert!(err.contains("apps/v1"), "{err}");
        assert_eq!(Kind::Deployment.api_version(), "apps/v1");
        assert_eq!(Kind::Pod.api_version(), "v1");
    }
}
