//! The kubelet's serving TLS: a self-signed certificate for the node's name and addresses (as
//! a kubelet without `--tls-cert-file` makes), and client certificates checked against the
//! cluster CA, which is how the apiserver authenticates to it.

use std::net::IpAddr;
use std::sync::Arc;

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;

/// Failures building the TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The client CA could not be read.
    #[error("reading the client CA: {0}")]
    ClientCa(String),
    /// Generating the serving certificate failed.
    #[error("generating the kubelet serving certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// rustls refused the configuration.
    #[error("kubelet TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A rustls server configuration for the kubelet's streaming server: a fresh self-signed
/// serving certificate for `node_name` and `ips` (plus `localhost`), HTTP/1.1 only (upgrades
/// need it), and client certificates verified against `client_ca_pem` when presented.
/// Requests without one reach only `/healthz` (the server enforces that per path).
pub fn kubelet_tls_config(
    node_name: &str,
    ips: &[IpAddr],
    client_ca_pem: &str,
) -> Result<rustls::ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    let mut any = false;
    for cert in rustls_pemfile::certs(&mut client_ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| TlsError::ClientCa(e.to_string()))?;
        roots.add(cert)?;
        any = true;
    }
    if !any {
        return Err(TlsError::ClientCa(
            "no certificate in the client CA PEM".into(),
        ));
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::ClientCa(e.to_string()))?;

    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("{node_name}@kubelet"));
    params.distinguished_name = dn;
    let mut sans = Vec::new();
    for name in [node_name, "localhost"] {
        if let Ok(n) = name.try_into() {
            sans.push(SanType::DnsName(n));
        }
    }
    for ip in ips {
        sans.push(SanType::IpAddress(*ip));
    }
    params.subject_alt_names = sans;
    let cert = params.self_signed(&key)?;
    let chain = vec![CertificateDer::from(cert.der().to_vec())];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}
