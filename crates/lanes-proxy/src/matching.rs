//! Compiled request conditions: Istio's `StringMatch` and `HttpMatchRequest`, and host
//! patterns, evaluated against a request without allocating.

use std::collections::BTreeMap;

use http::{HeaderMap, Method, Uri};
use lanes_routes::{HttpMatchRequest, StringMatch};
use regex::Regex;

/// A compiled string condition.
#[derive(Debug, Clone)]
pub enum Matcher {
    /// Equal to.
    Exact(String),
    /// Starts with.
    Prefix(String),
    /// Whole-value regular expression.
    Regex(Regex),
    /// Any value (a match with no alternative set).
    Any,
}

impl Matcher {
    /// Compiles a `StringMatch`; `ignore_case` lower-cases exact and prefix patterns.
    pub fn compile(m: &StringMatch, ignore_case: bool) -> Result<Matcher, regex::Error> {
        let fold = |s: &String| {
            if ignore_case {
                s.to_ascii_lowercase()
            } else {
                s.clone()
            }
        };
        Ok(if let Some(e) = &m.exact {
            Matcher::Exact(fold(e))
        } else if let Some(p) = &m.prefix {
            Matcher::Prefix(fold(p))
        } else if let Some(r) = &m.regex {
            let pattern = if ignore_case {
                format!("(?i)^(?:{r})$")
            } else {
                format!("^(?:{r})$")
            };
            Matcher::Regex(Regex::new(&pattern)?)
        } else {
            Matcher::Any
        })
    }

    /// Whether `value` satisfies the condition.
    pub fn matches(&self, value: &str) -> bool {
        match self {
            Matcher::Exact(e) => value == e,
            Matcher::Prefix(p) => value.starts_with(p.as_str()),
            Matcher::Regex(r) => r.is_match(value),
            Matcher::Any => true,
        }
    }
}

/// A compiled `HttpMatchRequest`: every condition must hold.
#[derive(Debug, Clone, Default)]
pub struct RequestMatcher {
    uri: Option<Matcher>,
    ignore_uri_case: bool,
    method: Option<Matcher>,
    authority: Option<Matcher>,
    headers: Vec<(http::HeaderName, Matcher)>,
    without_headers: Vec<(http::HeaderName, Matcher)>,
    query: Vec<(String, Matcher)>,
    source_labels: BTreeMap<String, String>,
}

/// What a matcher looks at in a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// Method.
    pub method: &'a Method,
    /// URI (path and query are read).
    pub uri: &'a Uri,
    /// Authority: the Host header or the URI's authority.
    pub authority: &'a str,
    /// Headers.
    pub headers: &'a HeaderMap,
    /// Labels of the calling pod, when known (sidecar outbound).
    pub source_labels: Option<&'a BTreeMap<String, String>>,
}

/// A problem compiling a route condition.
#[derive(Debug, thiserror::Error)]
pub enum MatchError {
    /// A regular expression did not compile.
    #[error("invalid regular expression: {0}")]
    Regex(#[from] regex::Error),
    /// A header name is not valid.
    #[error("invalid header name {0:?}")]
    HeaderName(String),
}

impl RequestMatcher {
    /// Compiles a request condition.
    pub fn compile(m: &HttpMatchRequest) -> Result<RequestMatcher, MatchError> {
        let ignore = m.ignore_uri_case.unwrap_or(false);
        let header = |(name, sm): (&String, &StringMatch)| -> Result<_, MatchError> {
            let name = http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
                .map_err(|_| MatchError::HeaderName(name.clone()))?;
            Ok((name, Matcher::compile(sm, false)?))
        };
        Ok(RequestMatcher {
            uri: m
                .uri
                .as_ref()
                .map(|u| Matcher::compile(u, ignore))
                .transpose()?,
            ignore_uri_case: ignore,
            method: m
                .method
                .as_ref()
                .map(|u| Matcher::compile(u, false))
                .transpose()?,
            authority: m
                .authority
                .as_ref()
                .map(|u| Matcher::compile(u, false))
                .transpose()?,
            headers: m.headers.iter().map(header).collect::<Result<_, _>>()?,
            without_headers: m
                .without_headers
                .iter()
                .map(header)
                .collect::<Result<_, _>>()?,
            query: m
                .query_params
                .iter()
                .map(|(k, v)| Ok((k.clone(), Matcher::compile(v, false)?)))
                .collect::<Result<_, MatchError>>()?,
            source_labels: m.source_labels.clone(),
        })
    }

