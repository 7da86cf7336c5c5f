//! `lanes up`'s status writer for Gateway API routes (HTTPRoutes, GRPCRoutes): per
//! parent, `Accepted` and `ResolvedRefs` as a Gateway API implementation writes them
//! ([`lanes_model::gateway_api::route_status`]); and for Gateways, their conditions,
//! address and listeners ([`lanes_model::gateway_listeners::gateway_status`]). Each is
//! rewritten only when it changes.

use std::collections::HashMap;

use lanes_model::Kind;
use lanes_model::gateway_api::{Refs, route_status};
use lanes_model::gateway_listeners::{GatewaySpec, RouteParent, gateway_status};
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
            out.gateways.insert(ns_name(&gw), GatewaySpec::of(&gw));
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

/// One pass: every route whose status is not what its references make it gets it, and
/// every Gateway the status Lanes' gateway (reached at `address`) gives it.
pub fn reconcile(store: &Store, address: Option<&str>) -> Result<(), StoreError> {
    let listed = Listed::read(store)?;
    let now = jiff::Timestamp::now().to_string();
    let mut parents = Vec::new();
    for kind in [Kind::HttpRoute, Kind::GrpcRoute] {
        for route in store.list(kind, None)?.0 {
            parents.extend(route_parents(&route));
            let status = route_status(&route, &listed, &now);
            write_status_if_changed(store, &route, status, |current| {
                route_status(current, &listed, &now)
            })?;
        }
    }
    for gateway in store.list(Kind::KubeGateway, None)?.0 {
        let status = gateway_status(&gateway, &parents, address, &now);
        write_status_if_changed(store, &gateway, status, |current| {
            gateway_status(current, &parents, address, &now)
        })?;
    }
    Ok(())
}

/// Each parent of `route`, as a Gateway's status counts it.
fn route_parents(route: &Value) -> Vec<RouteParent> {
    let s = |p: &str| {
        route
            .pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let hostnames: Vec<String> = route
        .pointer("/spec/hostnames")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|h| Some(h.as_str()?.to_string()))
        .collect();
    let refs = route.pointer("/spec/parentRefs").and_then(Value::as_array);
    refs.into_iter()
        .flatten()
        .filter_map(|p| serde_json::from_value(p.clone()).ok())
        .map(|parent| RouteParent {
            kind: s("/kind"),
            namespace: s("/metadata/namespace"),
            hostnames: hostnames.clone(),
            parent,
        })
        .collect()
}

/// Writes `status` to `object` unless it already has it; inside the transaction, from
/// the object as it is then (`status_of` it), which may have changed.
fn write_status_if_changed(
    store: &Store,
    object: &Value,
    status: Value,
    status_of: impl Fn(&Value) -> Value,
) -> Result<(), StoreError> {
    if object.get("status") == Some(&status) {
        return Ok(());
    }
    let Some(key) = lanes_store::key_of_value(object) else {
        return Ok(());
    };
    store.write(|t| {
        if let Some(current) = t.get(&key)? {
            let status = status_of(&current);
            if current.get("status") != Some(&status) {
                t.replace_status(&key, status, None)?;
            }
        }
        Ok(())
    })
}

/// Runs the status writer until `shutdown`; `address` is where Lanes' gateway is
/// reached, written in each Gateway's status.
pub async fn run(
    store: std::sync::Arc<Store>,
    address: Option<String>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    crate::controller::run(
        "gateway-api-routes",
        store,
        relevant,
        std::time::Duration::from_secs(5),
        move |store| reconcile(store, address.as_deref()),
        shutdown,
    )
    .await;
}
