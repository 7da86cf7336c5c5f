//! Hop records: every routed hop of a request (the gateway, a sidecar's outbound call,
//! the pod's inbound side) is one span of its W3C trace, with the lane asked for, the
//! subset that served and any fallback. A hop continues the trace its request carries
//! in `traceparent` (or, when the application passed on only the lane group's trace
//! header, the trace of the request that brought it into the pod), and hands the next
//! hop a `traceparent` naming itself as parent. Records go to a bounded ring (what
//! `lanes trace` reads), to an OTLP exporter and to the access log, each if enabled.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

use crate::proxy::Side;

/// W3C trace context header.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// A trace id: 16 bytes, not all zero.
pub type TraceId = [u8; 16];

/// A span id: 8 bytes, not all zero.
pub type SpanId = [u8; 8];

/// The fields of a valid `traceparent` (`<version>-<32 hex>-<16 hex>-<2 hex>`, ids not
/// all zeros): its trace id and parent span id, as written.
pub fn traceparent_fields(headers: &HeaderMap) -> Option<(&str, &str)> {
    // Fixed positions: `vv-` 32 hex `-` 16 hex `-ff`, and for a version above 00
    // perhaps more after a `-` at 55. Visible ASCII only, so byte offsets are chars.
    let value = headers.get(TRACEPARENT)?.to_str().ok()?.trim_ascii();
    let b = value.as_bytes();
    if b.len() < 55 || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
        return None;
    }
    let version = &b[..2];
    let ends_right = if version == b"00" {
        b.len() == 55
    } else {
        version != b"ff" && b.get(55).is_none_or(|&c| c == b'-')
    };
    let is_hex = |f: &[u8]| {
        f.iter()
            .all(|&c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    };
    let non_zero = |f: &[u8]| f.iter().any(|&c| c != b'0');
    let (trace, parent) = (&b[3..35], &b[36..52]);
    let valid = ends_right
        && is_hex(version)
        && is_hex(trace)
        && non_zero(trace)
        && is_hex(parent)
        && non_zero(parent)
        && is_hex(&b[53..55]);
    if !valid {
        return None;
    }
    Some((value.get(3..35)?, value.get(36..52)?))
}

/// Where a hop sits in its trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanContext {
    /// The trace.
    pub trace_id: TraceId,
    /// This span.
    pub span_id: SpanId,
}

impl SpanContext {
    /// The span a request's `traceparent` names, if valid.
    pub fn from_headers(headers: &HeaderMap) -> Option<SpanContext> {
        let (trace, parent) = traceparent_fields(headers)?;
        Some(SpanContext {
            trace_id: from_hex(trace)?,
            span_id: from_hex(parent)?,
        })
    }

    /// A new span under `parent`, or the first span of a new trace. Ids come of a
    /// fast per-thread generator (as OpenTelemetry's SDKs make them): unique enough to
    /// tell spans apart, not secrets.
    pub fn child_of(parent: Option<&SpanContext>) -> SpanContext {
        let span_id = fastrand::u64(1..).to_be_bytes();
        let trace_id = match parent {
            Some(p) => p.trace_id,
            None => fastrand::u128(1..).to_be_bytes(),
        };
        SpanContext { trace_id, span_id }
    }

    /// Names this span as the parent of the next hop (sampled).
    pub fn propagate(&self, headers: &mut HeaderMap) {
        // "00-" 32 hex "-" 16 hex "-01", written in place.
        let mut text = [0u8; 55];
        text[..3].copy_from_slice(b"00-");
        write_hex(&self.trace_id, &mut text[3..35]);
        text[35] = b'-';
        write_hex(&self.span_id, &mut text[36..52]);
        text[52..].copy_from_slice(b"-01");
        if let Ok(v) = HeaderValue::from_bytes(&text) {
            headers.insert(TRACEPARENT, v);
        }
    }
}

/// Writes the lower-case hex of `bytes` into `out` (twice as long).
fn write_hex(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (b, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0xf)];
    }
}

/// The bytes `text` spells in hex (either case), if it is exactly `2 * N` hex digits.
pub(crate) fn from_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let digits = text.as_bytes();
    if digits.len() != 2 * N {
        return None;
    }
    let nibble = |c: u8| {
        char::from(c)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *o = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

/// An id's bytes, written as lower-case hex (in JSON, in logs, in `lanes trace`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Hex<const N: usize>(pub [u8; N]);

impl<const N: usize> fmt::Display for Hex<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.chunks(32) {
            let mut text = [0u8; 64];
            let text = &mut text[..2 * chunk.len()];
            write_hex(chunk, text);
            f.write_str(std::str::from_utf8(text).map_err(|_| fmt::Error)?)?;
        }
        Ok(())
    }
}

