//! The one "skip server certificate verification" TLS client of rkube.
//!
//! Several clients must talk to servers whose certificates cannot be checked: the kubelet's
//! HTTPS probes (upstream sets `InsecureSkipVerify`), the apiserver dialling kubelets with
//! self-signed serving certificates (`--kubelet-insecure-tls`, k3s's default) and registries
//! marked `insecure_skip_verify` in `registries.yaml`. They all use [`InsecureServerVerifier`]
//! so there is one audited place that accepts any certificate.
//!
//! "Insecure" here means the certificate chain and name are not checked. The handshake
//! signatures still are, with the ring provider (the process has exactly one provider), so a
//! peer must hold the private key of the certificate it presents, as Go's
//! `InsecureSkipVerify` also requires.

#![warn(missing_docs)]

use std::sync::Arc;

use rustls::client::WantsClientCert;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ConfigBuilder, DigitallySignedStruct, SignatureScheme};

/// The crypto provider every rkube TLS config uses: ring.
pub fn ring_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Accepts any server certificate but still verifies the handshake signatures against it.
#[derive(Debug)]
pub struct InsecureServerVerifier {
    provider: Arc<CryptoProvider>,
}

impl InsecureServerVerifier {
    /// A verifier that checks signatures with `provider`'s algorithms.
    pub fn new(provider: Arc<CryptoProvider>) -> InsecureServerVerifier {
        InsecureServerVerifier { provider }
    }
}

impl ServerCertVerifier for InsecureServerVerifier {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A client config builder (ring, TLS 1.2 and 1.3) that accepts any server certificate;
/// finish it with `with_no_client_auth()` or `with_client_auth_cert(..)`.
pub fn insecure_client_builder()
-> Result<ConfigBuilder<ClientConfig, WantsClientCert>, rustls::Error> {
    let provider = ring_provider();
    Ok(ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(InsecureServerVerifier::new(provider))))
}

/// A client config that accepts any server certificate and presents none; no ALPN is set
/// (callers that need `http/1.1` or `h2` set `alpn_protocols`).
pub fn insecure_client_config() -> Result<ClientConfig, rustls::Error> {
    Ok(insecure_client_builder()?.with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::PrivateKeyDer;
    use rustls::server::{ClientHello, ResolvesServerCert};
    use rustls::sign::CertifiedKey;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Serves `key` under `cert` without checking they match (rustls' own helpers refuse).
    #[derive(Debug)]
    struct Fixed(Arc<CertifiedKey>);

    impl ResolvesServerCert for Fixed {
        fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
            Some(self.0.clone())
        }
    }

    fn self_signed() -> (CertificateDer<'static>, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["pod.example".into()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.der().clone(), key)
    }

    /// Runs one handshake against a server presenting `cert` and signing with `key`.
    async fn handshake(cert: CertificateDer<'static>, key: &rcgen::KeyPair) -> Result<(), String> {
        let provider = ring_provider();
        let der = PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        let signer = provider.key_provider.load_private_key(der).unwrap();
        let ck = Arc::new(CertifiedKey::new(vec![cert], signer));
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Fixed(ck)));
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let srv = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            if let Ok(mut tls) = acceptor.accept(s).await {
                let _ = tls.write_all(b"hi").await;
                let _ = tls.shutdown().await;
            }
        });
        let connector =
            tokio_rustls::TlsConnector::from(Arc::new(insecure_client_config().unwrap()));
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = ServerName::IpAddress(addr.ip().into());
        let res = async {
            let mut tls = connector
                .connect(name, tcp)
                .await
                .map_err(|e| e.to_string())?;
            let mut buf = Vec::new();
            tls.read_to_end(&mut buf).await.map_err(|e| e.to_string())?;
            assert_eq!(buf, b"hi");
            Ok(())
        }
        .await;
        srv.abort();
        res
    }

    #[tokio::test]
    async fn accepts_a_self_signed_certificate_for_another_name() {
        let (cert, key) = self_signed();
        handshake(cert, &key).await.unwrap();
    }

    #[tokio::test]
    async fn still_checks_the_handshake_signature() {
        // The certificate of one key, signatures by another: must fail.
        let (cert, _) = self_signed();
        let (_, other) = self_signed();
        let err = handshake(cert, &other).await.unwrap_err();
        assert!(err.to_lowercase().contains("signature"), "{err}");
    }
}
