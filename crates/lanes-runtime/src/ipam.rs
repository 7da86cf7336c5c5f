//! Pod addresses: one loopback address per pod, from a /16 of 127.0.0.0/8, skipping the
//! first /24 (where 127.0.0.1 lives) and any address something already listens on.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::Mutex;

/// Hands out and takes back pod addresses.
#[derive(Debug)]
pub struct Ipam {
    base: [u8; 2],
    used: Mutex<BTreeSet<Ipv4Addr>>,
}

/// Ports every pod address must have free (the sidecar's).
pub const PROBE_PORTS: [u16; 2] = [15006, 15001];

impl Ipam {
    /// Addresses from `127.<second>.0.0/16`.
    pub fn new(second: u8) -> Ipam {
        Ipam {
            base: [127, second],
            used: Mutex::new(BTreeSet::new()),
        }
    }

    fn free_on_host(ip: Ipv4Addr) -> bool {
        PROBE_PORTS
            .iter()
            .all(|p| TcpListener::bind(SocketAddr::from((ip, *p))).is_ok())
    }

    /// Takes `preferred` if it is in range and free, else the next free address.
    pub fn allocate(&self, preferred: Option<Ipv4Addr>) -> Option<Ipv4Addr> {
        let mut used = self.used.lock().ok()?;
        if let Some(ip) = preferred
            && ip.octets()[..2] == self.base
            && ip.octets()[2] != 0
            && !used.contains(&ip)
            && Self::free_on_host(ip)
        {
            used.insert(ip);
            return Some(ip);
        }
        for third in 1..=255u8 {
            for fourth in 1..=254u8 {
                let ip = Ipv4Addr::new(self.base[0], self.base[1], third, fourth);
                if !used.contains(&ip) && Self::free_on_host(ip) {
                    used.insert(ip);
                    return Some(ip);
                }
            }
        }
        None
    }

    /// Gives an address back.
    pub fn release(&self, ip: Ipv4Addr) {
        if let Ok(mut used) = self.used.lock() {
            used.remove(&ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_distinct_addresses_and_reuses_released_ones() {
        let ipam = Ipam::new(211);
        let a = ipam.allocate(None).unwrap();
        let b = ipam.allocate(None).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.octets()[..2], [127, 211]);
        assert_ne!(a.octets()[2], 0);
        ipam.release(a);
        assert_eq!(ipam.allocate(Some(a)), Some(a));
        // An address in use elsewhere is skipped.
        let busy = Ipv4Addr::new(127, 211, 9, 9);
        let _hold = TcpListener::bind((busy, 15006)).unwrap();
        assert_ne!(ipam.allocate(Some(busy)), Some(busy));
    }
}
