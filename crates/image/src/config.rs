//! `<data-dir>/registries.yaml` in k3s's format: registry mirrors (with repository rewrites)
//! and per-host credentials and TLS settings.
//!
//! ```yaml
//! mirrors:
//!   docker.io:
//!     endpoint: ["http://127.0.0.1:5000"]
//!     rewrite: {"^rancher/(.*)": "mirrored/rancher/$1"}
//!   "*":
//!     endpoint: ["https://mirror.example.com"]
//! configs:
//!   "127.0.0.1:5000":
//!     auth: {username: u, password: p}
//!     tls: {insecure_skip_verify: true}
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The parsed file. A missing file is the empty config.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RegistriesConfig {
    /// Registry domain (or `*`) → its mirrors.
    #[serde(default)]
    pub mirrors: BTreeMap<String, Mirror>,
    /// Registry host (`host:port`, or `*`) → credentials and TLS.
    #[serde(default)]
    pub configs: BTreeMap<String, RegistryConfig>,
}

/// Mirrors of one registry, tried in order before the registry itself.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Mirror {
    /// Endpoint URLs (`https://mirror:5000`, `http://127.0.0.1:5000`); the scheme is used as
    /// written (https when none is given).
    #[serde(default)]
    pub endpoint: Vec<String>,
    /// Regex → replacement (`$1` references) applied to the repository path when pulling
    /// through this registry's mirrors.
    #[serde(default)]
    pub rewrite: BTreeMap<String, String>,
}

/// Credentials and TLS settings of one registry host.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// Credentials.
    #[serde(default)]
    pub auth: Option<RegistryAuth>,
    /// TLS client settings.
    #[serde(default)]
    pub tls: Option<RegistryTls>,
}

/// Credentials of a registry host (any of basic user/password, `auth` = base64
/// `user:password`, or an identity token).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RegistryAuth {
    /// User.
    #[serde(default)]
    pub username: String,
    /// Password.
    #[serde(default)]
    pub password: String,
    /// base64 `user:password`.
    #[serde(default)]
    pub auth: String,
    /// OAuth2 refresh token for the registry's token service.
    #[serde(default)]
    pub identity_token: String,
}

/// TLS settings of a registry host.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RegistryTls {
    /// Client certificate (PEM) for mutual TLS.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// Client key (PEM) for mutual TLS.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// CA bundle (PEM) trusted in addition to the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Accept any server certificate (testing only).
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

impl RegistriesConfig {
    /// Parses the YAML text.
    pub fn parse(text: &str) -> anyhow::Result<RegistriesConfig> {
        if text.trim().is_empty() {
            return Ok(RegistriesConfig::default());
        }
        serde_saphyr::from_str(text).map_err(|e| anyhow::anyhow!("invalid registries.yaml: {e}"))
    }

    /// Reads `path`; a missing file is the empty config.
    pub fn load(path: &Path) -> anyhow::Result<RegistriesConfig> {
        match std::fs::read_to_string(path) {
            Ok(text) => RegistriesConfig::parse(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RegistriesConfig::default()),
            Err(e) => Err(anyhow::anyhow!("reading {}: {e}", path.display())),
        }
    }

    /// The mirrors of `domain` (falling back to the `*` entry), if any.
    pub fn mirror(&self, domain: &str) -> Option<&Mirror> {
        self.mirrors.get(domain).or_else(|| self.mirrors.get("*"))
    }

    /// The settings of `host` (falling back to `*`).
    pub fn config(&self, host: &str) -> Option<&RegistryConfig> {
        self.configs.get(host).or_else(|| self.configs.get("*"))
    }
}

impl Mirror {
    /// Applies the first matching rewrite rule to a repository path (invalid regexes are
    /// skipped with a warning, as k3s does).
    pub fn rewrite_path(&self, path: &str) -> String {
        for (pattern, replacement) in &self.rewrite {
            match regex::Regex::new(pattern) {
                Ok(re) if re.is_match(path) => {
                    return re.replace(path, replacement.as_str()).into_owned();
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("registries.yaml: bad rewrite pattern {pattern:?}: {e}"),
            }
        }
        path.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_k3s_format() {
        let cfg = RegistriesConfig::parse(
            r#"
mirrors:
  docker.io:
    endpoint:
      - "http://127.0.0.1:5000"
      - "https://mirror.example.com"
    rewrite:
      "^rancher/(.*)": "mirrored/rancher/$1"
  "*":
    endpoint: ["https://all.example.com"]
configs:
  "127.0.0.1:5000":
    auth:
      username: u
      password: "no"
    tls:
      insecure_skip_verify: true
      ca_file: /etc/ca.pem
  "registry.example.com":
    auth: {auth: dTpw, identity_token: tok}
"#,
        )
        .unwrap();
        let m = cfg.mirror("docker.io").unwrap();
        assert_eq!(
            m.endpoint,
            ["http://127.0.0.1:5000", "https://mirror.example.com"]
        );
        assert_eq!(m.rewrite_path("rancher/pause"), "mirrored/rancher/pause");
        assert_eq!(m.rewrite_path("library/busybox"), "library/busybox");
        assert_eq!(
            cfg.mirror("quay.io").unwrap().endpoint,
            ["https://all.example.com"]
        );
        let c = cfg.config("127.0.0.1:5000").unwrap();
        let auth = c.auth.as_ref().unwrap();
        assert_eq!(
            (auth.username.as_str(), auth.password.as_str()),
            ("u", "no")
        );
        let tls = c.tls.as_ref().unwrap();
        assert!(tls.insecure_skip_verify);
        assert_eq!(tls.ca_file.as_deref(), Some(Path::new("/etc/ca.pem")));
        assert_eq!(
            cfg.config("registry.example.com")
                .unwrap()
                .auth
                .as_ref()
                .unwrap()
                .identity_token,
            "tok"
        );
        assert!(cfg.config("other").is_none());
    }

    #[test]
    fn empty_missing_and_bad() {
        assert_eq!(
            RegistriesConfig::parse("").unwrap(),
            RegistriesConfig::default()
        );
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            RegistriesConfig::load(&dir.path().join("nope.yaml")).unwrap(),
            RegistriesConfig::default()
        );
        let e = RegistriesConfig::parse("mirrors: [1, 2]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("invalid registries.yaml"), "{e}");
        let e = RegistriesConfig::parse("mirors: {}")
            .unwrap_err()
            .to_string();
        assert!(e.contains("invalid registries.yaml"), "{e}");
    }
}