impl<const N: usize> fmt::Debug for Hex<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl<const N: usize> std::str::FromStr for Hex<N> {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        from_hex(text)
            .map(Hex)
            .ok_or_else(|| format!("{text:?} is not {} hex digits", 2 * N))
    }
}

impl<const N: usize> Serialize for Hex<N> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de, const N: usize> Deserialize<'de> for Hex<N> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A fallback a hop took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HopFallback {
    /// The lane asked for.
    pub from: Arc<str>,
    /// The lane that served.
    pub to: Arc<str>,
    /// Why (`lane_lacks_service`, `connect_error`, `upstream_status`, ...).
    pub reason: Cow<'static, str>,
}

/// One hop of a request: a span.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hop {
    /// The trace (32 hex digits).
    pub trace_id: Hex<16>,
    /// This hop's span (16 hex digits).
    pub span_id: Hex<8>,
    /// The span this hop continues, when the request came with one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_span_id: Option<Hex<8>>,
    /// `gateway`, `outbound` or `inbound`.
    pub role: Side,
    /// The Service routed to (gateway, outbound) or addressed (inbound), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<Arc<str>>,
    /// Its namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<Arc<str>>,
    /// The pod whose sidecar handled the hop (none at the gateway).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<Arc<str>>,
    /// The lane the request asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lane: Option<Arc<str>>,
    /// The lane whose subset served it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subset: Option<Arc<str>>,
    /// The fallback taken, if any (boxed: rare, and a hop is moved whole).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Box<HopFallback>>,
    /// The response status.
    pub status: u16,
    /// A gRPC call's status, when its answer's head carries one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_status: Option<u32>,
    /// When the hop began, in nanoseconds since the Unix epoch.
    pub start_unix_nano: u64,
    /// From the request's arrival to the response head, in nanoseconds.
    pub duration_nano: u64,
}

/// A hop under way: its span and when it began.
#[derive(Debug, Clone, Copy)]
pub struct Span {
    /// This hop's place in the trace.
    pub context: SpanContext,
    /// The span it continues.
    pub parent: Option<SpanId>,
    /// When it began.
    pub started: SystemTime,
}

impl Span {
    /// Begins a hop continuing `parent` (a new trace without one).
    pub fn begin(parent: Option<SpanContext>) -> Span {
        Span {
            context: SpanContext::child_of(parent.as_ref()),
            parent: parent.map(|p| p.span_id),
            started: SystemTime::now(),
        }
    }

    /// Begins the first hop of trace `trace` (a new trace without one).
    pub fn begin_trace(trace: Option<TraceId>) -> Span {
        let mut context = SpanContext::child_of(None);
        if let Some(t) = trace {
            context.trace_id = t;
        }
        Span {
            context,
            parent: None,
            started: SystemTime::now(),
        }
    }

    /// The record of this hop, ended now, with the rest of its fields empty.
    pub fn record(&self, role: Side, status: u16) -> Hop {
        let since_epoch = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Hop {
            trace_id: Hex(self.context.trace_id),
            span_id: Hex(self.context.span_id),
            parent_span_id: self.parent.map(Hex),
            role,
            service: None,
            namespace: None,
            pod: None,
            lane: None,
            subset: None,
            fallback: None,
            status,
            grpc_status: None,
            start_unix_nano: nanos(since_epoch(self.started)),
            duration_nano: nanos(self.started.elapsed().unwrap_or(Duration::ZERO)),
        }
    }
}

/// Somewhere else a hop goes (an exporter, the access log).
pub type HopSink = Box<dyn Fn(&Hop) + Send + Sync>;

/// Where hop records go: a ring of the newest, and each to `also` (the exporter, the
/// access log) when set.
pub struct Hops {
    ring: Mutex<VecDeque<Hop>>,
    capacity: usize,
    also: Vec<HopSink>,
}

