//! Registry credentials: `imagePullSecrets` (`kubernetes.io/dockerconfigjson` and
//! `kubernetes.io/dockercfg`) and choosing which credentials a registry host gets.

use std::collections::BTreeMap;

use base64::Engine;
use rkube_cri::AuthConfig;
use serde::Deserialize;

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

#[derive(Deserialize, Default)]
struct DockerAuthEntry {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    auth: String,
    #[serde(default, alias = "identityToken")]
    identitytoken: String,
}

/// Reads the credentials of a `kubernetes.io/dockerconfigjson` Secret's `.dockerconfigjson`
/// (`{"auths": {"host": {...}}}`) or a `kubernetes.io/dockercfg` Secret's `.dockercfg`
/// (`{"host": {...}}`). `auth` (base64 `user:password`) fills in missing user and password.
pub fn auths_from_dockerconfigjson(bytes: &[u8]) -> anyhow::Result<Vec<AuthConfig>> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| anyhow::anyhow!("invalid docker config JSON: {e}"))?;
    let entries = match value.get("auths") {
        Some(auths) => auths.clone(),
        None => value,
    };
    let entries: BTreeMap<String, DockerAuthEntry> = serde_json::from_value(entries)
        .map_err(|e| anyhow::anyhow!("invalid docker config JSON: {e}"))?;
    let mut out = Vec::new();
    for (server, e) in entries {
        let mut a = AuthConfig {
            server_address: server,
            username: e.username,
            password: e.password,
            auth: e.auth,
            identity_token: e.identitytoken,
        };
        if a.username.is_empty()
            && !a.auth.is_empty()
            && let Some((u, p)) = decode_auth(&a.auth)
        {
            a.username = u;
            a.password = p;
        }
        out.push(a);
    }
    Ok(out)
}

/// Decodes base64 `user:password`.
fn decode_auth(auth: &str) -> Option<(String, String)> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_string(), p.to_string()))
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
    fn parses_dockerconfigjson_and_dockercfg() {
        let json = br#"{"auths":{"https://index.docker.io/v1/":{"auth":"dTE6cDE="},
            "127.0.0.1:5000":{"username":"u2","password":"p2","email":"x@y"}}}"#;
        let auths = auths_from_dockerconfigjson(json).unwrap();
        assert_eq!(auths.len(), 2);
        let hub = auths
            .iter()
            .find(|a| a.server_address.contains("index"))
            .unwrap();
        assert_eq!((hub.username.as_str(), hub.password.as_str()), ("u1", "p1"));
        let local = auths
            .iter()
            .find(|a| a.server_address == "127.0.0.1:5000")
            .unwrap();
        assert_eq!(local.username, "u2");

        let cfg = br#"{"quay.io":{"auth":"dTM6cDM=","email":"x@y"}}"#;
        let auths = auths_from_dockerconfigjson(cfg).unwrap();
        assert_eq!(auths[0].server_address, "quay.io");
        assert_eq!(auths[0].username, "u3");

        assert!(auths_from_dockerconfigjson(b"not json").is_err());
        assert!(auths_from_dockerconfigjson(br#"{"auths": 3}"#).is_err());
    }

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
