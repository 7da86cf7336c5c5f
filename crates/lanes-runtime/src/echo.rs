//! The Gateway API conformance echo server, as `lanes up` runs the images
//! `registry.k8s.io/gateway-api/echo-basic` and `echo-advanced`: every request is
//! answered 200 with JSON naming what arrived (path with query, host, method,
//! protocol, headers) and where (the pod's namespace and name), the fields the
//! conformance suite reads.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri, Version};
use serde::Serialize;
use tokio::net::TcpListener;

/// Where the echo server listens and what it says of itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EchoConfig {
    /// Where to listen (`LANES_LISTEN`).
    pub listen: SocketAddr,
    /// Where to answer gRPC, when the image's args ask for it (`LANES_ECHO_GRPC`).
    pub grpc: Option<SocketAddr>,
    /// The pod's namespace (`POD_NAMESPACE`, else `NAMESPACE`).
    pub namespace: String,
    /// The pod's name (`POD_NAME`).
    pub pod: String,
}

impl EchoConfig {
    /// Reads the configuration from the environment `lanes up` gives a pod.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<EchoConfig, String> {
        let listen = get("LANES_LISTEN").unwrap_or_else(|| "127.0.0.1:3000".into());
        let address = |a: String| {
            a.parse()
                .map_err(|_| format!("cannot listen on {a:?}: not an address"))
        };
        Ok(EchoConfig {
            listen: address(listen)?,
            grpc: get("LANES_ECHO_GRPC").map(address).transpose()?,
            namespace: get("POD_NAMESPACE")
                .or_else(|| get("NAMESPACE"))
                .unwrap_or_default(),
            pod: get("POD_NAME").unwrap_or_default(),
        })
    }
}

/// What the echo server answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Echoed {
    /// The request's path and query.
    pub path: String,
    /// The Host it was sent to.
    pub host: String,
    /// Its method.
    pub method: String,
    /// Its protocol (`HTTP/1.1`, `HTTP/2.0`).
    pub proto: String,
    /// Its headers, by canonical name (`X-Header-Set`), each with its values.
    pub headers: BTreeMap<String, Vec<String>>,
    /// The namespace of the pod that answered.
    pub namespace: String,
    /// The name of the pod that answered.
    pub pod: String,
}

/// A header name as Go writes it: each dash-separated word capitalised.
pub fn canonical(name: &str) -> String {
    name.split('-')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + &c.as_str().to_ascii_lowercase(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// What arrived, as [`Echoed`] says it.
pub fn echoed(
    config: &EchoConfig,
    method: &Method,
    uri: &Uri,
    version: Version,
    headers: &HeaderMap,
) -> Echoed {
    let mut by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        by_name
            .entry(canonical(name.as_str()))
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    let host = headers
        .get(axum::http::header::HOST)
        .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
        .or_else(|| uri.authority().map(ToString::to_string))
        .unwrap_or_default();
    Echoed {
        path: uri
            .path_and_query()
            .map_or_else(|| uri.path().to_string(), ToString::to_string),
        host,
        method: method.to_string(),
        proto: format!("{version:?}"),
        headers: by_name,
        namespace: config.namespace.clone(),
        pod: config.pod.clone(),
    }
}

async fn answer(
    State(config): State<Arc<EchoConfig>>,
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
) -> Json<Echoed> {
    Json(echoed(&config, &method, &uri, version, &headers))
}

/// Serves HTTP, and gRPC when configured ([`crate::echo_grpc`]), until `stop` resolves.
pub async fn serve(
    config: EchoConfig,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(config.listen).await?;
    let grpc = match config.grpc {
        Some(addr) => Some(TcpListener::bind(addr).await?),
        None => None,
    };
    let config = Arc::new(config);
    let (stopping, stopped) = tokio::sync::watch::channel(false);
    let until_stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let app = axum::Router::new()
        .fallback(answer)
        .with_state(config.clone());
    let http = axum::serve(listener, app).with_graceful_shutdown(until_stopped(stopped.clone()));
    let grpc = async {
        match grpc {
            Some(l) => crate::echo_grpc::serve(config, l, until_stopped(stopped)).await,
            None => Ok(()),
        }
    };
    let signal = async {
        stop.await;
        let _ = stopping.send(true);
        Ok(())
    };
    tokio::try_join!(async { http.await }, grpc, signal)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_name_the_request_and_the_pod() {
        let config = EchoConfig::from_env(|k| {
            [
                ("LANES_LISTEN", "127.0.0.1:8080"),
                ("POD_NAMESPACE", "mesh"),
                ("POD_NAME", "echo-v1-a"),
            ]
            .into_iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
        })
        .unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("host", "echo".parse().unwrap());
        headers.append("x-header-set", "a".parse().unwrap());
        headers.append("x-header-set", "b".parse().unwrap());
        let uri: Uri = "/v2/x?a=1".parse().unwrap();
        let e = echoed(&config, &Method::POST, &uri, Version::HTTP_11, &headers);
        assert_eq!(e.path, "/v2/x?a=1");
        assert_eq!(
            (e.host.as_str(), e.method.as_str(), e.proto.as_str()),
            ("echo", "POST", "HTTP/1.1")
        );
        assert_eq!(e.headers["X-Header-Set"], ["a", "b"]);
        assert_eq!(
            (e.namespace.as_str(), e.pod.as_str()),
            ("mesh", "echo-v1-a")
        );
        assert!(EchoConfig::from_env(|k| (k == "LANES_LISTEN").then(|| "nope".into())).is_err());
    }
}
