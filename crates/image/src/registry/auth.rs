//! Registry authentication: `WWW-Authenticate` challenges and the token service of the
//! Docker Registry v2 token spec (anonymous or with credentials, GET with Basic auth or the
//! OAuth2 refresh-token POST for identity tokens).

use std::collections::BTreeMap;

use base64::Engine;
use serde::Deserialize;

use crate::credentials::Credentials;

/// A parsed challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Challenge {
    /// `bearer` or `basic` (lower-cased).
    pub scheme: String,
    /// Its parameters (`realm`, `service`, `scope`, `error`), keys lower-cased.
    pub params: BTreeMap<String, String>,
}

/// Parses a `WWW-Authenticate` header into its challenges (RFC 7235: `scheme k=v, k="v"`,
/// several challenges separated by commas).
pub(crate) fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut out: Vec<Challenge> = Vec::new();
    let mut rest = header.trim();
    while !rest.is_empty() {
        // A token followed by '=' is a parameter of the current challenge; otherwise it
        // starts a new challenge.
        let token_end = rest
            .find(|c: char| c == '=' || c == ',' || c.is_whitespace())
            .unwrap_or(rest.len());
        let token = &rest[..token_end];
        let after = rest[token_end..].trim_start();
        if let (Some(value_part), Some(current)) = (after.strip_prefix('='), out.last_mut()) {
            let value_part = value_part.trim_start();
            let (value, remaining) = if let Some(q) = value_part.strip_prefix('"') {
                let mut v = String::new();
                let mut chars = q.char_indices();
                let mut end = q.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, n)) = chars.next() {
                                v.push(n);
                            }
                        }
                        '"' => {
                            end = i + 1;
                            break;
                        }
                        c => v.push(c),
                    }
                }
                (v, &q[end.min(q.len())..])
            } else {
                let end = value_part.find(',').unwrap_or(value_part.len());
                (value_part[..end].trim().to_string(), &value_part[end..])
            };
            current.params.insert(token.to_ascii_lowercase(), value);
            rest = remaining.trim_start().trim_start_matches(',').trim_start();
        } else if token.is_empty() {
            rest = after.trim_start_matches(',').trim_start();
        } else {
            out.push(Challenge {
                scheme: token.to_ascii_lowercase(),
                params: BTreeMap::new(),
            });
            rest = after.trim_start_matches(',').trim_start();
        }
    }
    out
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: String,
    #[serde(default)]
    access_token: String,
}

/// The `Authorization` value for Basic credentials.
pub(crate) fn basic_header(username: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
    )
}

/// Fetches a bearer token for `scope` from the challenge's realm. Errors read like
/// containerd's (`failed to fetch anonymous token: unexpected status from GET request to …:
/// 401 Unauthorized`).
pub(crate) async fn fetch_token(
    http: &reqwest::Client,
    challenge: &Challenge,
    scope: &str,
    creds: Option<&Credentials>,
) -> Result<String, String> {
    let realm = challenge
        .params
        .get("realm")
        .ok_or("the registry's bearer challenge has no realm")?;
    let service = challenge.params.get("service").cloned().unwrap_or_default();
    let scope = challenge
        .params
        .get("scope")
        .cloned()
        .unwrap_or_else(|| scope.to_string());
    let mut url =
        url::Url::parse(realm).map_err(|e| format!("invalid token realm {realm:?}: {e}"))?;
    let (what, request) = match creds {
        Some(Credentials::IdentityToken(refresh)) => {
            let form = [
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh.as_str()),
                ("service", service.as_str()),
                ("scope", scope.as_str()),
                ("client_id", "rkube"),
            ];
            let body = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(form)
                .finish();
            (
                "oauth token",
                http.post(url.clone())
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .body(body),
            )
        }
        other => {
            add_token_query(&mut url, &service, &scope);
            let mut req = http.get(url.clone());
            let what = if let Some(Credentials::Basic { username, password }) = other {
                req = req.header("Authorization", basic_header(username, password));
                "token"
            } else {
                "anonymous token"
            };
            (what, req)
        }
    };
    let method = if matches!(creds, Some(Credentials::IdentityToken(_))) {
        "POST"
    } else {
        "GET"
    };
    let resp = request.send().await.map_err(|e| {
        format!(
            "failed to fetch {what}: {}",
            super::transport_error(method, &url, &e)
        )
    })?;
    let status = resp.status();
    if !status.is_success() {
        let body = resp.text().await.unwrap_or_default();
        let detail = token_error_message(&body)
            .map(|m| format!(" ({m})"))
            .unwrap_or_default();
        return Err(format!(
            "failed to fetch {what}: unexpected status from {method} request to {url}: {status}{detail}"
        ));
    }
    let body = resp
        .bytes()
        .await
        .map_err(|e| format!("failed to fetch {what}: reading the token response: {e}"))?;
    let token: TokenResponse = serde_json::from_slice(&body)
        .map_err(|e| format!("failed to fetch {what}: decoding the token response: {e}"))?;
    // The spec calls the two fields equivalent; like containerd, `access_token` wins when
    // both are present (an OAuth2 server fills it, a legacy one only `token`).
    let token = if token.access_token.is_empty() {
        token.token
    } else {
        token.access_token
    };
    if token.is_empty() {
        return Err(format!(
            "failed to fetch {what}: the token service returned no token"
        ));
    }
    Ok(token)
}

