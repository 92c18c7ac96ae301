//! Pull credentials from Kubernetes image pull secrets: a `kubernetes.io/dockerconfigjson`
//! Secret's `.dockerconfigjson` (`{"auths": {"host": {...}}}`) or a `kubernetes.io/dockercfg`
//! Secret's `.dockercfg` (`{"host": {...}}`). One parser for the kubelet (which reads the
//! secrets) and the image service (which also reads registries.yaml's `auth` fields).

use std::collections::BTreeMap;

use base64::Engine;
use serde::Deserialize;

use crate::AuthConfig;

/// A pull secret's value is not docker config JSON.
#[derive(Debug, thiserror::Error)]
#[error("invalid docker config JSON: {0}")]
pub struct DockerConfigError(String);

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

/// The credentials of a `.dockerconfigjson` or `.dockercfg` value. `auth` (base64
/// `user:password`) fills in a missing user and password. Server addresses are kept as written
/// (`https://index.docker.io/v1/`); matching them to a registry host is the image service's job.
pub fn auths_from_dockerconfigjson(bytes: &[u8]) -> Result<Vec<AuthConfig>, DockerConfigError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| DockerConfigError(e.to_string()))?;
    let entries = match value.get("auths") {
        Some(auths) => auths.clone(),
        None => value,
    };
    let entries: BTreeMap<String, DockerAuthEntry> =
        serde_json::from_value(entries).map_err(|e| DockerConfigError(e.to_string()))?;
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
            && let Some((u, p)) = decode_basic_auth(&a.auth)
        {
            a.username = u;
            a.password = p;
        }
        out.push(a);
    }
    Ok(out)
}

/// Decodes a docker config `auth` field: base64 of `user:password`.
pub fn decode_basic_auth(auth: &str) -> Option<(String, String)> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_string(), p.to_string()))
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
}
