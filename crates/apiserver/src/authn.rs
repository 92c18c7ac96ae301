//! Authentication: who is asking. Upstream's union of authenticators, reduced to what rkube
//! issues: x509 client certificates signed by the cluster CA (verified by the TLS layer) and
//! bearer tokens (the node join token). Authorization is a separate layer ([`crate::authz`]).

use x509_parser::prelude::{FromDer, X509Certificate};

/// An authenticated (or anonymous) user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    /// User name, e.g. `system:admin`.
    pub name: String,
    /// Groups, e.g. `system:masters`, always including `system:authenticated` for real users.
    pub groups: Vec<String>,
}

impl UserInfo {
    /// The anonymous user.
    pub fn anonymous() -> Self {
        UserInfo {
            name: "system:anonymous".into(),
            groups: vec!["system:unauthenticated".into()],
        }
    }

    /// Whether this is the anonymous user.
    pub fn is_anonymous(&self) -> bool {
        self.name == "system:anonymous"
    }

    /// An in-process component (scheduler, controllers) calling the API directly.
    pub fn component(name: &str) -> Self {
        UserInfo {
            name: name.into(),
            groups: vec!["system:masters".into(), "system:authenticated".into()],
        }
    }
}

/// Maps credentials to users.
#[derive(Debug, Clone)]
pub struct Authenticator {
    /// The secret part of the node join token.
    pub node_token_secret: String,
    /// Verifies service-account tokens (JWTs from the TokenRequest API).
    pub service_accounts: Option<std::sync::Arc<crate::satoken::TokenIssuer>>,
}

impl Authenticator {
    /// The user of a verified client certificate (DER): CN is the name, O the groups.
    pub fn from_client_cert(&self, der: &[u8]) -> Option<UserInfo> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let subject = cert.subject();
        let name = subject
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())?
            .to_string();
        let mut groups: Vec<String> = subject
            .iter_organization()
            .filter_map(|o| o.as_str().ok().map(String::from))
            .collect();
        groups.push("system:authenticated".into());
        Some(UserInfo { name, groups })
    }

    /// The user of a bearer token, if it is one rkube issued.
    pub fn from_bearer(&self, token: &str) -> Option<UserInfo> {
        let secret = crate::pki::token_secret(token);
        if !self.node_token_secret.is_empty()
            && constant_time_eq(secret.as_bytes(), self.node_token_secret.as_bytes())
        {
            return Some(UserInfo {
                name: "system:rkube:node-bootstrap".into(),
                groups: vec![
                    "system:nodes".into(),
                    "system:bootstrappers".into(),
                    "system:authenticated".into(),
                ],
            });
        }
        self.service_accounts.as_ref()?.verify(token)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Paths anyone may read, as upstream's `system:public-info-viewer` role allows.
pub fn is_public_path(path: &str) -> bool {
    matches!(
        path,
        "/healthz" | "/livez" | "/readyz" | "/version" | "/version/"
    ) || path.starts_with("/healthz/")
        || path.starts_with("/livez/")
        || path.starts_with("/readyz/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens() {
        let a = Authenticator {
            node_token_secret: "abc".into(),
            service_accounts: None,
        };
        assert!(a.from_bearer("K10ff::server:abc").is_some());
        assert!(a.from_bearer("abc").is_some());
        assert!(a.from_bearer("abd").is_none());
        assert!(is_public_path("/readyz"));
        assert!(!is_public_path("/api"));
    }
}
