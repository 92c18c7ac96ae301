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
            {
                let mut q = url.query_pairs_mut();
                if !service.is_empty() {
                    q.append_pair("service", &service);
                }
                if !scope.is_empty() {
                    q.append_pair("scope", &scope);
                }
            }
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
        let detail = super::server_message(&body)
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
    let token = if token.token.is_empty() {
        token.access_token
    } else {
        token.token
    };
    if token.is_empty() {
        return Err(format!(
            "failed to fetch {what}: the token service returned no token"
        ));
    }
    Ok(token)
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
}
