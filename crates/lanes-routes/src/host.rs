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
    if name.is_empty() || is_ip_literal(name) || name == "localhost" {
        return None;
    }
    // Read on every routed request: the labels are taken in place, not collected.
    let mut labels = name.split('.');
    let svc = labels.next()?;
    let Some(ns) = labels.next() else {
        return Some((svc, namespace));
    };
    match [labels.next(), labels.next(), labels.next(), labels.next()] {
        [None, ..] | [Some("svc"), None, ..] => Some((svc, ns)),
        [Some("svc"), Some("cluster"), Some("local"), None] => Some((svc, ns)),
        _ => None,
    }
}

/// Whether `name` is an IP address. Only a name that starts with a digit (IPv4) or
/// holds a colon (IPv6) can be one, so service names skip the parse.
fn is_ip_literal(name: &str) -> bool {
    (name.starts_with(|c: char| c.is_ascii_digit()) || name.contains(':'))
        && name.parse::<std::net::IpAddr>().is_ok()
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
        assert_eq!(parse_mesh_host("a.b.svc.cluster", "x"), None);
        assert_eq!(parse_mesh_host("a.b.svc.cluster.local.extra", "x"), None);
        assert_eq!(parse_mesh_host("a.b.cluster.local", "x"), None);
        assert_eq!(parse_mesh_host("web.", "x"), Some(("web", "x")));
        assert_eq!(parse_mesh_host("[::1]:80", "x"), None);
        assert_eq!(parse_mesh_host("10.0.0.1", "x"), None);
        assert_eq!(parse_mesh_host("127.0.0.1:80", "x"), None);
        assert_eq!(parse_mesh_host("localhost:80", "x"), None);
    }
}
