//! Instant queries against Prometheus (`GET /api/v1/query`) for the `prometheus`
//! analysis metric (one number) and the built-in metrics on a cluster (a vector by
//! label), over HTTP or HTTPS (hyper), with a bearer token when one is configured, a
//! timeout, and a bounded answer.

use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// Largest answer read.
const MAX_ANSWER: usize = 1024 * 1024;

/// Why a query gave no number.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    /// The address is not an `http://` or `https://` URL.
    #[error("address {0:?} must be an http:// or https:// URL")]
    Address(String),
    /// No answer in time, or the connection failed.
    #[error("cannot query {address}: {why}")]
    Unreachable {
        /// The Prometheus.
        address: String,
        /// What happened.
        why: String,
    },
    /// Prometheus answered, but not with one number.
    #[error("{0}")]
    Answer(String),
}

/// A Prometheus client (shared by every query; connections are pooled).
#[derive(Clone)]
pub struct Prometheus {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>,
    token: Option<String>,
    timeout: Duration,
}

impl std::fmt::Debug for Prometheus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prometheus")
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Prometheus {
    /// A client sending `token` as a bearer token (when given), trusting the system's
    /// certificate authorities for HTTPS.
    pub fn new(token: Option<String>) -> Prometheus {
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = match builder.with_native_roots() {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "no system certificates: Prometheus over HTTPS will fail");
                hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(no_roots())
            }
        };
        let https = builder.https_or_http().enable_http1().build();
        Prometheus {
            client: Client::builder(TokioExecutor::new()).build(https),
            token,
            timeout: Duration::from_secs(2),
        }
    }

    /// Runs `query` on the Prometheus at `address` and returns its one number.
    pub async fn query(&self, address: &str, query: &str) -> Result<f64, QueryError> {
        let (status, body) = self.fetch(address, query).await?;
        parse_answer(status, &body).map_err(QueryError::Answer)
    }

    /// Runs `query` on the Prometheus at `address` and returns each sample's `label`
    /// value and number (an instant vector, say one series per histogram bucket).
    pub async fn query_by(
        &self,
        address: &str,
        query: &str,
        label: &str,
    ) -> Result<Vec<(String, f64)>, QueryError> {
        let (status, body) = self.fetch(address, query).await?;
        parse_vector(status, &body, label).map_err(QueryError::Answer)
    }

    /// The status and body of Prometheus' answer to an instant query.
    async fn fetch(
        &self,
        address: &str,
        query: &str,
    ) -> Result<(hyper::StatusCode, Bytes), QueryError> {
        let base = address.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(QueryError::Address(address.to_string()));
        }
        let q: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("query", query)
            .finish();
        let uri: hyper::Uri = format!("{base}/api/v1/query?{q}")
            .parse()
            .map_err(|_| QueryError::Address(address.to_string()))?;
        let mut req = hyper::Request::get(uri);
        if let Some(t) = &self.token {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = req
            .body(Empty::new())
            .map_err(|_| QueryError::Address(address.to_string()))?;
        let unreachable = |why: String| QueryError::Unreachable {
            address: address.to_string(),
            why,
        };
        let answer = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| unreachable(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok::<_, QueryError>((status, body))
        };
        tokio::time::timeout(self.timeout, answer)
            .await
            .map_err(|_| unreachable(format!("no answer within {:?}", self.timeout)))?
    }
}

/// A TLS configuration trusting nothing: every HTTPS query fails with a certificate
/// error (said once in the log when the client is made).
fn no_roots() -> rustls::ClientConfig {
    rustls::ClientConfig::builder()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth()
}

/// The `data` of a successful answer.
fn answer_data(status: hyper::StatusCode, body: &[u8]) -> Result<Value, String> {
    let mut v: Value =
        serde_json::from_slice(body).map_err(|e| format!("answer {status} is not JSON ({e})"))?;
    if v["status"] != "success" {
        return Err(format!(
            "query failed ({status}): {}",
            v["error"].as_str().unwrap_or("unknown error")
        ));
    }
    Ok(v["data"].take())
}

