//! The Lanes data plane: one HTTP proxy with two roles. The *gateway* picks a request's
//! lane at the ingress; a *sidecar* per pod keeps the lane across hops (route header,
//! baggage, trace correlation, the pod's own lane, the fallback target) and falls back
//! to the baseline lane when a lane lacks a service or its endpoint fails. Routing is
//! compiled from the lane compiler's route table and swapped in without locks.

pub mod admin;
pub mod body;
pub mod budget;
pub mod config;
pub mod correlation;
pub mod gateway_routes;
pub mod grpc;
pub mod guard;
pub mod istio;
pub mod listener;
pub mod local;
pub mod matching;
pub mod mesh_routes;
pub mod metrics;
pub mod otlp;
pub mod outlier;
pub mod proxy;
pub mod release;
pub mod routing;
pub mod server;
pub mod trace;
pub mod upgrade;
pub mod upstream;

pub use config::{Endpoint, ListenerLimits, PodIdentity, ProxyFile, Role, Settings};
pub use metrics::Metrics;
pub use proxy::{FALLBACK_HEADER, Mesh, Sidecar};
pub use routing::Routing;
