//! Mesh host names and label selectors, as the compiler and the data plane both read
//! them.

use std::collections::BTreeMap;

/// Whether every label of `selector` is in `labels` with the same value.
pub fn selector_matches(
    selector: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// A host name resolved to a mesh service: `svc`, `svc.ns`, `svc.ns.svc` or
/// `svc.ns.svc.cluster.local`, with or without a port, relative to `namespace`.
/// `None` for names of another shape (outside the mesh).
pub fn parse_mesh_host<'a>(host: &'a str, namespace: &'a str) -> Option<(&'a str, &'a str)> {
    let name = strip_port(host).trim_end_matches('.');
    if name.is_empty() || name.parse::<std::net::IpAddr>().is_ok() || name == "localhost" {
        return None;
    }
    let labels: Vec<&str> = name.split('.').collect();
    match labels.as_slice() {
        [svc] => Some((svc, namespace)),
        [svc, ns] => Some((svc, ns)),
        [svc, ns, "svc"] => Some((svc, ns)),
        [svc, ns, "svc", "cluster", "local"] => Some((svc, ns)),
        _ => None,
    }
}

/// The host without a `:port` suffix (IPv6 literals in brackets kept whole).
pub fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_once(']').map_or(host, |(h, _)| &h[1..]);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mesh_hosts() {
        assert_eq!(
            parse_mesh_host("mockb:8000", "default"),
            Some(("mockb", "default"))
        );
        assert_eq!(
            parse_mesh_host("mockc.demo", "default"),
            Some(("mockc", "demo"))
        );
        assert_eq!(parse_mesh_host("a.b.svc", "x"), Some(("a", "b")));
        assert_eq!(
            parse_mesh_host("a.b.svc.cluster.local:80", "x"),
            Some(("a", "b"))
        );
        assert_eq!(parse_mesh_host("api.example.com", "x"), None);
        assert_eq!(parse_mesh_host("127.0.0.1:80", "x"), None);
        assert_eq!(parse_mesh_host("localhost:80", "x"), None);
    }
}
