//! `lanes up`'s status writer for Gateway API routes (HTTPRoutes, GRPCRoutes): per
//! parent, `Accepted` and `ResolvedRefs` as a Gateway API implementation writes them
//! ([`lanes_model::gateway_api::route_status`]), rewritten only when they change.

use std::collections::HashMap;

use lanes_model::Kind;
use lanes_model::gateway_api::{Refs, route_status};
use lanes_model::gateway_listeners::GatewaySpec;
use lanes_store::{Store, StoreError};
use serde_json::Value;

/// The Services (with their ports) and Gateways of the store, by namespace and name.
#[derive(Default)]
struct Listed {
    services: HashMap<(String, String), Vec<u16>>,
    gateways: HashMap<(String, String), GatewaySpec>,
}

fn ns_name(v: &Value) -> (String, String) {
    let s = |p: &str| {
        v.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    (s("/metadata/namespace"), s("/metadata/name"))
}

impl Listed {
    fn read(store: &Store) -> Result<Listed, StoreError> {
        let mut out = Listed::default();
        for svc in store.list(Kind::Service, None)?.0 {
            let ports = svc
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|p| u16::try_from(p["port"].as_u64()?).ok())
                .collect();
            out.services.insert(ns_name(&svc), ports);
        }
        for gw in store.list(Kind::KubeGateway, None)?.0 {
            // Stored objects passed the CRD's schema; a spec that still does not read
            // is a Gateway with no listener Lanes' gateway can serve.
            let spec = gw
                .get("spec")
                .cloned()
                .and_then(|s| serde_json::from_value(s).ok())
                .unwrap_or_default();
            out.gateways.insert(ns_name(&gw), spec);
        }
        Ok(out)
    }
}

impl Refs for Listed {
    fn service_ports(&self, namespace: &str, name: &str) -> Option<Vec<u16>> {
        self.services
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    fn gateway(&self, namespace: &str, name: &str) -> Option<GatewaySpec> {
        self.gateways
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }
}

fn relevant(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::HttpRoute | Kind::GrpcRoute | Kind::Service | Kind::KubeGateway
    )
}

/// One pass: every route whose status is not what its references make it gets it.
pub fn reconcile(store: &Store) -> Result<(), StoreError> {
    let listed = Listed::read(store)?;
    let now = jiff::Timestamp::now().to_string();
    for kind in [Kind::HttpRoute, Kind::GrpcRoute] {
        for route in store.list(kind, None)?.0 {
            if route.get("status") == Some(&route_status(&route, &listed, &now)) {
                continue;
            }
            let Some(key) = lanes_store::key_of_value(&route) else {
                continue;
            };
            store.write(|t| {
                // Read again inside the transaction: the route may have changed.
                if let Some(current) = t.get(&key)? {
                    let status = route_status(&current, &listed, &now);
                    if current.get("status") != Some(&status) {
                        t.replace_status(&key, status, None)?;
                    }
                }
                Ok(())
            })?;
        }
    }
    Ok(())
}

/// Runs the route status writer until `shutdown`.
pub async fn run(store: std::sync::Arc<Store>, shutdown: tokio::sync::watch::Receiver<bool>) {
    crate::controller::run(
        "gateway-api-routes",
        store,
        relevant,
        std::time::Duration::from_secs(5),
        reconcile,
        shutdown,
    )
    .await;
}
