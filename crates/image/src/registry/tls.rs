//! rustls client configuration for registries: the system's roots plus a configured CA,
//! client certificates, and `insecure_skip_verify`. Always the ring provider (the process
//! has exactly one).

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use crate::config::RegistryTls;

/// Builds the client config for a registry host.
pub(super) fn client_config(tls: Option<&RegistryTls>) -> Result<ClientConfig, String> {
    let insecure = tls.is_some_and(|t| t.insecure_skip_verify);
    let builder = if insecure {
        // Any certificate, but handshake signatures are still checked (rkube-tls).
        rkube_tls::insecure_client_builder().map_err(|e| format!("TLS setup: {e}"))?
    } else {
        let builder = ClientConfig::builder_with_provider(rkube_tls::ring_provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?;
        let mut roots = RootCertStore::empty();
        // Unreadable system certificates leave the configured CA (if any) as the only root.
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        if let Some(ca) = tls.and_then(|t| t.ca_file.as_ref()) {
            let certs = CertificateDer::pem_file_iter(ca)
                .map_err(|e| format!("registries.yaml: ca_file {}: {e}", ca.display()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("registries.yaml: ca_file {}: {e}", ca.display()))?;
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| format!("registries.yaml: ca_file {}: {e}", ca.display()))?;
            }
        }
        builder.with_root_certificates(roots)
    };
    let mut config = match tls.and_then(|t| t.cert_file.as_ref().zip(t.key_file.as_ref())) {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("registries.yaml: cert_file {}: {e}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("registries.yaml: key_file {}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("registries.yaml: client certificate: {e}"))?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
