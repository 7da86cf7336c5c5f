//! Reads a resource path (`/api/v1/namespaces/default/pods/p/log`,
//! `/apis/apps/v1/deployments`) into what it names, as the API server's request-info
//! resolver does.

use super::catalog::{Resource, Sub};
use super::error::{ApiError, ApiResult, Reason};

/// What a resource path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The resource.
    pub resource: Resource,
    /// The namespace in the path, if any.
    pub namespace: Option<String>,
    /// The object's name, for object paths.
    pub name: Option<String>,
    /// The subresource, if any.
    pub sub: Option<Sub>,
}

/// Subresources of a namespace itself (`/api/v1/namespaces/{name}/status`).
const NAMESPACE_SUBRESOURCES: [&str; 2] = ["status", "finalize"];

/// Reads `parts` (the path after `/api/` or `/apis/`, split on `/`), `core` for `/api`.
pub fn parse(core: bool, parts: &[&str]) -> ApiResult<Target> {
    let (group, version, rest) = match (core, parts) {
        (true, [version, rest @ ..]) => ("", *version, rest),
        (false, [group, version, rest @ ..]) => (*group, *version, rest),
        _ => return Err(not_found_path()),
    };
    let mut rest: Vec<&str> = rest.to_vec();
    let mut namespace = None;
    if rest.first() == Some(&"namespaces") && rest.len() > 1 {
        namespace = Some(rest[1].to_string());
        if rest.len() > 2 && !NAMESPACE_SUBRESOURCES.contains(&rest[2]) {
            rest.drain(..2);
        } else {
            // The namespace object itself: namespaces/{name}[/status].
            namespace = None;
        }
    }
    let (plural, name, sub) = match rest.as_slice() {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(*name), None),
        [plural, name, sub] => (*plural, Some(*name), Some(*sub)),
        _ => return Err(not_found_path()),
    };
    let resource = Resource::find(group, version, plural).ok_or_else(|| {
        ApiError::new(
            Reason::NotFound,
            format!(
                "the server could not find the requested resource ({plural} is not served at {})",
                if group.is_empty() {
                    version.to_string()
                } else {
                    format!("{group}/{version}")
                }
            ),
        )
    })?;
    if namespace.is_some() && !resource.namespaced() {
        return Err(not_found_path());
    }
    let sub = match sub {
        None => None,
        Some(s) => Some(
            resource
                .subresources()
                .iter()
                .copied()
                .find(|x| x.name() == s)
                .ok_or_else(|| {
                    ApiError::new(
                        Reason::NotFound,
                        format!(
                            "the server could not find the requested resource ({} has no subresource {s:?})",
                            resource.qualified()
                        ),
                    )
                })?,
        ),
    };
    Ok(Target {
        resource,
        namespace,
        name: name.map(str::to_string),
        sub,
    })
}

fn not_found_path() -> ApiError {
    ApiError::new(
        Reason::NotFound,
        "the server could not find the requested resource",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use lanes_model::Kind;

    fn t(core: bool, path: &str) -> ApiResult<Target> {
        let parts: Vec<&str> = path.split('/').collect();
        parse(core, &parts)
    }

    #[test]
    fn reads_paths_as_the_api_server() {
        let p = t(true, "v1/namespaces/default/pods/p/log").unwrap();
        assert_eq!(p.resource.kind, Kind::Pod);
        assert_eq!(p.namespace.as_deref(), Some("default"));
        assert_eq!(p.name.as_deref(), Some("p"));
        assert_eq!(p.sub, Some(Sub::Log));
        let n = t(true, "v1/namespaces/demo").unwrap();
        assert_eq!(n.resource.kind, Kind::Namespace);
        assert_eq!(n.name.as_deref(), Some("demo"));
        let n = t(true, "v1/namespaces/demo/status").unwrap();
        assert_eq!(
            (n.resource.kind, n.sub),
            (Kind::Namespace, Some(Sub::Status))
        );
        let d = t(false, "apps/v1/deployments").unwrap();
        assert_eq!((d.resource.kind, d.namespace), (Kind::Deployment, None));
        let r = t(
            false,
            "rollouts.kruise.io/v1beta1/namespaces/default/rollouts/r/status",
        )
        .unwrap();
        assert_eq!((r.resource.kind, r.sub), (Kind::Rollout, Some(Sub::Status)));
        assert!(t(true, "deployments").is_err());
        assert!(t(false, "istio.alibabacloud.com/v1/namespaces/x/asmswimlanes").is_err());
        assert!(t(true, "v1/namespaces/default/pods/p/exec").is_err());
    }
}
