//! gRPC as the proxy sees it: a call is an HTTP/2 request of content type
//! `application/grpc…`; its outcome is the `grpc-status` of the trailers (or of the
//! headers, in a trailers-only answer), whatever the HTTP status; `grpc-timeout` bounds
//! its time as the budget header does.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName};
use http_body::{Body, Frame, SizeHint};

/// The status of a call, in the trailers (or the headers of a trailers-only answer).
pub const STATUS: HeaderName = HeaderName::from_static("grpc-status");

/// The caller's deadline, as a duration with a unit.
pub const TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// `UNAVAILABLE`: the server cannot take the call now; safe to try elsewhere.
pub const UNAVAILABLE: u32 = 14;

/// Whether a request is a gRPC call (its content type says so).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/grpc"))
}

/// The `grpc-status` a header block carries, if any.
pub fn status(headers: &HeaderMap) -> Option<u32> {
    headers.get(&STATUS)?.to_str().ok()?.trim().parse().ok()
}

/// Whether an answer is a failed call: a `grpc-status` other than `OK`.
pub fn is_failed_call(headers: &HeaderMap) -> bool {
    status(headers).is_some_and(|s| s != 0)
}

/// Whether an answer is a trailers-only `UNAVAILABLE`: the call never reached the
/// application's handler, so it may be sent to the fallback lane (as a 503 may).
pub fn is_unavailable(headers: &HeaderMap) -> bool {
    status(headers) == Some(UNAVAILABLE)
}

/// The deadline a `grpc-timeout` header gives (at most 8 digits and a unit of
/// `H`, `M`, `S`, `m`, `u` or `n`), if the request carries a valid one.
pub fn timeout(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get(&TIMEOUT)?.to_str().ok()?;
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// How a call's answer ended, as [`Outcome`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Trailers came with this `grpc-status` (`None`: trailers without one).
    Trailers(Option<u32>),
    /// The body ended without trailers, failed, or was dropped unfinished.
    Cut,
}

/// A response body that reports how the call ended, once: at the trailers, at the end
/// of the body, at an error, or when dropped before any of these.
pub struct Outcome<B, F: FnOnce(Ended)> {
    inner: B,
    report: Option<F>,
}

impl<B, F: FnOnce(Ended)> Outcome<B, F> {
    /// Watches `inner`, calling `report` once with how it ended.
    pub fn new(inner: B, report: F) -> Self {
        Outcome {
            inner,
            report: Some(report),
        }
    }

    fn report(&mut self, ended: Ended) {
        if let Some(f) = self.report.take() {
            f(ended);
        }
    }
}

impl<B, F> Body for Outcome<B, F>
where
    B: Body<Data = Bytes> + Unpin,
    F: FnOnce(Ended) + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    let s = status(trailers);
                    self.report(Ended::Trailers(s));
                }
            }
            Poll::Ready(Some(Err(_)) | None) => self.report(Ended::Cut),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B, F: FnOnce(Ended)> Drop for Outcome<B, F> {
    fn drop(&mut self) {
        self.report(Ended::Cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};
    use std::sync::{Arc, Mutex};

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (HeaderName::from_static(k), v.parse().unwrap()))
            .collect()
    }

    #[test]
    fn grpc_timeouts_parse_in_every_unit_and_bad_ones_are_none() {
        let t = |v: &'static str| timeout(&headers(&[("grpc-timeout", v)]));
        assert_eq!(t("2S"), Some(Duration::from_secs(2)));
        assert_eq!(t("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(t("3M"), Some(Duration::from_secs(180)));
        assert_eq!(t("250m"), Some(Duration::from_millis(250)));
        assert_eq!(t("99999999u"), Some(Duration::from_micros(99_999_999)));
        assert_eq!(t("5n"), Some(Duration::from_nanos(5)));
        for bad in ["", "S", "123456789S", "10s", "-1S", "1.5S", "10"] {
            assert_eq!(t(bad), None, "{bad:?}");
        }
        assert_eq!(timeout(&HeaderMap::new()), None);
    }

    #[test]
    fn a_status_other_than_ok_is_a_failed_call_and_only_14_is_unavailable() {
        assert!(!is_failed_call(&headers(&[("grpc-status", "0")])));
        assert!(!is_failed_call(&HeaderMap::new()));
        assert!(is_failed_call(&headers(&[("grpc-status", "13")])));
        assert!(is_unavailable(&headers(&[("grpc-status", "14")])));
        assert!(!is_unavailable(&headers(&[("grpc-status", "13")])));
        assert!(is_grpc(&headers(&[(
            "content-type",
            "application/grpc+proto"
        )])));
        assert!(!is_grpc(&headers(&[("content-type", "application/json")])));
    }

    fn watched(
        frames: Vec<Frame<Bytes>>,
    ) -> (
        impl Body<Data = Bytes, Error = std::io::Error>,
        Arc<Mutex<Vec<Ended>>>,
    ) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let stream = futures_util::stream::iter(frames.into_iter().map(Ok::<_, std::io::Error>));
        let body = Outcome::new(StreamBody::new(stream), move |e| s.lock().unwrap().push(e));
        (body, seen)
    }

    #[tokio::test]
    async fn the_outcome_is_the_trailers_status_reported_once() {
        let mut trailers = HeaderMap::new();
        trailers.insert(STATUS, "7".parse().unwrap());
        let (body, seen) = watched(vec![
            Frame::data(Bytes::from_static(b"msg")),
            Frame::trailers(trailers),
        ]);
        let collected = body.collect().await.unwrap();
        assert_eq!(collected.trailers().and_then(status), Some(7));
        assert_eq!(*seen.lock().unwrap(), vec![Ended::Trailers(Some(7))]);
    }

    #[tokio::test]
    async fn a_body_without_trailers_or_dropped_early_is_cut() {
        let (body, seen) = watched(vec![Frame::data(Bytes::from_static(b"msg"))]);
        let _ = body.collect().await.unwrap();
        assert_eq!(*seen.lock().unwrap(), vec![Ended::Cut]);
        let (body, seen) = watched(vec![Frame::data(Bytes::from_static(b"msg"))]);
        drop(body);
        assert_eq!(*seen.lock().unwrap(), vec![Ended::Cut]);
    }
}
