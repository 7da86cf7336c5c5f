//! What keeps the proxy from being turned on itself: the hop count every proxied
//! request carries (a loop is refused with 508 once it passes the limit), and the set of
//! Lanes' own listeners, which a sidecar never forwards a pass-through call to (a pod
//! must not reach the API, the gateway or another pod's sidecar around the mesh).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::RwLock;

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};

/// Request header counting the proxy hops a request has taken.
pub const HOPS_HEADER: HeaderName = HeaderName::from_static("x-lanes-hops");

/// The hops a request says it has taken (0 when it says nothing readable).
pub fn hops(headers: &HeaderMap) -> u32 {
    headers
        .get(&HOPS_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Whether a request that has taken `hops` hops may take one more.
pub fn is_looping(hops: u32, max_hops: u32) -> bool {
    hops >= max_hops
}

/// Stamps the hop count of the next hop.
pub fn set_next_hop(headers: &mut HeaderMap, hops: u32) {
    headers.insert(HOPS_HEADER, HeaderValue::from(hops.saturating_add(1)));
}

/// The addresses Lanes itself listens on in this process.
#[derive(Debug, Default)]
pub struct OwnListeners(RwLock<HashSet<SocketAddr>>);

impl OwnListeners {
    /// Adds a listener.
    pub fn add(&self, addr: SocketAddr) {
        if let Ok(mut set) = self.0.write() {
            set.insert(addr);
        }
    }

    /// Removes a listener.
    pub fn remove(&self, addr: SocketAddr) {
        if let Ok(mut set) = self.0.write() {
            set.remove(&addr);
        }
    }

    /// Whether a connection to `addr` would reach one of them: the same address, or
    /// the port of a listener bound to every address when `addr` is a local one.
    pub fn contains(&self, addr: SocketAddr) -> bool {
        let Ok(set) = self.0.read() else {
            return true;
        };
        set.contains(&addr)
            || set.iter().any(|own| {
                own.ip().is_unspecified()
                    && own.port() == addr.port()
                    && (addr.ip().is_loopback() || addr.ip().is_unspecified())
            })
            || (addr.ip().is_unspecified() && set.iter().any(|own| own.port() == addr.port()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hops_count_up_and_stop_at_the_limit() {
        let mut h = HeaderMap::new();
        assert_eq!(hops(&h), 0);
        set_next_hop(&mut h, 0);
        assert_eq!(hops(&h), 1);
        set_next_hop(&mut h, u32::MAX);
        assert_eq!(hops(&h), u32::MAX);
        h.insert(HOPS_HEADER, HeaderValue::from_static("junk"));
        assert_eq!(hops(&h), 0);
        assert!(!is_looping(31, 32));
        assert!(is_looping(32, 32));
    }

    #[test]
    fn own_listeners_match_exactly_and_by_port_when_bound_to_every_address() {
        let own = OwnListeners::default();
        own.add("127.0.1.1:15001".parse().unwrap_or_else(|_| unreachable!()));
        own.add("0.0.0.0:8080".parse().unwrap_or_else(|_| unreachable!()));
        let yes = [
            "127.0.1.1:15001",
            "127.0.0.1:8080",
            "127.9.9.9:8080",
            "0.0.0.0:15001",
        ];
        for a in yes {
            assert!(
                own.contains(a.parse().unwrap_or_else(|_| unreachable!())),
                "{a}"
            );
        }
        let no = ["127.0.1.1:8000", "127.0.1.2:15001"];
        for a in no {
            assert!(
                !own.contains(a.parse().unwrap_or_else(|_| unreachable!())),
                "{a}"
            );
        }
        own.remove("127.0.1.1:15001".parse().unwrap_or_else(|_| unreachable!()));
        assert!(!own.contains("127.0.1.1:15001".parse().unwrap_or_else(|_| unreachable!())));
    }
}
