//! Watches (`?watch=1`): newline-delimited JSON events with resourceVersions, from a
//! version (the changes after it, or `410 Expired` as an `ERROR` event when it is older
//! than the kept history) or from now (the current objects as `ADDED` first);
//! bookmarks when allowed; closed after `timeoutSeconds`; Tables when asked.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};
use axum::response::Response;
use futures_util::StreamExt;
use lanes_store::{EventType, StoreError};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::catalog::Resource;
use super::error::{ApiError, ApiResult, Reason};
use super::objects::{Filter, blocking};
use super::params::{Params, flag};
use super::path::Target;
use super::table::{self, Include};
use crate::ApiState;

/// The longest a watch stays open (the API server's default, 30 minutes).
const MAX_WATCH: Duration = Duration::from_secs(1800);
/// How often a bookmark is sent when allowed.
const BOOKMARK_EVERY: Duration = Duration::from_secs(30);

/// How each event's object is written.
#[derive(Clone)]
struct Render {
    resource: Resource,
    table: bool,
    include: Include,
}

impl Render {
    fn line(&self, kind: &str, object: &Value) -> Bytes {
        let shown = self.resource.present(object);
        let object = if self.table && kind != "BOOKMARK" && kind != "ERROR" {
            let rv = lanes_store::resource_version(object).to_string();
            table::render(&self.resource, &[shown], &rv, self.include, true)
        } else {
            shown
        };
        let mut bytes =
            serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
        bytes.push(b'\n');
        Bytes::from(bytes)
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let object = json!({"kind": self.resource.kind.name(),
                            "apiVersion": self.resource.api_version(), "metadata": meta});
        let mut bytes =
            serde_json::to_vec(&json!({"type": "BOOKMARK", "object": object})).unwrap_or_default();
        bytes.push(b'\n');
        Bytes::from(bytes)
    }
}

fn error_line(e: &ApiError) -> Bytes {
    let mut bytes =
        serde_json::to_vec(&json!({"type": "ERROR", "object": e.status()})).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

fn event_name(t: EventType) -> &'static str {
    match t {
        EventType::Added => "ADDED",
        EventType::Modified => "MODIFIED",
        EventType::Deleted => "DELETED",
    }
}

/// The watch's response: a stream that ends at `timeoutSeconds`, when the store's
/// broadcast closes, or when the watcher falls too far behind (an `ERROR` event).
pub async fn watch(
    state: ApiState,
    target: Target,
    headers: HeaderMap,
    params: Params,
) -> ApiResult<Response> {
    let r = target.resource;
    let filter = Filter::new(&target, &params)?;
    let render = Render {
        resource: r,
        table: table::wanted(&headers),
        include: Include::parse(params.include_object.as_deref()),
    };
    let since: Option<u64> = match params.resource_version.as_deref() {
        None | Some("") | Some("0") => None,
        Some(s) => Some(s.parse().map_err(|_| {
            ApiError::bad_request(format!(
                "resourceVersion: {s:?} is not a resourceVersion this server gave"
            ))
        })?),
    };
    let store = state.store.clone();
    let ns = target.namespace.clone();
    let mut first: Vec<Bytes> = Vec::new();
    let (start, past, rx) = match since {
        None => {
            let f = filter.clone();
            let (items, rv) = blocking(move || Ok(store.list(r.kind, ns.as_deref())?)).await?;
            let (_, rx) = state.store.watch(rv)?;
            for o in items.iter().filter(|o| f.matches(o)) {
                first.push(render.line("ADDED", o));
            }
            (rv, Vec::new(), Some(rx))
        }
        Some(rv) => match state.store.watch(rv) {
            Ok((past, rx)) => (rv, past, Some(rx)),
            Err(StoreError::Gone(_)) => {
                let current = state.store.resource_version().unwrap_or(rv);
                first.push(error_line(&ApiError::new(
                    Reason::Expired,
                    format!("too old resource version: {rv} ({current})"),
                )));
                (rv, Vec::new(), None)
            }
            Err(e) => return Err(e.into()),
        },
    };
    let mut last = start;
    for e in past {
        last = e.resource_version;
        if filter.matches(&e.object) {
            first.push(render.line(event_name(e.kind), &e.object));
        }
    }
    let bookmarks = flag(&params.allow_watch_bookmarks);
    if bookmarks && flag(&params.send_initial_events) {
        first.push(render.bookmark(last, true));
    }
    let timeout = params
        .timeout_seconds
        .map_or(MAX_WATCH, |s| Duration::from_secs(s).min(MAX_WATCH));
    let deadline = tokio::time::Instant::now() + timeout;
    let live = futures_util::stream::unfold(
        (rx, last, tokio::time::Instant::now() + BOOKMARK_EVERY),
        move |(rx, last, next_bookmark)| {
            let filter = filter.clone();
            let render = render.clone();
            async move {
                let mut rx = rx?;
                loop {
                    let wake = next_bookmark.min(deadline);
                    let got = tokio::time::timeout_at(wake, rx.recv()).await;
                    match got {
                        Err(_) if tokio::time::Instant::now() >= deadline => return None,
                        Err(_) => {
                            let next = tokio::time::Instant::now() + BOOKMARK_EVERY;
                            if bookmarks {
                                return Some((
                                    render.bookmark(last, false),
                                    (Some(rx), last, next),
                                ));
                            }
                            return Some((Bytes::new(), (Some(rx), last, next)));
                        }
                        Ok(Ok(e)) => {
                            if e.resource_version <= last {
                                continue;
                            }
                            let rv = e.resource_version;
                            if !filter.matches(&e.object) {
                                return Some((Bytes::new(), (Some(rx), rv, next_bookmark)));
                            }
                            let line = render.line(event_name(e.kind), &e.object);
                            return Some((line, (Some(rx), rv, next_bookmark)));
                        }
                        Ok(Err(RecvError::Lagged(n))) => {
                            let e = ApiError::new(
                                Reason::Expired,
                                format!("the watch fell {n} events behind; list and watch again"),
                            );
                            return Some((error_line(&e), (None, last, next_bookmark)));
                        }
                        Ok(Err(RecvError::Closed)) => return None,
                    }
                }
            }
        },
    )
    .filter(|b| std::future::ready(!b.is_empty()));
    let stream = futures_util::stream::iter(first)
        .chain(live)
        .map(Ok::<_, std::convert::Infallible>);
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .map_err(ApiError::internal)
}
