//! Bearer-token authentication of the API: the token, how a request presents it, and
//! the check (constant time, the scheme's name in any case, as RFC 9110 says).

use std::sync::Arc;

use http::HeaderMap;
use http::header::AUTHORIZATION;
use subtle::ConstantTimeEq;

/// What the API requires of a request.
#[derive(Clone, Debug)]
pub enum Auth {
    /// A bearer token on every request but the health endpoints.
    Token(Arc<str>),
    /// Nothing (only when asked for explicitly: `lanes up --no-auth`).
    Open,
}

impl Auth {
    /// A token, or open when `token` is `None`.
    pub fn from_token(token: Option<&str>) -> Auth {
        match token {
            Some(t) if !t.is_empty() => Auth::Token(t.into()),
            _ => Auth::Open,
        }
    }

    /// Whether a request with these headers may proceed.
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        match self {
            Auth::Open => true,
            Auth::Token(token) => {
                presented(headers).is_some_and(|given| is_same_token(given, token))
            }
        }
    }
}

/// The bearer token a request presents: `Authorization: Bearer <token>`, the scheme's
/// name in any case.
pub fn presented(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Compares two tokens in time that depends on their lengths only, not on where they
/// first differ.
pub fn is_same_token(given: &str, expected: &str) -> bool {
    given.as_bytes().ct_eq(expected.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, v.parse().unwrap_or_else(|_| unreachable!()));
        h
    }

    #[test]
    fn the_scheme_is_case_insensitive_and_the_token_exact() {
        let auth = Auth::from_token(Some("s3cret"));
        assert!(auth.admits(&headers("Bearer s3cret")));
        assert!(auth.admits(&headers("bearer s3cret")));
        assert!(auth.admits(&headers("BEARER  s3cret ")));
        assert!(!auth.admits(&headers("Bearer s3cre")));
        assert!(!auth.admits(&headers("Bearer s3cretX")));
        assert!(!auth.admits(&headers("Basic s3cret")));
        assert!(!auth.admits(&HeaderMap::new()));
    }

    #[test]
    fn open_admits_anything_and_an_empty_token_means_open() {
        assert!(Auth::Open.admits(&HeaderMap::new()));
        assert!(matches!(Auth::from_token(Some("")), Auth::Open));
    }
}