impl std::fmt::Debug for Hops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hops")
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl Hops {
    /// Keeps the newest `capacity` hops (none at 0) and hands each to every `also`.
    pub fn new(capacity: usize, also: Vec<HopSink>) -> Hops {
        Hops {
            ring: Mutex::new(VecDeque::with_capacity(capacity.min(1024))),
            capacity,
            also,
        }
    }

    /// Takes one hop.
    pub fn push(&self, hop: Hop) {
        for f in &self.also {
            f(&hop);
        }
        if self.capacity == 0 {
            return;
        }
        let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        if ring.len() == self.capacity {
            ring.pop_front();
        }
        ring.push_back(hop);
    }

    /// The hops of a trace still in the ring, oldest first.
    pub fn trace(&self, trace_id: &Hex<16>) -> Vec<Hop> {
        let ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        ring.iter()
            .filter(|h| h.trace_id == *trace_id)
            .cloned()
            .collect()
    }

    /// The newest requests that entered at the gateway: their gateway hops, newest
    /// first, at most `n`.
    pub fn recent_entries(&self, n: usize) -> Vec<Hop> {
        let ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        ring.iter()
            .rev()
            .filter(|h| h.role == Side::Gateway)
            .take(n)
            .cloned()
            .collect()
    }

    /// The trace of the newest hop (the last request answered), oldest hop first.
    pub fn last_trace(&self) -> Vec<Hop> {
        let newest = {
            let ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
            ring.back().map(|h| h.trace_id)
        };
        newest.map(|t| self.trace(&t)).unwrap_or_default()
    }
}

/// A trace's hops as a tree by parent links: each line `<indent><role> ...`, roots (no
/// parent among the hops) first, children in start order.
pub fn render_tree(hops: &[Hop]) -> String {
    let mut sorted: Vec<&Hop> = hops.iter().collect();
    sorted.sort_by_key(|h| h.start_unix_nano);
    let is_child = |h: &Hop| {
        h.parent_span_id
            .as_ref()
            .is_some_and(|p| sorted.iter().any(|o| o.span_id == *p))
    };
    let mut out = String::new();
    if let Some(first) = sorted.first() {
        out.push_str(&format!("trace {}\n", first.trace_id));
    }
    for root in sorted.iter().filter(|h| !is_child(h)) {
        render_node(&sorted, root, "", true, &mut out);
    }
    out
}

fn render_node(all: &[&Hop], hop: &Hop, prefix: &str, last: bool, out: &mut String) {
    let (branch, carry) = if last {
        ("└─ ", "   ")
    } else {
        ("├─ ", "│  ")
    };
    out.push_str(&format!("{prefix}{branch}{}\n", describe(hop)));
    let children: Vec<&&Hop> = all
        .iter()
        .filter(|h| h.parent_span_id == Some(hop.span_id))
        .collect();
    let next = format!("{prefix}{carry}");
    for (i, child) in children.iter().enumerate() {
        render_node(all, child, &next, i + 1 == children.len(), out);
    }
}

