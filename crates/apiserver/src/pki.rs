//! The cluster's PKI: a CA, the apiserver's serving certificate, the admin client certificate,
//! the service-account signing key and the node join token, created on first start under
//! `<data-dir>/server/tls` and reused afterwards.
//!
//! Keys are ECDSA P-256: small, fast to generate (start-up time matters) and accepted by every
//! Kubernetes client.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use sha2::{Digest, Sha256};

/// Everything the apiserver needs to serve TLS and authenticate clients.
#[derive(Clone)]
pub struct Pki {
    /// Directory holding the files.
    pub dir: PathBuf,
    /// CA certificate (PEM).
    pub ca_cert_pem: String,
    /// Serving certificate chain (PEM).
    pub serving_cert_pem: String,
    /// Serving key (PEM).
    pub serving_key_pem: String,
    /// Admin client certificate (PEM): CN=system:admin, O=system:masters.
    pub admin_cert_pem: String,
    /// Admin client key (PEM).
    pub admin_key_pem: String,
    /// Service-account token signing key (PEM).
    pub service_account_key_pem: String,
    /// The node join token, `K10<sha256(ca)>::server:<secret>` as k3s writes it.
    pub node_token: String,
}

/// Failures creating or loading the PKI.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// File IO failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Certificate generation failed.
    #[error("generating certificates: {0}")]
    Rcgen(#[from] rcgen::Error),
}

/// Where and for which names to create the PKI.
pub struct PkiOptions<'a> {
    /// `<data-dir>/server/tls`.
    pub dir: &'a Path,
    /// Extra subject alternative names (host IPs, hostnames, the service IP).
    pub extra_sans: &'a [String],
    /// A token chosen by the user (`--token`), or None to generate one.
    pub token: Option<&'a str>,
}

const SERVING_NAMES: &[&str] = &[
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
    "127.0.0.1",
];

