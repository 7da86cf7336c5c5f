//! Proxy configuration: settings with defaults, endpoints, a sidecar's pod identity, and
//! the YAML file `lanes proxy --config FILE` reads.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use lanes_routes::RouteTable;
use serde::{Deserialize, Serialize};

/// Tunables of the proxy. Durations are in milliseconds in the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Settings {
    /// Time to establish an upstream connection. It outlasts the kernel's first SYN
    /// retransmission (1 s), so a listener whose accept queue overflowed for a moment
    /// costs a retry, not a failed request (Envoy's default is 5 s too).
    pub connect_timeout_ms: u64,
    /// Time from sending a request upstream to its response head.
    pub request_timeout_ms: u64,
    /// Time a client has to send a request head (slow clients are cut off).
    pub header_read_timeout_ms: u64,
    /// Time from accepting a connection to its first byte: a connection that sends
    /// nothing is closed then.
    pub first_byte_timeout_ms: u64,
    /// A client connection with no request in flight for this long is closed.
    pub idle_timeout_ms: u64,
    /// Most client connections one listener holds at once; more are refused (closed
    /// at once) until one ends.
    pub max_connections: usize,
    /// Most entries of a sidecar's correlation table.
    pub correlation_capacity: usize,
    /// Seconds a correlation entry stays valid.
    pub correlation_ttl_seconds: u64,
    /// Request bodies up to this size are buffered so a failed attempt can be retried on
    /// the fallback subset; larger bodies stream and are not retried.
    pub max_replay_body_bytes: usize,
    /// Refuse calls to hosts that are no mesh service (Istio's `REGISTRY_ONLY`).
    pub registry_only: bool,
    /// Idle upstream connections kept per endpoint.
    pub pool_max_idle_per_host: usize,
    /// Proxy hops a request may take (`x-lanes-hops`); past it the request is refused
    /// with 508 Loop Detected.
    pub max_hops: u32,
    /// Upstream statuses that count as a failed attempt and are retried once on the
    /// fallback lane (with connect errors and resets before the response head).
    pub fallback_on_status: Vec<u16>,
    /// An upgraded connection (a WebSocket) with no byte either way for this long is
    /// closed.
    pub upgrade_idle_timeout_ms: u64,
    /// An upgraded connection is closed this long after it opened; 0: no limit.
    pub upgrade_max_duration_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            connect_timeout_ms: 5_000,
            request_timeout_ms: 15_000,
            header_read_timeout_ms: 10_000,
            first_byte_timeout_ms: 5_000,
            idle_timeout_ms: 30_000,
            max_connections: 4_096,
            correlation_capacity: 100_000,
            correlation_ttl_seconds: 60,
            max_replay_body_bytes: 64 * 1024,
            registry_only: false,
            pool_max_idle_per_host: 256,
            max_hops: 32,
            fallback_on_status: vec![500, 502, 503, 504],
            upgrade_idle_timeout_ms: 300_000,
            upgrade_max_duration_ms: 0,
        }
    }
}

impl Settings {
    /// Connect timeout.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
    /// Request timeout.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
    /// Header read timeout.
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }
    /// The limits every listener of this proxy applies to its client connections.
    pub fn listener_limits(&self) -> ListenerLimits {
        ListenerLimits {
            header_read_timeout: self.header_read_timeout(),
            first_byte_timeout: Duration::from_millis(self.first_byte_timeout_ms),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            max_connections: self.max_connections.max(1),
        }
    }
    /// The limits of an upgraded connection's tunnel.
    pub fn tunnel_limits(&self) -> crate::upgrade::TunnelLimits {
        crate::upgrade::TunnelLimits {
            idle: Duration::from_millis(self.upgrade_idle_timeout_ms.max(1)),
            max_duration: (self.upgrade_max_duration_ms > 0)
                .then(|| Duration::from_millis(self.upgrade_max_duration_ms)),
        }
    }
    /// Correlation TTL.
    pub fn correlation_ttl(&self) -> Duration {
        Duration::from_secs(self.correlation_ttl_seconds)
    }

    /// The first setting that cannot be zero but is, by its name in the file.
    pub fn first_zero(&self) -> Option<&'static str> {
        let must_be_positive = [
            ("connectTimeoutMs", self.connect_timeout_ms),
            ("requestTimeoutMs", self.request_timeout_ms),
            ("headerReadTimeoutMs", self.header_read_timeout_ms),
            ("firstByteTimeoutMs", self.first_byte_timeout_ms),
            ("idleTimeoutMs", self.idle_timeout_ms),
            ("maxConnections", self.max_connections as u64),
            ("correlationTtlSeconds", self.correlation_ttl_seconds),
            ("maxHops", u64::from(self.max_hops)),
            ("upgradeIdleTimeoutMs", self.upgrade_idle_timeout_ms),
        ];
        must_be_positive
            .into_iter()
            .find(|(_, value)| *value == 0)
            .map(|(name, _)| name)
    }
}

/// What a listener allows its client connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerLimits {
    /// Time to send a request head.
    pub header_read_timeout: Duration,
    /// Time from accept to the first byte.
    pub first_byte_timeout: Duration,
    /// Time with no request in flight before the connection is closed.
    pub idle_timeout: Duration,
    /// Connections held at once.
    pub max_connections: usize,
}