    /// Whether the request satisfies every condition.
    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        if let Some(m) = &self.uri {
            let path = req.uri.path();
            let ok = if self.ignore_uri_case {
                m.matches(&path.to_ascii_lowercase())
            } else {
                m.matches(path)
            };
            if !ok {
                return false;
            }
        }
        if let Some(m) = &self.method
            && !m.matches(req.method.as_str())
        {
            return false;
        }
        if let Some(m) = &self.authority
            && !m.matches(req.authority)
        {
            return false;
        }
        for (name, m) in &self.headers {
            match req.headers.get(name).and_then(|v| v.to_str().ok()) {
                Some(v) if m.matches(v) => {}
                _ => return false,
            }
        }
        for (name, m) in &self.without_headers {
            if let Some(v) = req.headers.get(name).and_then(|v| v.to_str().ok())
                && m.matches(v)
            {
                return false;
            }
        }
        if !self.query.is_empty() {
            let q = req.uri.query().unwrap_or("");
            for (name, m) in &self.query {
                let found = q.split('&').any(|pair| {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    k == name && m.matches(v)
                });
                if !found {
                    return false;
                }
            }
        }
        if !self.source_labels.is_empty() {
            match req.source_labels {
                Some(labels) => {
                    if !self
                        .source_labels
                        .iter()
                        .all(|(k, v)| labels.get(k) == Some(v))
                    {
                        return false;
                    }
                }
                None => return false,
            }
        }
        true
    }
}

/// Whether a request's host (port stripped) matches a VirtualService-style host
/// pattern: `*`, `*.suffix`, or an exact name (case-insensitive).
pub fn host_matches(pattern: &str, host: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let host = lanes_routes::host::strip_port(host);
    if let Some(suffix) = pattern.strip_prefix('*') {
        return host.len() > suffix.len()
            && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix);
    }
    pattern.eq_ignore_ascii_case(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> RequestView<'a> {
        RequestView {
            method: &Method::GET,
            uri,
            authority: "example.com",
            headers,
            source_labels: None,
        }
    }

    #[test]
    fn matches_the_articles_rule() {
        let rule: HttpMatchRequest = serde_json::from_value(serde_json::json!({
            "headers": {"x-asm-prefer-tag": {"exact": "canary"}},
            "uri": {"exact": "/mock"}
        }))
        .unwrap();
        let m = RequestMatcher::compile(&rule).unwrap();
        let uri: Uri = "/mock".parse().unwrap();
        let mut h = HeaderMap::new();
        assert!(!m.matches(&view(&uri, &h)));
        h.insert("x-asm-prefer-tag", "canary".parse().unwrap());
        assert!(m.matches(&view(&uri, &h)));
        let other: Uri = "/mock/x".parse().unwrap();
        assert!(!m.matches(&view(&other, &h)));
    }

    #[test]
    fn prefix_regex_query_and_absent_headers() {
        let rule: HttpMatchRequest = serde_json::from_value(serde_json::json!({
            "uri": {"regex": "/v[0-9]+/.*"},
            "queryParams": {"beta": {"exact": "1"}},
            "withoutHeaders": {"x-block": {"prefix": ""}}
        }))
        .unwrap();
        let m = RequestMatcher::compile(&rule).unwrap();
        let mut h = HeaderMap::new();
        let yes: Uri = "/v2/items?a=b&beta=1".parse().unwrap();
        let no: Uri = "/v2/items?beta=0".parse().unwrap();
        assert!(m.matches(&view(&yes, &h)));
        assert!(!m.matches(&view(&no, &h)));
        h.insert("x-block", "yes".parse().unwrap());
        assert!(!m.matches(&view(&yes, &h)));
    }

    #[test]
    fn host_patterns() {
        assert!(host_matches("*", "anything:80"));
        assert!(host_matches("*.example.com", "a.example.com:8080"));
        assert!(!host_matches("*.example.com", "example.com"));
        assert!(host_matches("Mock.Example", "mock.example"));
    }
}
