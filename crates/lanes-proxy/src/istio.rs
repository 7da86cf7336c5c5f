//! Istio's standard metrics (`istio_requests_total`, `istio_request_duration_milliseconds`),
//! with Istio's names and label names, so dashboards, Kiali and analysis templates written
//! for Istio's sidecars read Lanes' data plane as they are. A pod's inbound sidecar
//! reports them as Istio's does with `reporter="destination"`; the source of a request
//! is not carried between sidecars, so its labels are `unknown`, as Istio's are when a
//! peer sends no metadata.

use std::collections::BTreeMap;

use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::metrics::{ATTEMPT_BUCKETS_MS, Label};

/// Istio's value for a label whose value is not known.
const UNKNOWN: &str = "unknown";

/// The labels of both Istio series (Istio's names, one series per distinct set).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IstioLabels {
    /// `destination`: reported by the sidecar of the pod that served.
    pub reporter: &'static str,
    /// The calling workload (`unknown`: not carried between sidecars).
    pub source_workload: Label,
    /// The calling workload's namespace.
    pub source_workload_namespace: Label,
    /// The calling pod's `app` label.
    pub source_app: Label,
    /// The calling pod's `version` label.
    pub source_version: Label,
    /// The workload (Deployment) of the pod that served.
    pub destination_workload: Label,
    /// Its namespace.
    pub destination_workload_namespace: Label,
    /// The serving pod's `app` label.
    pub destination_app: Label,
    /// The serving pod's `version` label.
    pub destination_version: Label,
    /// The Service called, fully qualified (`name.namespace.svc.cluster.local`).
    pub destination_service: Label,
    /// The Service's name.
    pub destination_service_name: Label,
    /// The Service's namespace.
    pub destination_service_namespace: Label,
    /// The serving pod's canonical service (Istio's label, else `app`, else the workload).
    pub destination_canonical_service: Label,
    /// The serving pod's canonical revision (Istio's label, else `version`, else `latest`).
    pub destination_canonical_revision: Label,
    /// `http` or `grpc`.
    pub request_protocol: &'static str,
    /// The response status.
    pub response_code: u16,
    /// The call's `grpc-status` (empty when not a gRPC call, or it ended without one).
    pub grpc_response_status: GrpcStatus,
    /// Envoy's response flags: `-` when none.
    pub response_flags: &'static str,
    /// `none`: Lanes' sidecars do not speak mutual TLS.
    pub connection_security_policy: &'static str,
}

/// A `grpc-status` as a label value: the number, or empty when there is none.
#[derive(Debug, Clone, Copy, Default, Hash, PartialEq, Eq)]
pub struct GrpcStatus(pub Option<u32>);

impl EncodeLabelValue for GrpcStatus {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        match self.0 {
            Some(s) => write!(encoder, "{s}"),
            None => Ok(()),
        }
    }
}

/// Envoy's response flag for why the proxy answered instead of the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFlag {
    /// The application answered.
    None,
    /// The connection to the application failed (`UF`).
    ConnectFailure,
    /// The application reset the request (`UC`).
    Reset,
    /// The application did not answer in time (`UT`).
    Timeout,
    /// The client's request body failed (`DC`).
    DownstreamTermination,
}

impl ResponseFlag {
    /// Envoy's short name.
    pub fn as_str(self) -> &'static str {
        match self {
            ResponseFlag::None => "-",
            ResponseFlag::ConnectFailure => "UF",
            ResponseFlag::Reset => "UC",
            ResponseFlag::Timeout => "UT",
            ResponseFlag::DownstreamTermination => "DC",
        }
    }
}

/// The serving pod, as Istio's destination labels name it (worked out once per sidecar).
#[derive(Debug, Clone)]
pub struct Destination {
    workload: Label,
    namespace: Label,
    app: Label,
    version: Label,
    canonical_service: Label,
    canonical_revision: Label,
}

impl Destination {
    /// The labels of a pod of `workload` in `namespace`.
    pub fn new(workload: &str, namespace: &str, labels: &BTreeMap<String, String>) -> Self {
        let get = |keys: &[&str]| keys.iter().find_map(|k| labels.get(*k)).map(String::as_str);
        let app = get(&["app", "app.kubernetes.io/name"]);
        let version = get(&["version", "app.kubernetes.io/version"]);
        let canonical_service = get(&["service.istio.io/canonical-name"])
            .or(app)
            .unwrap_or(workload);
        let canonical_revision = get(&["service.istio.io/canonical-revision"])
            .or(version)
            .unwrap_or("latest");
        Destination {
            workload: workload.into(),
            namespace: namespace.into(),
            app: app.unwrap_or(UNKNOWN).into(),
            version: version.unwrap_or(UNKNOWN).into(),
            canonical_service: canonical_service.into(),
            canonical_revision: canonical_revision.into(),
        }
    }
}

/// One request a pod served, as Istio reports it.
#[derive(Debug, Clone, Copy)]
pub struct Served<'a> {
    /// The Service it was addressed to (`name`, `namespace`), when the host names one.
    pub service: Option<(&'a str, &'a str)>,
    /// Whether it was a gRPC call.
    pub grpc: bool,
    /// The response status.
    pub code: u16,
    /// The call's `grpc-status`, when it ended with one.
    pub grpc_status: Option<u32>,
    /// Why the proxy answered, if it did.
    pub flag: ResponseFlag,
}

