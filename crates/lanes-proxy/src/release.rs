//! A release's share of a lane group's ingress, as the gateway runs it: of the requests
//! that match the group rule and name no lane, those matching the step's `matches`, and
//! the step's percentage of the rest, enter the canary lane (with the step's header
//! changes); the others enter the baseline lane. The share is sticky per trace-header
//! value and grows monotonically: a trace in the canary lane at 10% stays there at 50%.

use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};
use lanes_routes::{HeaderChanges, ReleaseRoute};

use crate::matching::{MatchError, RequestMatcher, RequestView, host_matches};

/// A lane a release sends requests into, and where they go.
#[derive(Debug)]
pub struct Entry {
    /// Lane.
    pub lane: Arc<str>,
    /// Destination service key (`name.namespace`).
    pub service: String,
    /// Destination port.
    pub port: Option<u16>,
}

/// Header changes, ready to apply.
#[derive(Debug, Default)]
pub struct HeaderEdits {
    set: Vec<(HeaderName, HeaderValue)>,
    add: Vec<(HeaderName, HeaderValue)>,
    remove: Vec<HeaderName>,
}

impl HeaderEdits {
    fn build(changes: &HeaderChanges) -> Result<HeaderEdits, String> {
        let pair = |(n, v): &(String, String)| {
            let name = HeaderName::from_bytes(n.as_bytes()).map_err(|_| n.clone())?;
            let value = HeaderValue::from_str(v).map_err(|_| format!("{n}: {v:?}"))?;
            Ok::<_, String>((name, value))
        };
        Ok(HeaderEdits {
            set: changes.set.iter().map(pair).collect::<Result<_, _>>()?,
            add: changes.add.iter().map(pair).collect::<Result<_, _>>()?,
            remove: changes
                .remove
                .iter()
                .map(|n| HeaderName::from_bytes(n.as_bytes()).map_err(|_| n.clone()))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Applies the changes to a request's headers.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
    }

    /// Whether there is nothing to change.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}

/// A release's hold on its group's ingress.
#[derive(Debug)]
pub struct Release {
    /// The Rollout, as `namespace/name`.
    pub rollout: String,
    hosts: Vec<String>,
    matchers: Vec<RequestMatcher>,
    /// Where the other requests go.
    pub baseline: Entry,
    /// Where the release's share goes.
    pub canary: Entry,
    percent: u32,
    canary_matchers: Vec<RequestMatcher>,
    /// Header changes of the requests sent into the canary lane.
    pub canary_headers: HeaderEdits,
}

/// Why a release does not build.
#[derive(Debug)]
pub enum ReleaseError {
    /// A condition does not compile.
    Match(MatchError),
    /// A header change names an invalid header or value.
    Header(String),
}

impl Release {
    /// Builds a release from its route, with `lane` interning the group's lane names.
    pub fn build(r: &ReleaseRoute, lane: impl Fn(&str) -> Arc<str>) -> Result<Self, ReleaseError> {
        let compile = |ms: &[lanes_routes::HttpMatchRequest]| {
            ms.iter()
                .map(RequestMatcher::compile)
                .collect::<Result<Vec<_>, _>>()
                .map_err(ReleaseError::Match)
        };
        let entry = |e: &lanes_routes::LaneEntry| Entry {
            lane: lane(&e.lane),
            service: crate::routing::key(&e.destination.name, &e.destination.namespace),
            port: e.destination.port,
        };
        Ok(Release {
            rollout: r.rollout.clone(),
            hosts: r.hosts.clone(),
            matchers: compile(&r.matches)?,
            baseline: entry(&r.baseline),
            canary: entry(&r.canary),
            percent: r.percent.min(100),
            canary_matchers: compile(&r.canary_matches)?,
            canary_headers: HeaderEdits::build(&r.canary_headers).map_err(ReleaseError::Header)?,
        })
    }

    /// Whether the request falls under the group rule this release splits.
    pub fn applies_to(&self, req: &RequestView<'_>) -> bool {
        self.hosts.iter().any(|h| host_matches(h, req.authority))
            && (self.matchers.is_empty() || self.matchers.iter().any(|m| m.matches(req)))
    }

    /// Whether the request enters the canary lane: it matches the step's `matches`, or
    /// its ticket (0..100, from its trace-header value) falls within the share.
    pub fn is_canary(&self, req: &RequestView<'_>, ticket: u32) -> bool {
        self.canary_matchers.iter().any(|m| m.matches(req)) || ticket < self.percent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_edits_remove_then_set_then_add() {
        let edits = HeaderEdits::build(&HeaderChanges {
            set: vec![("x-release".into(), "step2".into())],
            add: vec![("x-tag".into(), "b".into())],
            remove: vec!["x-drop".into()],
        })
        .unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-release", "old".parse().unwrap());
        h.insert("x-tag", "a".parse().unwrap());
        h.insert("x-drop", "gone".parse().unwrap());
        edits.apply(&mut h);
        assert_eq!(h["x-release"], "step2");
        let tags: Vec<_> = h.get_all("x-tag").iter().collect();
        assert_eq!(tags, ["a", "b"]);
        assert!(h.get("x-drop").is_none());
        // A value no header may carry is refused when the routes are built.
        let bad = HeaderChanges {
            set: vec![("x-release".into(), "a\nb".into())],
            ..Default::default()
        };
        assert!(HeaderEdits::build(&bad).is_err());
    }
}
