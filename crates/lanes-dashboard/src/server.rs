//! The dashboard's HTTP side: the page's files, which need no token (the page asks for
//! one when the API wants it), and its data, which the API's own authorisation guards.

use std::convert::Infallible;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use futures_util::Stream;
use tokio::sync::watch;

use crate::source::{Followers, MapJson};

const INDEX: &str = include_str!("../assets/index.html");
const APP: &str = include_str!("../assets/app.js");
const STYLE: &str = include_str!("../assets/style.css");

/// The page and its files, under `/ui/`.
pub fn assets() -> Router {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route(
            "/ui/",
            get(|| async { file("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/ui/app.js",
            get(|| async { file("text/javascript; charset=utf-8", APP) }),
        )
        .route(
            "/ui/style.css",
            get(|| async { file("text/css; charset=utf-8", STYLE) }),
        )
}

fn file(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// What the data routes read: the API, and the maps [`crate::source::run`] publishes.
#[derive(Clone)]
pub struct Maps {
    /// A client of the API the maps are read from.
    pub client: kube::Client,
    /// The maps as they are published.
    pub published: watch::Receiver<MapJson>,
    /// How many pages follow them now.
    pub followers: Followers,
    /// The hop records and the gateway, for request paths (none: not shown).
    pub hops: Option<std::sync::Arc<dyn crate::requests::HopSource>>,
}

/// The data under `/ui/api/`: the map now (`map`), and the map each time it changes as
/// server-sent events (`map/events`, event `map`, the latest one first); the releases'
/// controls (`POST releases/{kind}/{namespace}/{name}/{action}`); and request paths
/// (`paths`: the newest, `paths/{trace}`: one, `POST paths`: send one and see it).
pub fn api(maps: Maps) -> Router {
    Router::new()
        .route("/ui/api/map", get(map_now))
        .route("/ui/api/map/events", get(map_events))
        .route(
            "/ui/api/releases/{kind}/{namespace}/{name}/{action}",
            post(crate::controls::control),
        )
        .route(
            "/ui/api/paths",
            get(crate::requests::newest).post(crate::requests::send),
        )
        .route("/ui/api/paths/{trace}", get(crate::requests::by_trace))
        .with_state(maps)
}

async fn map_now(State(maps): State<Maps>) -> Response {
    match crate::source::read(&maps.client).await {
        Ok(map) => axum::Json(map).into_response(),
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            format!("cannot read the lanes map from the API: {e}\n"),
        )
            .into_response(),
    }
}

/// How long a new page waits for the map read for it before it takes the last one.
const FIRST_MAP_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

async fn map_events(
    State(maps): State<Maps>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    // The map as published so far is stale for this page: it waits for the one read
    // for it (the reader is woken by its arrival), else after a while takes what there is.
    let mut rx = maps.published;
    rx.borrow_and_update();
    // Followed while the stream lives: the guard goes with it.
    let guard = maps.followers.follow();
    let start = (rx, true, guard);
    let stream = futures_util::stream::unfold(start, |(mut rx, first, guard)| async move {
        if first {
            let _ = tokio::time::timeout(FIRST_MAP_WAIT, rx.changed()).await;
        } else if rx.changed().await.is_err() {
            return None;
        }
        let json = rx.borrow_and_update().clone();
        let event = Event::default().event("map").data(&*json);
        Some((Ok(event), (rx, false, guard)))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