/// The number of a `[time, "value"]` pair.
fn number(pair: &Value) -> Result<f64, String> {
    pair.get(1)
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("unexpected sample {pair}"))
}

/// Each sample of an instant vector: its `label` value (empty when it has none) and
/// its number.
pub fn parse_vector(
    status: hyper::StatusCode,
    body: &[u8],
    label: &str,
) -> Result<Vec<(String, f64)>, String> {
    let data = answer_data(status, body)?;
    if data["resultType"] != "vector" {
        return Err(format!(
            "expected an instant vector, got {}",
            data["resultType"]
        ));
    }
    let samples = data["result"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    samples
        .iter()
        .map(|s| {
            let key = s["metric"][label].as_str().unwrap_or_default().to_string();
            Ok((key, number(&s["value"])?))
        })
        .collect()
}

/// The one number of an answer: a scalar, or a vector of exactly one sample.
pub fn parse_answer(status: hyper::StatusCode, body: &[u8]) -> Result<f64, String> {
    let v = answer_data(status, body)?;
    match v["resultType"].as_str() {
        Some("scalar") => number(&v["result"]),
        Some("vector") => match v["result"].as_array().map(Vec::as_slice) {
            Some([one]) => number(&one["value"]),
            Some([]) | None => Err("the query returned no sample".into()),
            Some(many) => Err(format!(
                "the query returned {} samples; aggregate it to one",
                many.len()
            )),
        },
        other => Err(format!("unsupported result type {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_gives_one_number_or_says_why_not() {
        let ok = hyper::StatusCode::OK;
        let scalar =
            br#"{"status":"success","data":{"resultType":"scalar","result":[1.5,"0.25"]}}"#;
        assert_eq!(parse_answer(ok, scalar), Ok(0.25));
        let one = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"3"]}]}}"#;
        assert_eq!(parse_answer(ok, one), Ok(3.0));
        let none = br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert!(parse_answer(ok, none).unwrap_err().contains("no sample"));
        let two = br#"{"status":"success","data":{"resultType":"vector","result":[{"value":[1,"1"]},{"value":[1,"2"]}]}}"#;
        assert!(parse_answer(ok, two).unwrap_err().contains("aggregate"));
        let bad = br#"{"status":"error","error":"parse error at char 3"}"#;
        let e = parse_answer(hyper::StatusCode::BAD_REQUEST, bad).unwrap_err();
        assert!(
            e.contains("parse error at char 3") && e.contains("400"),
            "{e}"
        );
        assert!(
            parse_answer(ok, b"<html>")
                .unwrap_err()
                .contains("not JSON")
        );
    }

    /// A Prometheus stand-in on loopback that answers one scalar and says whether the
    /// request carried `Bearer secret`.
    #[tokio::test]
    async fn a_configured_token_is_sent_as_a_bearer_token() {
        use axum::http::HeaderMap;
        let app = axum::Router::new().route(
            "/api/v1/query",
            axum::routing::get(|headers: HeaderMap| async move {
                let authorized = headers
                    .get("authorization")
                    .is_some_and(|v| v == "Bearer secret");
                let value = if authorized { "1" } else { "0" };
                format!(r#"{{"status":"success","data":{{"resultType":"scalar","result":[0,"{value}"]}}}}"#)
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let url = format!("http://{addr}");
        let with = Prometheus::new(Some("secret".into()));
        assert_eq!(with.query(&url, "up").await, Ok(1.0));
        assert_eq!(Prometheus::new(None).query(&url, "up").await, Ok(0.0));
        assert!(format!("{with:?}").contains("<set>") && !format!("{with:?}").contains("secret"));
    }

    #[tokio::test]
    async fn a_bad_address_is_named() {
        let p = Prometheus::new(None);
        assert_eq!(
            p.query("ftp://x", "up").await,
            Err(QueryError::Address("ftp://x".into()))
        );
    }
}
