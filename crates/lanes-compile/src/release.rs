//! Releases whose steps route traffic (a Kruise Rollout step's `traffic`, `matches`,
//! `requestHeaderModifier`), as the lane compiler reads them: which lane the canary's
//! pods join, which lane the workload's own pods are in, and what share of the group's
//! ingress goes into the canary lane now. A lane release's traffic steps are one such
//! release, whose lanes it names itself.

use std::collections::BTreeMap;

use lanes_model::lane::LaneSpec;
use lanes_model::lane_release::LaneRelease;
use lanes_model::mesh::{PodView, ServiceView, selector_matches};
use lanes_model::rollout::Rollout;
use lanes_model::{Object, Typed};
use lanes_routes::{HeaderChanges, HttpMatchRequest};

/// A lane release's lanes: its group, and the lane its members' canaries run in (the
/// baseline is the group's fallback lane).
#[derive(Debug, Clone, PartialEq)]
pub struct LanePin {
    /// The lane group.
    pub group: String,
    /// The canary lane.
    pub lane: String,
}

/// A Rollout whose steps route traffic, with what its workload's pods carry; or a
/// LaneRelease whose steps do, with the lanes it names.
#[derive(Debug, Clone, PartialEq)]
pub struct ReleaseInput {
    /// The Rollout (or LaneRelease), as `namespace/name`.
    pub rollout: String,
    /// A LaneRelease's lanes (a Rollout's are found from its pods' labels).
    pub pinned: Option<LanePin>,
    /// Namespace of the Rollout and its workload.
    pub namespace: String,
    /// Labels of the workload's pods (its pod template's).
    pub stable_labels: BTreeMap<String, String>,
    /// Labels of the canary's pods: the template's with `patchPodTemplateMetadata`'s.
    pub canary_labels: BTreeMap<String, String>,
    /// Share of the group rule's traffic into the canary lane now, 0..=100.
    pub percent: u32,
    /// Requests that enter the canary lane now whatever the share.
    pub matches: Vec<HttpMatchRequest>,
    /// Header changes of the requests sent into the canary lane.
    pub headers: HeaderChanges,
}

impl ReleaseInput {
    /// The release of `rollout` on a workload whose pods carry `workload_labels`; none
    /// when its steps route no traffic.
    pub fn of(rollout: &Rollout, workload_labels: &BTreeMap<String, String>) -> Option<Self> {
        if !rollout.routes_traffic() {
            return None;
        }
        rollout.spec.strategy.canary.as_ref()?;
        let canary_labels = rollout.canary_pod_labels(workload_labels);
        let namespace = rollout.metadata.namespace.clone().unwrap_or_default();
        let step = rollout.routed_step().map(|(_, s)| s);
        let headers = step
            .and_then(|s| s.request_header_modifier.as_ref())
            .map(|h| HeaderChanges {
                set: pairs(&h.set),
                add: pairs(&h.add),
                remove: h.remove.iter().map(|n| n.to_ascii_lowercase()).collect(),
            })
            .unwrap_or_default();
        Some(ReleaseInput {
            rollout: format!(
                "{namespace}/{}",
                rollout.metadata.name.as_deref().unwrap_or("")
            ),
            pinned: None,
            namespace,
            stable_labels: workload_labels.clone(),
            canary_labels,
            percent: step.and_then(|s| s.traffic_percent()).unwrap_or(0),
            // Validation refused matches that do not convert.
            matches: step
                .and_then(|s| s.route_matches().ok())
                .unwrap_or_default(),
            headers,
        })
    }

    /// The traffic steps of lane release `lr`, when it has any: its share of its
    /// group's ingress into its lane now (0 at rest: the baseline takes it all).
    pub fn of_lane_release(lr: &LaneRelease) -> Option<Self> {
        if !lr.routes_traffic() {
            return None;
        }
        let percent = lr.traffic_percent().unwrap_or(0);
        let namespace = lr.metadata.namespace.clone().unwrap_or_default();
        Some(ReleaseInput {
            rollout: format!("{namespace}/{}", lr.metadata.name.as_deref().unwrap_or("")),
            pinned: Some(LanePin {
                group: lr.spec.lane_group.clone(),
                lane: lr.spec.lane.clone(),
            }),
            namespace,
            stable_labels: BTreeMap::new(),
            canary_labels: BTreeMap::new(),
            percent,
            matches: Vec::new(),
            headers: HeaderChanges::default(),
        })
    }

    /// What the release is, in a message: `Rollout ns/name` or `LaneRelease ns/name`.
    pub fn describe(&self) -> String {
        match self.pinned {
            Some(_) => format!("LaneRelease {}", self.rollout),
            None => format!("Rollout {}", self.rollout),
        }
    }

    /// Its name in generated objects' names (a LaneRelease's marked as one).
    pub fn route_name(&self) -> String {
        let name = self.rollout.replace('/', "-");
        match self.pinned {
            Some(_) => format!("lanerelease-{name}"),
            None => name,
        }
    }

