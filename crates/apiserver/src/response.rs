//! Building HTTP responses: JSON bodies, Status errors, content negotiation.

use std::convert::Infallible;

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use rkube_core::status::ApiError;
use serde_json::Value;

/// Response body: whole or streamed (watch).
pub type Body = BoxBody<Bytes, Infallible>;
/// An HTTP response.
pub type Response = http::Response<Body>;

/// A whole body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// A JSON response with `code`.
pub fn json_bytes(code: u16, bytes: impl Into<Bytes>) -> Response {
    raw(code, "application/json", bytes)
}

/// A response with a content type.
pub fn raw(code: u16, content_type: &str, bytes: impl Into<Bytes>) -> Response {
    let mut r = http::Response::new(full(bytes));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type).unwrap_or(HeaderValue::from_static("application/json")),
    );
    r
}

/// Whether the client takes `Content-Encoding: gzip` (`Accept-Encoding` lists `gzip` or `*`
/// without `q=0`).
pub fn accepts_gzip(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or("");
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

/// A JSON value response.
pub fn json(code: u16, v: &Value) -> Response {
    json_bytes(code, serde_json::to_vec(v).unwrap_or_default())
}

/// The Status response for an error.
pub fn error(e: &ApiError) -> Response {
    json(e.code, &e.to_status())
}

/// What the client accepts, reduced to the choices the apiserver makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    /// Plain JSON objects.
    Json,
    /// JSON, serialised as YAML.
    Yaml,
    /// `meta.k8s.io/v1` Table (server-side printing).
    Table,
    /// `meta.k8s.io/v1` PartialObjectMetadata(List).
    PartialMetadata,
}

impl Accept {
    /// Reads the Accept header, taking the first media type the apiserver serves.
    pub fn from_headers(headers: &http::HeaderMap) -> Accept {
        let accept = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        for media in accept.split(',') {
            let media = media.trim();
            let params: Vec<&str> = media.split(';').map(str::trim).collect();
            let has = |p: &str| params.iter().any(|x| x.eq_ignore_ascii_case(p));
            match params[0] {
                "application/json" | "*/*" | "application/*" => {
                    if has("as=Table") && (has("v=v1") || has("v=v1beta1")) {
                        return Accept::Table;
                    }
                    if has("as=PartialObjectMetadata") || has("as=PartialObjectMetadataList") {
                        return Accept::PartialMetadata;
                    }
                    if params.iter().any(|p| p.starts_with("as=")) {
                        continue;
                    }
                    return Accept::Json;
                }
                "application/yaml" => return Accept::Yaml,
                _ => continue,
            }
        }
        Accept::Json
    }
}

/// Encodes `v` as the client asked (JSON or YAML).
pub fn negotiated(code: u16, accept: Accept, v: &Value) -> Response {
    if accept == Accept::Yaml
        && let Ok(y) = serde_saphyr::to_string(v)
    {
        return raw(code, "application/yaml", y);
    }
    json(code, v)
}

/// Collects a request body up to `limit` bytes.
pub async fn read_body(body: hyper::body::Incoming, limit: usize) -> Result<Bytes, ApiError> {
    let limited = http_body_util::Limited::new(body, limit);
    match limited.collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::too_large(format!(
            "Request entity too large: limit is {limit}"
        ))),
        Err(e) => Err(ApiError::bad_request(format!("reading request body: {e}"))),
    }
}

/// Never constructed: lets streaming bodies name their error type.
pub type Never = Infallible;

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(s: &str) -> Accept {
        let mut h = http::HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(s).unwrap());
        Accept::from_headers(&h)
    }

    #[test]
    fn kubectl_accept_headers() {
        assert_eq!(
            accept(
                "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
            ),
            Accept::Table
        );
        assert_eq!(accept("application/json"), Accept::Json);
        assert_eq!(
            accept(
                "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
            ),
            Accept::Json
        );
        assert_eq!(accept("application/yaml"), Accept::Yaml);
        assert_eq!(
            accept("application/vnd.kubernetes.protobuf,application/json"),
            Accept::Json
        );
    }
}

#[cfg(test)]
mod gzip_tests {
    use super::accepts_gzip;

    fn with(value: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::ACCEPT_ENCODING, value.parse().unwrap());
        h
    }

    #[test]
    fn gzip_is_taken_only_when_offered_and_not_refused() {
        assert!(accepts_gzip(&with("gzip")));
        assert!(accepts_gzip(&with("deflate, gzip;q=0.5")));
        assert!(accepts_gzip(&with("*")));
        assert!(!accepts_gzip(&with("gzip;q=0")));
        assert!(!accepts_gzip(&with("gzip; q=0.0")));
        assert!(!accepts_gzip(&with("identity")));
        assert!(!accepts_gzip(&http::HeaderMap::new()));
    }
}
