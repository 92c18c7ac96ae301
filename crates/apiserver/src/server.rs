//! The HTTPS listener: TLS with optional client certificates, HTTP/1.1 and HTTP/2, each
//! request authenticated and handed to [`ApiServer::handle`].

use std::sync::Arc;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::ApiServer;
use crate::authn::UserInfo;
use crate::pki::Pki;
use crate::response::{self, Response};

/// Failures setting up TLS.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM block could not be read.
    #[error("reading PEM: {0}")]
    Pem(String),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The rustls server configuration for the apiserver's PKI.
pub fn tls_config(pki: &Pki) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for ca in certs(&pki.ca_cert_pem)? {
        roots.add(ca)?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Pem(e.to_string()))?;
    let key: PrivateKeyDer<'static> =
        rustls_pemfile::private_key(&mut pki.serving_key_pem.as_bytes())
            .map_err(|e| TlsError::Pem(e.to_string()))?
            .ok_or_else(|| TlsError::Pem("no private key in serving.key".into()))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(&pki.serving_cert_pem)?, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

fn certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem(e.to_string()))
}

/// Accepts connections on `listener` forever.
pub async fn serve(srv: Arc<ApiServer>, listener: TcpListener, tls: Arc<rustls::ServerConfig>) {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let srv = srv.clone();
        tokio::spawn(async move {
            let stream = match acceptor.accept(tcp).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!("TLS handshake: {e}");
                    return;
                }
            };
            let cert_user = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| srv.authenticator().from_client_cert(c));
            let service = service_fn(move |req: http::Request<Incoming>| {
                let srv = srv.clone();
                let cert_user = cert_user.clone();
                async move { Ok::<_, std::convert::Infallible>(dispatch(srv, req, cert_user).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!("connection: {e}");
            }
        });
    }
}

async fn dispatch(
    srv: Arc<ApiServer>,
    req: http::Request<Incoming>,
    cert_user: Option<UserInfo>,
) -> Response {
    let user = cert_user
        .or_else(|| {
            req.headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .and_then(|t| srv.authenticator().from_bearer(t.trim()))
        })
        .unwrap_or_else(UserInfo::anonymous);
    let (parts, body) = req.into_parts();
    let body: Bytes = match response::read_body(body, crate::MAX_REQUEST_BYTES).await {
        Ok(b) => b,
        Err(e) => return response::error(&e),
    };
    srv.handle(http::Request::from_parts(parts, body), user)
        .await
}