/// Adds the token request's query: one `scope` parameter per scope (a challenge may list
/// several, space-separated, and token servers such as Docker Hub's expect them as repeated
/// parameters), then `service`. The order is the one Go's `url.Values.Encode` produces, so
/// error messages carrying the URL read exactly like containerd's.
fn add_token_query(url: &mut url::Url, service: &str, scope: &str) {
    let scopes: Vec<&str> = scope.split_whitespace().collect();
    if scopes.is_empty() && service.is_empty() {
        return;
    }
    let mut q = url.query_pairs_mut();
    for s in scopes {
        q.append_pair("scope", s);
    }
    if !service.is_empty() {
        q.append_pair("service", service);
    }
}

/// The reason a token service gives for refusing: a registry-style `errors` list, Docker
/// Hub's `{"details": "incorrect username or password"}`, or an OAuth2
/// `{"error", "error_description"}`.
fn token_error_message(body: &str) -> Option<String> {
    if let Some(m) = super::server_message(body) {
        return Some(m);
    }
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let field = |k: &str| {
        v.get(k)
            .and_then(|x| x.as_str())
            .map(str::trim)
            .filter(|x| !x.is_empty())
    };
    match (field("details"), field("error"), field("error_description")) {
        (Some(d), _, _) => Some(d.to_string()),
        (None, Some(e), Some(d)) => Some(format!("{e}: {d}")),
        (None, e, d) => e.or(d).map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_and_basic_challenges() {
        let c = parse_challenges(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].params["realm"], "https://auth.docker.io/token");
        assert_eq!(c[0].params["service"], "registry.docker.io");
        assert_eq!(c[0].params["scope"], "repository:library/busybox:pull");

        let c = parse_challenges(r#"Basic realm="Registry Realm""#);
        assert_eq!(c[0].scheme, "basic");
        assert_eq!(c[0].params["realm"], "Registry Realm");

        let c = parse_challenges(
            r#"Bearer realm="https://r/t", error="insufficient_scope", scope="a:b:pull,push", Basic realm=x"#,
        );
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].params["error"], "insufficient_scope");
        assert_eq!(c[0].params["scope"], "a:b:pull,push");
        assert_eq!(c[1].scheme, "basic");
        assert_eq!(c[1].params["realm"], "x");
        assert!(parse_challenges("").is_empty());
        assert_eq!(
            parse_challenges(r#"Bearer realm="a\"b""#)[0].params["realm"],
            "a\"b"
        );
    }

    #[test]
    fn token_query_repeats_scope_and_orders_like_go() {
        let mut u = url::Url::parse("https://auth.docker.io/token").unwrap();
        add_token_query(
            &mut u,
            "registry.docker.io",
            "repository:library/busybox:pull",
        );
        assert_eq!(
            u.as_str(),
            "https://auth.docker.io/token?scope=repository%3Alibrary%2Fbusybox%3Apull&service=registry.docker.io"
        );
        let mut u = url::Url::parse("http://h/t?x=1").unwrap();
        add_token_query(&mut u, "", "repository:a:pull  repository:b:pull,push");
        assert_eq!(
            u.as_str(),
            "http://h/t?x=1&scope=repository%3Aa%3Apull&scope=repository%3Ab%3Apull%2Cpush"
        );
        let mut u = url::Url::parse("http://h/t").unwrap();
        add_token_query(&mut u, "", "");
        assert_eq!(u.as_str(), "http://h/t");
    }

    #[test]
    fn token_error_messages() {
        assert_eq!(
            token_error_message(r#"{"details":"incorrect username or password"}"#).as_deref(),
            Some("incorrect username or password")
        );
        assert_eq!(
            token_error_message(r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad"}]}"#)
                .as_deref(),
            Some("unauthorized: bad")
        );
        assert_eq!(
            token_error_message(r#"{"error":"invalid_grant","error_description":"expired"}"#)
                .as_deref(),
            Some("invalid_grant: expired")
        );
        assert_eq!(token_error_message("<html>"), None);
        assert_eq!(token_error_message("{}"), None);
    }
}