impl Pki {
    /// Loads the PKI from `opts.dir`, creating whatever is missing.
    pub fn load_or_create(opts: &PkiOptions<'_>) -> Result<Pki, PkiError> {
        let dir = opts.dir;
        std::fs::create_dir_all(dir).map_err(|source| PkiError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let (ca_cert_pem, ca_key_pem) = load_pair(dir, "ca")?.map_or_else(
            || -> Result<_, PkiError> {
                let key = KeyPair::generate()?;
                let mut params = CertificateParams::new(Vec::<String>::new())?;
                params.distinguished_name = dn("rkube-ca", None);
                params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
                params.key_usages = vec![
                    KeyUsagePurpose::KeyCertSign,
                    KeyUsagePurpose::CrlSign,
                    KeyUsagePurpose::DigitalSignature,
                ];
                let cert = params.self_signed(&key)?;
                save_pair(dir, "ca", &cert.pem(), &key.serialize_pem())
            },
            Ok,
        )?;
        let ca_key = KeyPair::from_pem(&ca_key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&ca_cert_pem, ca_key)?;

        let mut sans: Vec<String> = SERVING_NAMES.iter().map(|s| s.to_string()).collect();
        for s in opts.extra_sans {
            if !sans.contains(s) {
                sans.push(s.clone());
            }
        }
        // Reuse the serving certificate only while it still covers every wanted name, so that a
        // new host IP or --tls-san takes effect on restart.
        let sans_file = dir.join("serving.sans");
        let wanted = sans.join(",");
        let serving = match (
            load_pair(dir, "serving")?,
            std::fs::read_to_string(&sans_file),
        ) {
            (Some(pair), Ok(have)) if have == wanted => pair,
            _ => {
                let key = KeyPair::generate()?;
                let mut params = CertificateParams::new(Vec::<String>::new())?;
                params.subject_alt_names = sans.iter().map(|s| san(s)).collect();
                params.distinguished_name = dn("kube-apiserver", None);
                params.key_usages = vec![
                    KeyUsagePurpose::DigitalSignature,
                    KeyUsagePurpose::KeyEncipherment,
                ];
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
                let cert = params.signed_by(&key, &issuer)?;
                let pair = save_pair(dir, "serving", &cert.pem(), &key.serialize_pem())?;
                write(&sans_file, &wanted)?;
                pair
            }
        };
        let admin = match load_pair(dir, "admin")? {
            Some(pair) => pair,
            None => {
                let (cert, key) = client_cert(&issuer, "system:admin", Some("system:masters"))?;
                save_pair(dir, "admin", &cert, &key)?
            }
        };
        let sa_path = dir.join("service-account.key");
        let service_account_key_pem = match std::fs::read_to_string(&sa_path) {
            Ok(k) => k,
            Err(_) => {
                let k = KeyPair::generate()?.serialize_pem();
                write(&sa_path, &k)?;
                k
            }
        };
        let token_path = dir.join("token");
        let node_token = match (opts.token, std::fs::read_to_string(&token_path)) {
            (Some(t), _) => full_token(&ca_cert_pem, t),
            (None, Ok(t)) => t.trim().to_string(),
            (None, Err(_)) => full_token(&ca_cert_pem, &random_hex(16)),
        };
        write(&token_path, &node_token)?;
        Ok(Pki {
            dir: dir.to_path_buf(),
            ca_cert_pem,
            serving_cert_pem: serving.0,
            serving_key_pem: serving.1,
            admin_cert_pem: admin.0,
            admin_key_pem: admin.1,
            service_account_key_pem,
            node_token,
        })
    }

    /// The secret part of the node token, which is what agents must present.
    pub fn token_secret(&self) -> &str {
        token_secret(&self.node_token)
    }

    /// Issues a client certificate signed by the cluster CA (for nodes and components).
    pub fn issue_client_cert(
        &self,
        common_name: &str,
        organization: Option<&str>,
    ) -> Result<(String, String), PkiError> {
        let ca_key = KeyPair::from_pem(&self.ca_key_pem()?)?;
        let issuer = Issuer::from_ca_cert_pem(&self.ca_cert_pem, ca_key)?;
        client_cert(&issuer, common_name, organization)
    }

    fn ca_key_pem(&self) -> Result<String, PkiError> {
        let path = self.dir.join("ca.key");
        std::fs::read_to_string(&path).map_err(|source| PkiError::Io { path, source })
    }

    /// An admin kubeconfig for `server` (e.g. `https://127.0.0.1:6443`).
    pub fn admin_kubeconfig(&self, server: &str) -> String {
        kubeconfig(
            server,
            &self.ca_cert_pem,
            "default",
            &self.admin_cert_pem,
            &self.admin_key_pem,
        )
    }
}

/// The secret part of a token given in either the full `K10…::user:secret` or the bare form.
pub fn token_secret(token: &str) -> &str {
    token.rsplit_once(':').map_or(token, |(_, s)| s)
}

fn full_token(ca_pem: &str, secret: &str) -> String {
    if secret.starts_with("K10") {
        return secret.to_string();
    }
    let hash = Sha256::digest(ca_pem.as_bytes());
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("K10{hex}::server:{secret}")
}

fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

fn client_cert(
    issuer: &Issuer<'_, KeyPair>,
    cn: &str,
    org: Option<&str>,
) -> Result<(String, String), PkiError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = dn(cn, org);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn dn(cn: &str, org: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    if let Some(o) = org {
        dn.push(DnType::OrganizationName, o);
    }
    dn.push(DnType::CommonName, cn);
    dn
}

fn san(name: &str) -> SanType {
    match name.parse::<IpAddr>() {
        Ok(ip) => SanType::IpAddress(ip),
        Err(_) => SanType::DnsName(
            name.try_into()
                .unwrap_or_else(|_| "invalid.local".try_into().expect("static name is valid")),
        ),
    }
}

fn load_pair(dir: &Path, name: &str) -> Result<Option<(String, String)>, PkiError> {
    let cert = std::fs::read_to_string(dir.join(format!("{name}.crt")));
    let key = std::fs::read_to_string(dir.join(format!("{name}.key")));
    Ok(match (cert, key) {
        (Ok(c), Ok(k)) => Some((c, k)),
        _ => None,
    })
}

fn save_pair(dir: &Path, name: &str, cert: &str, key: &str) -> Result<(String, String), PkiError> {
    write(&dir.join(format!("{name}.crt")), cert)?;
    write(&dir.join(format!("{name}.key")), key)?;
    Ok((cert.to_string(), key.to_string()))
}

/// Writes a file readable by its owner only (keys and tokens are secrets).
pub fn write(path: &Path, contents: &str) -> Result<(), PkiError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(contents.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// A kubeconfig with one cluster, one user (client certificate) and one context, all named
/// `default` as k3s names them.
pub fn kubeconfig(server: &str, ca_pem: &str, user: &str, cert_pem: &str, key_pem: &str) -> String {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: {server}\n  name: default\ncontexts:\n- context:\n    cluster: default\n    user: {user}\n  name: default\ncurrent-context: default\npreferences: {{}}\nusers:\n- name: {user}\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
        b64(ca_pem),
        b64(cert_pem),
        b64(key_pem)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_reused() {
        let dir = std::env::temp_dir().join(format!("rkube-pki-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let opts = PkiOptions {
            dir: &dir,
            extra_sans: &["10.43.0.1".to_string()],
            token: None,
        };
        let a = Pki::load_or_create(&opts).unwrap();
        let b = Pki::load_or_create(&opts).unwrap();
        assert_eq!(a.ca_cert_pem, b.ca_cert_pem);
        assert_eq!(a.serving_cert_pem, b.serving_cert_pem);
        assert_eq!(a.node_token, b.node_token);
        assert!(a.node_token.starts_with("K10"));
        assert_eq!(token_secret(&a.node_token).len(), 32);
        let kc = a.admin_kubeconfig("https://127.0.0.1:6443");
        assert!(kc.contains("server: https://127.0.0.1:6443"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
