//! Request and response bodies: one boxed body type, and buffering of small request
//! bodies so a failed attempt can be replayed on the fallback subset.

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use http_body::{Body, Frame};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, BodyStream, Empty, Full, StreamBody};

/// Errors carried through bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type the proxy passes around.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// An empty body.
pub fn empty() -> ProxyBody {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A body of `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Boxes any body.
pub fn boxed<B>(body: B) -> ProxyBody
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// Set when a client's request body fails as it is read (malformed chunking, a
/// connection cut short): what then fails upstream is the client's doing.
#[derive(Debug, Clone, Default)]
pub struct ClientBodyFault(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl ClientBodyFault {
    /// Whether the client's body has failed.
    pub fn is_set(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// Boxes a client's request body, noting in the returned flag when reading it fails.
pub fn watch_client_body<B>(body: B) -> (ProxyBody, ClientBodyFault)
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let fault = ClientBodyFault::default();
    let flag = fault.0.clone();
    let body = body
        .map_err(move |e| {
            flag.store(true, std::sync::atomic::Ordering::Release);
            e.into()
        })
        .boxed_unsync();
    (body, fault)
}

/// A request body made ready for sending.
pub enum Prepared {
    /// Read whole (within the limit): can be sent any number of times.
    Replayable(Vec<Frame<Bytes>>),
    /// Larger than the limit: sent once, as it streams.
    Streaming(ProxyBody),
}

impl Prepared {
    /// A body to send; a streaming body can be taken once, after which this is empty.
    pub fn take(&mut self) -> ProxyBody {
        match self {
            Prepared::Replayable(frames) => {
                let frames: Vec<Result<Frame<Bytes>, BoxError>> = frames
                    .iter()
                    .map(|f| {
                        Ok(match f.data_ref() {
                            Some(d) => Frame::data(d.clone()),
                            None => Frame::trailers(f.trailers_ref().cloned().unwrap_or_default()),
                        })
                    })
                    .collect();
                StreamBody::new(stream::iter(frames)).boxed_unsync()
            }
            Prepared::Streaming(body) => std::mem::replace(body, empty()),
        }
    }

    /// Whether the body can be sent again.
    pub fn replayable(&self) -> bool {
        matches!(self, Prepared::Replayable(_))
    }
}

/// Reads up to `limit` bytes of `body`. A body that ends within the limit becomes
/// replayable; a longer one streams on, its first frames included.
pub async fn prepare<B>(body: B, limit: usize) -> Result<Prepared, BoxError>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    if body.size_hint().lower() as usize > limit {
        return Ok(Prepared::Streaming(boxed(body)));
    }
    let mut body = body;
    let mut frames = Vec::new();
    let mut size = 0usize;
    loop {
        match body.frame().await {
            None => return Ok(Prepared::Replayable(frames)),
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(frame)) => {
                size += frame.data_ref().map_or(0, Bytes::len);
                frames.push(frame);
                if size > limit {
                    let head = stream::iter(frames.into_iter().map(Ok::<_, BoxError>));
                    let rest = BodyStream::new(body).map(|r| r.map_err(Into::into));
                    return Ok(Prepared::Streaming(
                        StreamBody::new(head.chain(rest)).boxed_unsync(),
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn small_bodies_replay_and_large_ones_stream_whole() {
        let mut p = prepare(Full::new(Bytes::from_static(b"hello")), 16)
            .await
            .unwrap();
        assert!(p.replayable());
        for _ in 0..2 {
            let b = p.take().collect().await.unwrap().to_bytes();
            assert_eq!(&b[..], b"hello");
        }
        let chunks: Vec<Result<Frame<Bytes>, BoxError>> = (0..10)
            .map(|i| Ok(Frame::data(Bytes::from(vec![i as u8; 10]))))
            .collect();
        let body = StreamBody::new(stream::iter(chunks));
        let mut p = prepare(body, 25).await.unwrap();
        assert!(!p.replayable());
        let b = p.take().collect().await.unwrap().to_bytes();
        assert_eq!(b.len(), 100);
        assert_eq!(b[95], 9);
    }
}