/// One endpoint of a service: an address that serves it, with its pod's labels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Endpoint {
    /// Service name.
    pub service: String,
    /// Service namespace.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Where to connect (in embedded mode, the pod's sidecar inbound).
    pub address: SocketAddr,
    /// The pod's labels (subsets select on them).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Whether the endpoint takes traffic.
    #[serde(default = "yes")]
    pub ready: bool,
    /// The pod's name, for logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
}

fn default_namespace() -> String {
    "default".to_string()
}

fn yes() -> bool {
    true
}

/// Who a sidecar works for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodIdentity {
    /// Pod name.
    pub name: String,
    /// Pod namespace.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Pod labels (its lane is the lane whose selector they match).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The application's address inbound traffic goes to (the pod IP and its first
    /// container port); a request naming another container port in
    /// `x-lanes-target-port` goes to that port on the same IP.
    pub app_address: SocketAddr,
    /// Container ports inbound traffic may target.
    #[serde(default)]
    pub ports: Vec<u16>,
    /// The workload the pod belongs to (its Deployment); the pod's own name when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
}

impl PodIdentity {
    /// The pod's workload: its Deployment, else the pod itself (as Istio names it).
    pub fn workload(&self) -> &str {
        self.workload.as_deref().unwrap_or(&self.name)
    }
}

/// The role of a standalone proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Ingress: picks the lane.
    Gateway,
    /// Per pod: keeps the lane across hops.
    Sidecar,
}

/// Listener addresses of a standalone proxy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Listeners {
    /// Gateway listener (gateway role).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<SocketAddr>,
    /// Inbound listener (sidecar role): mesh traffic to the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbound: Option<SocketAddr>,
    /// Outbound listener (sidecar role): the application's calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound: Option<SocketAddr>,
    /// Admin listener: `/metrics`, `/healthz`, `/config`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<SocketAddr>,
}

/// The file `lanes proxy --config FILE` reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyFile {
    /// Gateway or sidecar.
    pub role: Role,
    /// Where to listen.
    pub listeners: Listeners,
    /// The sidecar's pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodIdentity>,
    /// The route table (as `lanes render --routes` prints it).
    #[serde(default)]
    pub routes: RouteTable,
    /// Service endpoints.
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    /// Tunables.
    #[serde(default)]
    pub settings: Settings,
}

/// A problem with a proxy file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or parsed.
    #[error("{0}")]
    Parse(String),
    /// The file parsed but does not hold together.
    #[error("{path}: {message}")]
    Invalid {
        /// Field path.
        path: String,
        /// What is wrong.
        message: String,
    },
}

impl ProxyFile {
    /// Parses and checks a proxy file.
    pub fn parse(text: &str) -> Result<ProxyFile, ConfigError> {
        let file: ProxyFile =
            serde_saphyr::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        let invalid = |path: &str, message: &str| ConfigError::Invalid {
            path: path.to_string(),
            message: message.to_string(),
        };
        if let Some(name) = file.settings.first_zero() {
            return Err(invalid(
                &format!("settings.{name}"),
                "must be greater than 0 (there is no \"no limit\" for it)",
            ));
        }
        match file.role {
            Role::Gateway => {
                if file.listeners.gateway.is_none() {
                    return Err(invalid(
                        "listeners.gateway",
                        "the gateway role needs a gateway listener",
                    ));
                }
            }
            Role::Sidecar => {
                if file.pod.is_none() {
                    return Err(invalid(
                        "pod",
                        "the sidecar role needs its pod (name, labels, appAddress)",
                    ));
                }
                if file.listeners.inbound.is_none() && file.listeners.outbound.is_none() {
                    return Err(invalid(
                        "listeners",
                        "the sidecar role needs an inbound or an outbound listener",
                    ));
                }
            }
        }
        crate::routing::Routing::build(&file.routes, &file.endpoints)
            .map_err(|e| invalid("routes", &e.to_string()))?;
        Ok(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GATEWAY: &str = "role: gateway\nlisteners:\n  gateway: 127.0.0.1:0\n";

    #[test]
    fn a_zero_where_no_limit_is_meaningless_is_refused_by_name() {
        assert!(ProxyFile::parse(GATEWAY).is_ok());
        let zero_idle = format!("{GATEWAY}settings:\n  upgradeIdleTimeoutMs: 0\n");
        let err = ProxyFile::parse(&zero_idle).unwrap_err().to_string();
        assert!(
            err.starts_with("settings.upgradeIdleTimeoutMs: must be greater than 0"),
            "{err}"
        );
        let zero_cap = format!("{GATEWAY}settings:\n  maxConnections: 0\n");
        let err = ProxyFile::parse(&zero_cap).unwrap_err().to_string();
        assert!(err.starts_with("settings.maxConnections:"), "{err}");
        // 0 is "no limit" for a tunnel's life, and accepted.
        let no_max = format!("{GATEWAY}settings:\n  upgradeMaxDurationMs: 0\n");
        assert!(ProxyFile::parse(&no_max).is_ok());
    }
}
