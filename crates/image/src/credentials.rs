//! Registry credentials: choosing which credentials a registry host gets, from a pull's
//! `AuthConfig`s (image pull secrets, parsed by `rkube_cri::auths_from_dockerconfigjson`) and
//! registries.yaml.

use rkube_cri::{AuthConfig, decode_basic_auth as decode_auth};

use crate::config::{RegistriesConfig, RegistryAuth};
use crate::reference::normalize_registry_host;

/// Credentials presented to one registry host.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Credentials {
    /// Basic user and password (sent as Basic auth, or to the token service).
    Basic { username: String, password: String },
    /// OAuth2 refresh token for the registry's token service.
    IdentityToken(String),
}

impl std::fmt::Debug for Credentials {
    // Secrets never reach logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            Credentials::IdentityToken(_) => write!(f, "IdentityToken(***)"),
        }
    }
}

fn from_parts(username: &str, password: &str, auth: &str, token: &str) -> Option<Credentials> {
    if !token.is_empty() {
        return Some(Credentials::IdentityToken(token.to_string()));
    }
    if !username.is_empty() {
        return Some(Credentials::Basic {
            username: username.to_string(),
            password: password.to_string(),
        });
    }
    decode_auth(auth).map(|(username, password)| Credentials::Basic { username, password })
}

fn from_registry_auth(a: &RegistryAuth) -> Option<Credentials> {
    from_parts(&a.username, &a.password, &a.auth, &a.identity_token)
}

/// The credentials for `host` (an endpoint host) when pulling an image of registry `domain`:
/// the pull's own `AuthConfig` whose server is that host or domain, then registries.yaml's
/// `configs` entry of the host, then none (anonymous).
pub(crate) fn credentials_for(
    host: &str,
    domain: &str,
    pull_auth: &[AuthConfig],
    registries: &RegistriesConfig,
) -> Option<Credentials> {
    let host = normalize_registry_host(host);
    let domain = normalize_registry_host(domain);
    for wanted in [&host, &domain] {
        for a in pull_auth {
            if normalize_registry_host(&a.server_address) == *wanted
                && let Some(c) = from_parts(&a.username, &a.password, &a.auth, &a.identity_token)
            {
                return Some(c);
            }
        }
    }
    // registries.yaml keys are written like the endpoint host; docker.io may appear as either.
    let cfg = registries.configs.get(&host).or_else(|| {
        (host == "docker.io")
            .then(|| registries.configs.get("registry-1.docker.io"))
            .flatten()
    });
    cfg.or_else(|| registries.configs.get("*"))
        .and_then(|c| c.auth.as_ref())
        .and_then(from_registry_auth)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_pull_auth_then_config_then_anonymous() {
        let reg = RegistriesConfig::parse(
            "configs:\n  \"127.0.0.1:5000\":\n    auth: {username: cfg, password: c}\n",
        )
        .unwrap();
        let pull = vec![AuthConfig {
            server_address: "http://127.0.0.1:5000".into(),
            username: "pull".into(),
            password: "p".into(),
            ..Default::default()
        }];
        let basic = |u: &str, p: &str| {
            Some(Credentials::Basic {
                username: u.into(),
                password: p.into(),
            })
        };
        assert_eq!(
            credentials_for("127.0.0.1:5000", "127.0.0.1:5000", &pull, &reg),
            basic("pull", "p")
        );
        assert_eq!(
            credentials_for("127.0.0.1:5000", "127.0.0.1:5000", &[], &reg),
            basic("cfg", "c")
        );
        assert_eq!(credentials_for("other:1", "other:1", &[], &reg), None);
        // Docker Hub credentials match registry-1.docker.io.
        let hub = vec![AuthConfig {
            server_address: "https://index.docker.io/v1/".into(),
            auth: "dTE6cDE=".into(),
            ..Default::default()
        }];
        assert_eq!(
            credentials_for("registry-1.docker.io", "docker.io", &hub, &reg),
            basic("u1", "p1")
        );
    }
}
