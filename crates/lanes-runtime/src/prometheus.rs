//! Instant queries against a Prometheus server, for the `prometheus` analysis metric:
//! one number from `GET /api/v1/query`, with a timeout.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde_json::Value;

/// Largest answer read.
const MAX_ANSWER: u64 = 1024 * 1024;

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Runs `query` on the Prometheus at `address` (`http://host:port`) and returns its one
/// number: a scalar, or a vector of exactly one sample.
pub fn query(address: &str, query: &str, timeout: Duration) -> Result<f64, String> {
    let hostport = address
        .strip_prefix("http://")
        .ok_or_else(|| format!("address {address:?} must start with http://"))?
        .trim_end_matches('/');
    let addr = hostport
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {hostport}: {e}"))?
        .next()
        .ok_or_else(|| format!("cannot resolve {hostport}"))?;
    let mut s = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("cannot reach {address}: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    // HTTP/1.0: the server closes the connection after a plain, unchunked answer.
    // One write: `write!` on a bare socket would send the request in pieces.
    let request = format!(
        "GET /api/v1/query?query={} HTTP/1.0\r\nHost: {hostport}\r\n\r\n",
        encode(query)
    );
    s.write_all(request.as_bytes())
        .map_err(|e| format!("cannot query {address}: {e}"))?;
    let mut raw = Vec::new();
    s.take(MAX_ANSWER)
        .read_to_end(&mut raw)
        .map_err(|e| format!("no answer from {address}: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("malformed answer")?;
    let v: Value = serde_json::from_str(body)
        .map_err(|e| format!("not JSON ({e}): {}", head.lines().next().unwrap_or("")))?;
    if v["status"] != "success" {
        return Err(format!(
            "query failed: {}",
            v["error"].as_str().unwrap_or("unknown error")
        ));
    }
    let number = |pair: &Value| -> Result<f64, String> {
        pair.get(1)
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("unexpected sample {pair}"))
    };
    match v["data"]["resultType"].as_str() {
        Some("scalar") => number(&v["data"]["result"]),
        Some("vector") => {
            let r = v["data"]["result"].as_array().cloned().unwrap_or_default();
            match r.as_slice() {
                [one] => number(&one["value"]),
                [] => Err("the query returned no sample".into()),
                many => Err(format!(
                    "the query returned {} samples; aggregate it to one",
                    many.len()
                )),
            }
        }
        other => Err(format!("unsupported result type {other:?}")),
    }
}