    /// Whether `svc` selects the workload's pods.
    pub fn selected_by(&self, svc: &ServiceView) -> bool {
        svc.namespace == self.namespace
            && !svc.selector.is_empty()
            && selector_matches(&svc.selector, &self.stable_labels)
    }

    /// Whether the release holds any traffic now (a share or matches).
    pub fn is_routing(&self) -> bool {
        self.percent > 0 || !self.matches.is_empty()
    }
}

fn pairs(values: &[lanes_model::rollout::HeaderValue]) -> Vec<(String, String)> {
    values
        .iter()
        .map(|v| (v.name.to_ascii_lowercase(), v.value.clone()))
        .collect()
}

/// The canary pods of a lane release's members once it is finishing or rolling back
/// (and after it ended): they leave its lane group in one compile, every member's
/// together, whatever pace the pods then stop at.
#[derive(Debug, Clone, PartialEq)]
pub struct Withdrawal {
    /// The LaneRelease, as `namespace/name`.
    pub release: String,
    /// Its lane group.
    pub group: String,
    /// The members' namespace.
    pub namespace: String,
    /// The labels of each member's canary pods.
    pub canaries: Vec<BTreeMap<String, String>>,
}

impl Withdrawal {
    /// The canaries lane release `lr` withdraws now, if it does: those of the members its
    /// status lists; `canary_labels` gives a member Rollout's canary pod labels by name.
    pub fn of_lane_release(
        lr: &LaneRelease,
        canary_labels: impl Fn(&str) -> Option<BTreeMap<String, String>>,
    ) -> Option<Self> {
        let members = lr.withdrawn_members();
        let namespace = lr.metadata.namespace.clone().unwrap_or_default();
        Some(Withdrawal {
            release: format!("{namespace}/{}", lr.metadata.name.as_deref().unwrap_or("")),
            group: lr.spec.lane_group.clone(),
            namespace,
            canaries: members
                .iter()
                .filter_map(|m| canary_labels(m))
                .filter(|l| !l.is_empty())
                .collect(),
        })
        .filter(|w| !w.canaries.is_empty())
    }

    /// Whether `pod` is one of the canaries withdrawn from group `group`.
    pub fn takes(&self, group: &str, pod: &PodView) -> bool {
        self.group == group
            && pod.namespace == self.namespace
            && self
                .canaries
                .iter()
                .any(|c| selector_matches(c, &pod.labels))
    }
}

/// What releases do to a lane group's routes: the traffic their steps route, and the
/// canaries lane releases withdraw.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Releases {
    /// Releases whose steps route traffic: Rollouts in creation order, then LaneReleases.
    pub routed: Vec<ReleaseInput>,
    /// Canaries lane releases withdraw.
    pub withdrawn: Vec<Withdrawal>,
}

impl Releases {
    /// Whether `pod` is a canary withdrawn from group `group`.
    pub fn withdraws(&self, group: &str, pod: &PodView) -> bool {
        self.withdrawn.iter().any(|w| w.takes(group, pod))
    }
}

/// The releases among `objects`: each Rollout whose steps route traffic, with the
/// Deployment it names in its namespace, then each LaneRelease whose steps route
/// traffic now (in the order given); and the canaries lane releases withdraw.
pub fn releases(objects: &[&Object]) -> Releases {
    let mut templates: BTreeMap<(&str, &str), BTreeMap<String, String>> = BTreeMap::new();
    let mut rollouts: BTreeMap<(&str, &str), &Rollout> = BTreeMap::new();
    for o in objects {
        match &o.typed {
            Typed::Deployment(_) => {
                if let Some(labels) = lanes_model::mesh::deployment_template_labels(o) {
                    templates.insert((o.namespace_or_empty(), o.name.as_str()), labels);
                }
            }
            Typed::Rollout(r) => {
                rollouts.insert((o.namespace_or_empty(), o.name.as_str()), r);
            }
            _ => {}
        }
    }
    // The pod labels of Rollout `r`'s workload in namespace `ns`.
    fn template_of<'t, 'k>(
        templates: &'t BTreeMap<(&'k str, &'k str), BTreeMap<String, String>>,
        ns: &'k str,
        r: &'k Rollout,
    ) -> Option<&'t BTreeMap<String, String>> {
        templates.get(&(ns, r.spec.workload_ref.name.as_str()))
    }
    let routed = objects
        .iter()
        .filter_map(|o| {
            let Typed::Rollout(r) = &o.typed else {
                return None;
            };
            ReleaseInput::of(r, template_of(&templates, o.namespace_or_empty(), r)?)
        })
        .chain(objects.iter().filter_map(|o| match &o.typed {
            Typed::LaneRelease(lr) => ReleaseInput::of_lane_release(lr),
            _ => None,
        }))
        .collect();
    let withdrawn = objects
        .iter()
        .filter_map(|o| {
            let Typed::LaneRelease(lr) = &o.typed else {
                return None;
            };
            let ns = o.namespace_or_empty();
            Withdrawal::of_lane_release(lr, |name| {
                let r = rollouts.get(&(ns, name))?;
                Some(r.canary_pod_labels(template_of(&templates, ns, r)?))
            })
        })
        .collect();
    Releases { routed, withdrawn }
}

