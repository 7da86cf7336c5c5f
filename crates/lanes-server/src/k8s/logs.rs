//! `pods/{name}/log`: the container's output, the end of it (`tailLines`, `limitBytes`),
//! its previous run (`previous`), or followed as it grows (`follow`) until the pod goes.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::Response;
use lanes_model::podlog::Run;
use serde_json::Value;

use super::error::{ApiError, ApiResult, Reason};
use super::objects::{blocking, key};
use super::params::{Params, flag};
use super::path::Target;
use crate::ApiState;

/// The most read back without `tailLines` or `limitBytes`.
const DEFAULT_TAIL_BYTES: u64 = 1024 * 1024;
/// How often a followed log is looked at for more.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// The last `lines` lines of `bytes`.
fn tail_lines(bytes: &[u8], lines: usize) -> &[u8] {
    if lines == 0 {
        return &[];
    }
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let mut seen = 0;
    for (i, b) in body.iter().enumerate().rev() {
        if *b == b'\n' {
            seen += 1;
            if seen == lines {
                return &bytes[i + 1..];
            }
        }
    }
    bytes
}

fn read_end(path: &PathBuf, params: &Params) -> ApiResult<(Vec<u8>, u64)> {
    let mut f = std::fs::File::open(path)
        .map_err(|_| ApiError::new(Reason::BadRequest, "the container has no log yet"))?;
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let window = match (params.tail_lines, params.limit_bytes) {
        (Some(_), _) => len.min(16 * DEFAULT_TAIL_BYTES),
        (None, Some(limit)) => len.min(limit),
        (None, None) => len.min(DEFAULT_TAIL_BYTES),
    };
    f.seek(SeekFrom::Start(len - window))
        .map_err(ApiError::internal)?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).map_err(ApiError::internal)?;
    if let Some(n) = params.tail_lines.filter(|n| *n >= 0) {
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        buf = tail_lines(&buf, n).to_vec();
    }
    if let Some(limit) = params.limit_bytes {
        buf.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    }
    Ok((buf, len))
}

/// GET `pods/{name}/log`.
pub async fn log(
    state: ApiState,
    target: Target,
    name: String,
    params: Params,
) -> ApiResult<Response> {
    let r = target.resource;
    let pod_key = key(&target, &name);
    let store = state.store.clone();
    let k = pod_key.clone();
    let pod = blocking(move || Ok(store.get(&k)?))
        .await?
        .ok_or_else(|| ApiError::not_found(&r, &name))?;
    let containers: Vec<String> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect();
    if let Some(c) = params.container.as_deref()
        && !containers.iter().any(|x| x == c)
    {
        return Err(ApiError::bad_request(format!(
            "container {c} is not valid for pod {name}"
        )));
    }
    let Some(dir) = state.logs.clone() else {
        return Err(ApiError::bad_request(
            "this server runs no pods, so it keeps no logs",
        ));
    };
    let ns = pod_key.namespace.clone().unwrap_or_default();
    let run = if flag(&params.previous) {
        Run::Previous
    } else {
        Run::Current
    };
    let path = lanes_model::podlog::file(&dir, &ns, &name, run);
    let p = path.clone();
    let q = params.clone();
    let (head, offset) = blocking(move || read_end(&p, &q)).await?;
    if !flag(&params.follow) || run == Run::Previous {
        return Response::builder()
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Body::from(head))
            .map_err(ApiError::internal);
    }
    let store = state.store.clone();
    let more = futures_util::stream::unfold((offset, 0u32), move |(offset, idle)| {
        let path = path.clone();
        let store = store.clone();
        let pod_key = pod_key.clone();
        async move {
            tokio::time::sleep(FOLLOW_POLL).await;
            let p = path.clone();
            let chunk = tokio::task::spawn_blocking(move || -> std::io::Result<(Vec<u8>, u64)> {
                let mut f = std::fs::File::open(&p)?;
                let len = f.metadata()?.len();
                let from = if len < offset { 0 } else { offset };
                f.seek(SeekFrom::Start(from))?;
                let mut buf = Vec::new();
                f.take(DEFAULT_TAIL_BYTES).read_to_end(&mut buf)?;
                Ok((buf, from))
            })
            .await
            .ok()
            .and_then(Result::ok);
            match chunk {
                Some((buf, from)) if !buf.is_empty() => {
                    let next = from + buf.len() as u64;
                    Some((
                        Ok::<_, std::convert::Infallible>(Bytes::from(buf)),
                        (next, 0),
                    ))
                }
                _ => {
                    // Every few seconds of quiet, see whether the pod is still there.
                    if idle % 10 == 9 && store.get(&pod_key).ok().flatten().is_none() {
                        return None;
                    }
                    Some((Ok(Bytes::new()), (offset, idle + 1)))
                }
            }
        }
    });
    let stream = futures_util::stream::iter([Ok(Bytes::from(head))]).chain(more);
    use futures_util::StreamExt;
    Response::builder()
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from_stream(stream))
        .map_err(ApiError::internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_by_lines() {
        assert_eq!(tail_lines(b"a\nb\nc\n", 2), b"b\nc\n");
        assert_eq!(tail_lines(b"a\nb\nc", 1), b"c");
        assert_eq!(tail_lines(b"a\n", 5), b"a\n");
        assert_eq!(tail_lines(b"a\nb\n", 0), b"");
    }
}