/// One line for a hop: role, where, lane → subset, fallback, status, duration.
fn describe(h: &Hop) -> String {
    let mut s = h.role.to_string();
    if let Some(pod) = &h.pod {
        s.push_str(&format!(" pod {pod}"));
    }
    if let Some(svc) = &h.service {
        let ns = h.namespace.as_deref().unwrap_or("");
        s.push_str(&format!(" → {svc}.{ns}"));
    }
    match (&h.lane, &h.subset) {
        (Some(l), Some(sub)) => s.push_str(&format!(" lane {l} served by {sub}")),
        (Some(l), None) => s.push_str(&format!(" lane {l}")),
        (None, Some(sub)) => s.push_str(&format!(" served by {sub}")),
        (None, None) => {}
    }
    if let Some(f) = &h.fallback {
        s.push_str(&format!(" (fallback {}->{}: {})", f.from, f.to, f.reason));
    }
    s.push_str(&format!(" {}", h.status));
    if let Some(g) = h.grpc_status {
        s.push_str(&format!(" grpc-status {g}"));
    }
    s.push_str(&format!(" {:.2} ms", h.duration_nano as f64 / 1e6));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_traceparent(v: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(TRACEPARENT, HeaderValue::from_static(v));
        h
    }

    #[test]
    fn hex_ids_round_trip_and_refuse_what_is_not_theirs() {
        let id = Hex([0x00, 0x0f, 0xa5, 0xff]);
        assert_eq!(id.to_string(), "000fa5ff");
        assert_eq!("000FA5ff".parse::<Hex<4>>(), Ok(id));
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"000fa5ff\"");
        assert_eq!(serde_json::from_str::<Hex<4>>("\"000fa5ff\"").unwrap(), id);
        for bad in ["000fa5f", "000fa5ff00", "+00fa5ff", "zz0fa5ff"] {
            assert!(bad.parse::<Hex<4>>().is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<Hex<4>>("\"zz\"").is_err());
    }

    #[test]
    fn a_valid_traceparent_is_continued_and_a_bad_one_starts_a_new_trace() {
        let h = with_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let parent = SpanContext::from_headers(&h).unwrap();
        assert_eq!(
            Hex(parent.trace_id).to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(Hex(parent.span_id).to_string(), "00f067aa0ba902b7");
        let span = Span::begin(Some(parent));
        assert_eq!(span.context.trace_id, parent.trace_id);
        assert_ne!(span.context.span_id, parent.span_id);
        assert_eq!(span.parent, Some(parent.span_id));
        let mut next = HeaderMap::new();
        span.context.propagate(&mut next);
        assert_eq!(SpanContext::from_headers(&next), Some(span.context));
        assert_eq!(
            next[TRACEPARENT],
            format!(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-{}-01",
                Hex(span.context.span_id)
            )
        );
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "garbage",
        ] {
            assert_eq!(
                SpanContext::from_headers(&with_traceparent(bad)),
                None,
                "{bad}"
            );
        }
        // A later version may carry more after the flags; spaces around are allowed.
        let later =
            with_traceparent(" 01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future ");
        assert_eq!(SpanContext::from_headers(&later), Some(parent));
        let root = Span::begin(None);
        assert_eq!(root.parent, None);
        assert_ne!(root.context.trace_id, [0; 16]);
    }

    const TRACE: Hex<16> = Hex([7; 16]);

    fn id(n: u8) -> Hex<8> {
        Hex([n; 8])
    }

    fn hop(span: u8, parent: Option<u8>, role: Side, start: u64) -> Hop {
        Hop {
            trace_id: TRACE,
            span_id: id(span),
            parent_span_id: parent.map(id),
            role,
            service: Some("mocka".into()),
            namespace: Some("default".into()),
            pod: None,
            lane: Some("canary".into()),
            subset: Some("base".into()),
            fallback: None,
            status: 200,
            grpc_status: None,
            start_unix_nano: start,
            duration_nano: 1_500_000,
        }
    }

    #[test]
    fn the_ring_keeps_the_newest_and_finds_a_trace_and_the_last() {
        let hops = Hops::new(3, Vec::new());
        for (i, t) in [1u8, 2, 2, 3].into_iter().enumerate() {
            let mut h = hop(t, None, Side::Gateway, i as u64);
            h.trace_id = Hex([t; 16]);
            hops.push(h);
        }
        assert!(hops.trace(&Hex([1; 16])).is_empty(), "the oldest went");
        assert_eq!(hops.trace(&Hex([2; 16])).len(), 2);
        assert_eq!(hops.last_trace()[0].trace_id, Hex([3; 16]));
        let none = Hops::new(0, Vec::new());
        none.push(hop(9, None, Side::Gateway, 0));
        assert!(none.last_trace().is_empty());
        // The newest entries at the gateway, newest first (not the sidecars' hops).
        hops.push(hop(4, Some(3), Side::Inbound, 9));
        let recent: Vec<u64> = hops
            .recent_entries(5)
            .iter()
            .map(|h| h.start_unix_nano)
            .collect();
        assert_eq!(recent, [3, 2]);
        assert_eq!(hops.recent_entries(1).len(), 1);
    }

    #[test]
    fn a_trace_renders_as_a_tree_by_parent_links() {
        // Span ids: the client 1, the gateway 2, inbound 3 and 5, outbound 4.
        let tree = render_tree(&[
            hop(5, Some(4), Side::Inbound, 4),
            hop(2, Some(1), Side::Gateway, 1),
            hop(3, Some(2), Side::Inbound, 2),
            hop(4, Some(3), Side::Outbound, 3),
        ]);
        let lines: Vec<&str> = tree.lines().collect();
        assert_eq!(lines[0], format!("trace {TRACE}"));
        assert!(
            lines[1]
                .starts_with("└─ gateway → mocka.default lane canary served by base 200 1.50 ms"),
            "{tree}"
        );
        assert!(lines[2].starts_with("   └─ inbound"), "{tree}");
        assert!(lines[3].starts_with("      └─ outbound"), "{tree}");
        assert!(lines[4].starts_with("         └─ inbound"), "{tree}");
    }
}