/// The first lane of `lanes` whose selector `labels` satisfy.
pub(crate) fn lane_of<'a>(
    lanes: &[(&'a str, &'a LaneSpec)],
    labels: &BTreeMap<String, String>,
    not: Option<&BTreeMap<String, String>>,
) -> Option<(&'a str, &'a LaneSpec)> {
    lanes.iter().copied().find(|(_, l)| {
        !l.label_selector.is_empty()
            && selector_matches(&l.label_selector, labels)
            && !not.is_some_and(|n| selector_matches(&l.label_selector, n))
    })
}

/// The service a request entering `lane` goes to: its weighted destination, else its
/// first online ingress rule's.
pub(crate) fn entry_host(lane: &LaneSpec) -> Option<(&str, Option<u16>)> {
    if let Some(w) = &lane.ingress_weight
        && !w.destination.host.is_empty()
    {
        let port = w
            .destination
            .port
            .as_ref()
            .and_then(|p| u16::try_from(p.number).ok());
        return Some((w.destination.host.as_str(), port));
    }
    lane.ingress_rules.iter().find(|r| r.online).map(|r| {
        let port = r
            .route
            .destination
            .port
            .as_ref()
            .and_then(|p| u16::try_from(p.number).ok());
        (r.route.destination.host.as_str(), port)
    })
}

/// One lane's entry: the lane, the service (name, namespace, port) and its routes.
pub(crate) struct Entry<'r> {
    pub lane: &'r str,
    pub name: String,
    pub namespace: String,
    pub port: Option<u16>,
    pub routes: Option<&'r crate::ServiceRoutes>,
}

/// Why a release holds no route in a group (a warning of the compile).
pub(crate) fn unroutable(group: &str, r: &ReleaseInput, why: &str) -> String {
    format!(
        "{}: {why} in lane group {group:?}; its steps route no traffic there",
        r.describe()
    )
}

/// The Istio route of a release: its matches into the canary lane, then the split of
/// the group rule between the canary and the baseline lane (requests that name a lane
/// are the lanes' own).
pub(crate) fn istio_routes(
    ctx: &crate::GroupCtx<'_>,
    r: &ReleaseInput,
    group_matches: &[HttpMatchRequest],
    baseline: &Entry<'_>,
    canary: &Entry<'_>,
) -> Vec<lanes_model::istio::HttpRoute> {
    use lanes_model::istio::{HttpRoute, StringMatch};
    let unnamed = |mut m: HttpMatchRequest| {
        m.without_headers.insert(
            ctx.route_header.clone(),
            StringMatch {
                exact: None,
                prefix: None,
                regex: Some(".+".to_string()),
            },
        );
        m
    };
    let group: Vec<HttpMatchRequest> = if group_matches.is_empty() {
        vec![HttpMatchRequest::default()]
    } else {
        group_matches.to_vec()
    };
    let into = |e: &Entry<'_>, weight: Option<i32>, extra: &HeaderChanges| {
        let host = crate::fqdn(&e.name, &e.namespace);
        let fallback = ctx.fallback_for(&e.name, &e.namespace);
        let mut d = ctx.lane_destination(&host, e.routes, e.lane, fallback.as_deref());
        d.destination.port = e.port.map(|n| lanes_model::istio::PortSelector {
            number: u32::from(n),
        });
        let mut headers = ctx.set_lane_header(e.lane);
        if let Some(ops) = headers.request.as_mut() {
            ops.set.extend(extra.set.iter().cloned());
            ops.add.extend(extra.add.iter().cloned());
            ops.remove.extend(extra.remove.iter().cloned());
        }
        d.headers = Some(headers);
        d.weight = weight;
        d
    };
    let none = HeaderChanges::default();
    let name = r.route_name();
    let mut http = Vec::new();
    if !r.matches.is_empty() {
        http.push(HttpRoute {
            matches: group
                .iter()
                .flat_map(|g| r.matches.iter().map(move |m| merged(g, m)))
                .map(unnamed)
                .collect(),
            name: Some(format!("release-{name}-matches")),
            route: vec![into(canary, None, &r.headers)],
            ..Default::default()
        });
    }
    let share = i32::try_from(r.percent.min(100)).unwrap_or(0);
    http.push(HttpRoute {
        matches: group.into_iter().map(unnamed).collect(),
        name: Some(format!("release-{name}")),
        route: vec![
            into(canary, Some(share), &r.headers),
            into(baseline, Some(100 - share), &none),
        ],
        ..Default::default()
    });
    http
}

/// A step match within the group rule: both must hold.
pub(crate) fn merged(group: &HttpMatchRequest, step: &HttpMatchRequest) -> HttpMatchRequest {
    let mut m = group.clone();
    m.headers.extend(step.headers.clone());
    m.query_params.extend(step.query_params.clone());
    if step.uri.is_some() {
        m.uri = step.uri.clone();
    }
    m
}