/// Istio's two families, in a registry without Lanes' prefix.
#[derive(Debug)]
pub struct IstioMetrics {
    registry: Registry,
    requests: Family<IstioLabels, Counter>,
    duration: Family<IstioLabels, Histogram, fn() -> Histogram>,
}

fn duration_histogram() -> Histogram {
    Histogram::new(ATTEMPT_BUCKETS_MS)
}

impl Default for IstioMetrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<IstioLabels, Counter>::default();
        let duration = Family::<IstioLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            duration_histogram,
        );
        registry.register(
            "istio_requests",
            "Requests served, as Istio's sidecars count them",
            requests.clone(),
        );
        registry.register(
            "istio_request_duration_milliseconds",
            "Time to serve a request in milliseconds, as Istio's sidecars measure it",
            duration.clone(),
        );
        IstioMetrics {
            registry,
            requests,
            duration,
        }
    }
}

impl IstioMetrics {
    /// Counts one request `to` served in `took_ms`.
    pub fn record(&self, to: &Destination, served: &Served<'_>, took_ms: f64) {
        let unknown = Label::from(UNKNOWN);
        let (service, name, namespace) = match served.service {
            Some((name, ns)) => (
                Label::from(format!("{name}.{ns}.svc.cluster.local").as_str()),
                Label::from(name),
                Label::from(ns),
            ),
            None => (unknown.clone(), unknown.clone(), unknown.clone()),
        };
        let labels = IstioLabels {
            reporter: "destination",
            source_workload: unknown.clone(),
            source_workload_namespace: unknown.clone(),
            source_app: unknown.clone(),
            source_version: unknown,
            destination_workload: to.workload.clone(),
            destination_workload_namespace: to.namespace.clone(),
            destination_app: to.app.clone(),
            destination_version: to.version.clone(),
            destination_service: service,
            destination_service_name: name,
            destination_service_namespace: namespace,
            destination_canonical_service: to.canonical_service.clone(),
            destination_canonical_revision: to.canonical_revision.clone(),
            request_protocol: if served.grpc { "grpc" } else { "http" },
            response_code: served.code,
            grpc_response_status: GrpcStatus(served.grpc_status),
            response_flags: served.flag.as_str(),
            connection_security_policy: "none",
        };
        self.duration.get_or_create(&labels).observe(took_ms);
        self.requests.get_or_create(&labels).inc();
    }

    /// The registry, for encoding.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(m: &IstioMetrics) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, m.registry()).unwrap();
        out
    }

    #[test]
    fn a_served_request_is_one_istio_series_with_istios_label_names() {
        let m = IstioMetrics::default();
        let labels = [("app", "mocka"), ("version", "v1")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into();
        let to = Destination::new("mocka-v1-abc12", "default", &labels);
        let ok = Served {
            service: Some(("mocka", "default")),
            grpc: false,
            code: 200,
            grpc_status: None,
            flag: ResponseFlag::None,
        };
        m.record(&to, &ok, 3.0);
        m.record(&to, &ok, 30.0);
        m.record(
            &to,
            &Served {
                code: 503,
                flag: ResponseFlag::ConnectFailure,
                ..ok
            },
            1.0,
        );
        let t = text(&m);
        let ok_series = "istio_requests_total{reporter=\"destination\",source_workload=\"unknown\",\
            source_workload_namespace=\"unknown\",source_app=\"unknown\",source_version=\"unknown\",\
            destination_workload=\"mocka-v1-abc12\",destination_workload_namespace=\"default\",\
            destination_app=\"mocka\",destination_version=\"v1\",\
            destination_service=\"mocka.default.svc.cluster.local\",destination_service_name=\"mocka\",\
            destination_service_namespace=\"default\",destination_canonical_service=\"mocka\",\
            destination_canonical_revision=\"v1\",request_protocol=\"http\",response_code=\"200\",\
            grpc_response_status=\"\",response_flags=\"-\",connection_security_policy=\"none\"} 2";
        assert!(t.contains(ok_series), "{t}");
        assert!(
            t.contains("response_code=\"503\",grpc_response_status=\"\",response_flags=\"UF\""),
            "{t}"
        );
        m.record(
            &to,
            &Served {
                grpc: true,
                grpc_status: Some(14),
                ..ok
            },
            1.0,
        );
        assert!(
            text(&m).contains(
                "request_protocol=\"grpc\",response_code=\"200\",grpc_response_status=\"14\""
            ),
            "a failed call is counted with its status whatever the HTTP status: {t}"
        );
        let bucket = |le: &str, code: &str| {
            t.lines()
                .find(|l| {
                    l.starts_with(&format!(
                        "istio_request_duration_milliseconds_bucket{{le=\"{le}\""
                    )) && l.contains(&format!("response_code=\"{code}\""))
                })
                .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        };
        assert_eq!(bucket("2.5", "200"), Some(0), "{t}");
        assert_eq!(
            bucket("5.0", "200"),
            Some(1),
            "one of the 200s within 5 ms: {t}"
        );
        assert_eq!(bucket("50.0", "200"), Some(2), "{t}");
        assert_eq!(bucket("1.0", "503"), Some(1), "{t}");
    }

    #[test]
    fn canonical_names_fall_back_as_istios_do() {
        let to = Destination::new("w", "ns", &BTreeMap::new());
        assert_eq!(&*to.canonical_service.0, "w");
        assert_eq!(&*to.canonical_revision.0, "latest");
        assert_eq!(&*to.app.0, "unknown");
    }
}
