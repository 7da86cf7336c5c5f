//! The inbound sides of the sidecars this process serves, by listening address. A call
//! the gateway or an outbound side routes to one of them is handed over in memory:
//! the inbound side handles it as it would have off the wire, without the two trips
//! through loopback TCP and HTTP framing in between.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::proxy::Sidecar;

/// Sidecars by the address their inbound side listens on. Read on every routed call
/// (one atomic load and a hash lookup); written when a sidecar starts or stops.
#[derive(Debug, Default)]
pub struct LocalInbound {
    current: ArcSwap<HashMap<SocketAddr, Arc<Sidecar>>>,
    /// Serialises writers, so two changes never race to replace the map.
    write: Mutex<()>,
}

impl LocalInbound {
    /// The sidecar whose inbound side listens on `addr` in this process, if any.
    pub fn get(&self, addr: SocketAddr) -> Option<Arc<Sidecar>> {
        self.current.load().get(&addr).cloned()
    }

    /// Records that `sidecar`'s inbound side listens on `addr`.
    pub fn add(&self, addr: SocketAddr, sidecar: Arc<Sidecar>) {
        self.change(|map| {
            map.insert(addr, sidecar);
        });
    }

    /// Forgets the inbound side on `addr` (its listener is closing): calls to it go
    /// over the wire again, and fail as they would for any closed port.
    pub fn remove(&self, addr: SocketAddr) {
        self.change(|map| {
            map.remove(&addr);
        });
    }

    fn change(&self, f: impl FnOnce(&mut HashMap<SocketAddr, Arc<Sidecar>>)) {
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let mut map = HashMap::clone(&self.current.load());
        f(&mut map);
        self.current.store(Arc::new(map));
    }

    /// How many inbound sides are registered.
    pub fn len(&self) -> usize {
        self.current.load().len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{PodIdentity, Settings};
    use crate::metrics::Metrics;

    fn sidecar(name: &str) -> Arc<Sidecar> {
        let pod = PodIdentity {
            name: name.into(),
            namespace: "default".into(),
            labels: Default::default(),
            app_address: SocketAddr::from(([127, 0, 0, 1], 9)),
            ports: vec![9],
            workload: None,
        };
        Arc::new(Sidecar::new(pod, &Settings::default(), &Metrics::new()))
    }

    #[test]
    fn a_registered_inbound_side_is_found_until_it_is_removed() {
        let local = LocalInbound::default();
        let a: SocketAddr = "127.0.10.1:15006".parse().unwrap();
        let b: SocketAddr = "127.0.10.2:15006".parse().unwrap();
        local.add(a, sidecar("a"));
        local.add(b, sidecar("b"));
        assert_eq!(local.get(a).unwrap().pod.name, "a");
        assert_eq!(local.get(b).unwrap().pod.name, "b");
        assert!(local.get("127.0.10.1:15001".parse().unwrap()).is_none());
        local.remove(a);
        assert!(local.get(a).is_none());
        assert_eq!(local.len(), 1);
    }
}
