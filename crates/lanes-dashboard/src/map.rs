//! The lanes map: per lane group, its lanes across and its services down; in each cell
//! the versions that serve the service in the lane and how many of their pods are
//! ready, or the lane whose pods serve it instead. Pure: from the route table the
//! gateway and sidecars run, and the pods.

use std::collections::{BTreeMap, BTreeSet};

use lanes_model::image::version_of_image;
use lanes_routes::RouteTable;
use lanes_routes::host::selector_matches;
use serde::Serialize;

/// A pod, as the map reads it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MapPod {
    /// Namespace.
    pub namespace: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Whether it is ready to serve.
    pub ready: bool,
    /// Its containers' images.
    pub images: Vec<String>,
}

/// Every lane group's map.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LanesMap {
    /// In the route table's order.
    pub groups: Vec<GroupMap>,
    /// Every release (Rollouts, then LaneReleases).
    pub releases: Vec<crate::releases::ReleaseRow>,
}

/// One lane group.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupMap {
    /// Its name.
    pub name: String,
    /// Its lanes, across.
    pub lanes: Vec<String>,
    /// The lane a service missing from a lane falls back to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    /// The header a request names its lane in.
    pub route_header: String,
    /// Its services, down.
    pub services: Vec<ServiceRow>,
}

/// One service of a group: a cell per lane.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceRow {
    /// Its name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// One per lane, in the group's lane order.
    pub cells: Vec<Cell>,
}

/// One service in one lane.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Cell {
    /// The lane.
    pub lane: String,
    /// The versions of its pods (`v<major>` of the image tag, else the image).
    pub versions: Vec<String>,
    /// Ready pods.
    pub ready: usize,
    /// All its pods.
    pub total: usize,
    /// The lane that serves the service's requests in this lane instead, when this lane
    /// has no ready pod of it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub falls_back_to: Option<String>,
    /// The requests routed to the service in this lane, live, when counted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traffic: Option<crate::traffic::CellTraffic>,
}

/// The map of every group in `table`, with `pods`.
pub fn lanes_map(table: &RouteTable, pods: &[MapPod]) -> LanesMap {
    let groups = table
        .groups
        .iter()
        .map(|g| {
            let lanes: Vec<String> = g.lanes.iter().map(|l| l.name.clone()).collect();
            let services = g
                .services
                .iter()
                .map(|s| {
                    let selector = table
                        .services
                        .iter()
                        .find(|m| m.name == s.name && m.namespace == s.namespace)
                        .map(|m| &m.selector);
                    let fallback = s.fallback.as_ref().or(g.fallback.as_ref());
                    let cells = g
                        .lanes
                        .iter()
                        .map(|l| {
                            let lane = &l.name;
                            // The lane's pods of the service, ready or not: the subset's
                            // labels when the lane holds the service, else the lane's.
                            let labels = s
                                .subset(lane)
                                .map(|sub| &*sub.labels)
                                .or(Some(&l.selector).filter(|sel| !sel.is_empty()));
                            let serving: Vec<&MapPod> = match (selector, labels) {
                                (Some(sel), Some(labels)) if !sel.is_empty() => pods
                                    .iter()
                                    .filter(|p| p.namespace == s.namespace)
                                    .filter(|p| selector_matches(sel, &p.labels))
                                    .filter(|p| selector_matches(labels, &p.labels))
                                    .collect(),
                                _ => Vec::new(),
                            };
                            cell(lane, &serving, fallback)
                        })
                        .collect();
                    ServiceRow {
                        name: s.name.clone(),
                        namespace: s.namespace.clone(),
                        cells,
                    }
                })
                .collect();
            GroupMap {
                name: g.name.clone(),
                lanes,
                fallback: g.fallback.clone(),
                route_header: g.route_header.clone(),
                services,
            }
        })
        .collect();
    LanesMap {
        groups,
        releases: Vec::new(),
    }
}

impl LanesMap {
    /// Fills every cell's live traffic from `history`.
    pub fn with_traffic(mut self, history: &crate::traffic::History) -> Self {
        for g in &mut self.groups {
            for s in &mut g.services {
                for c in &mut s.cells {
                    c.traffic = history.cell(&s.name, &s.namespace, &c.lane);
                }
            }
        }
        self
    }
}

/// A cell of `lane` with the lane's `pods` of the service; with no ready pod, it falls
/// back to `fallback` (unless it is the fallback lane).
fn cell(lane: &str, pods: &[&MapPod], fallback: Option<&String>) -> Cell {
    let versions: BTreeSet<String> = pods
        .iter()
        .flat_map(|p| &p.images)
        .map(|i| version_of_image(i).unwrap_or_else(|| i.clone()))
        .collect();
    let ready = pods.iter().filter(|p| p.ready).count();
    Cell {
        lane: lane.to_string(),
        versions: versions.into_iter().collect(),
        ready,
        total: pods.len(),
        falls_back_to: fallback
            .filter(|f| ready == 0 && f.as_str() != lane)
            .cloned(),
        traffic: None,
    }
}

#[cfg(test)]
mod tests;
