//! A keep-alive HTTP/1.1 connection over TLS to the server, as the admin (client certificate
//! from the kubeconfig) or anonymously (for the public `/readyz`).

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use base64::Engine;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// TLS settings for connections to one server: its CA and, for the admin, a client identity.
#[derive(Clone)]
pub struct Tls {
    config: Arc<ClientConfig>,
    port: u16,
}

/// One open keep-alive connection; requests on it are sent one after another.
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
}

/// The PEM certificates in `pem`.
fn certs(pem: &[u8]) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = rustls_pemfile::certs(&mut &pem[..]).collect::<Result<Vec<_>, _>>()?;
    if certs.is_empty() {
        bail!("no certificate in PEM data");
    }
    Ok(certs)
}

/// A base64 field of the kubeconfig, decoded (it holds PEM text).
fn kubeconfig_field(doc: &serde_json::Value, pointer: &str) -> anyhow::Result<Vec<u8>> {
    let b64 = doc
        .pointer(pointer)
        .and_then(|v| v.as_str())
        .with_context(|| format!("kubeconfig has no {pointer}"))?;
    Ok(base64::engine::general_purpose::STANDARD.decode(b64.trim())?)
}

/// A rustls client configuration (ring provider, HTTP/1.1 by ALPN) trusting `ca_pem`.
fn client_config(
    ca_pem: &[u8],
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> anyhow::Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    for ca in certs(ca_pem)? {
        roots.add(ca)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let mut config = match identity {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

impl Tls {
    /// Anonymous TLS to `127.0.0.1:port`, trusting the CA certificate in `ca_pem`.
    pub fn anonymous(ca_pem: &[u8], port: u16) -> anyhow::Result<Tls> {
        Ok(Tls {
            config: client_config(ca_pem, None)?,
            port,
        })
    }

    /// TLS as the admin of the kubeconfig at `path` (CA, client certificate and key are
    /// inline base64 PEM), to `127.0.0.1:port`.
    pub fn admin(path: &Path, port: u16) -> anyhow::Result<Tls> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let doc: serde_json::Value = serde_saphyr::from_str(&text)?;
        let ca = kubeconfig_field(&doc, "/clusters/0/cluster/certificate-authority-data")?;
        let cert = kubeconfig_field(&doc, "/users/0/user/client-certificate-data")?;
        let key_pem = kubeconfig_field(&doc, "/users/0/user/client-key-data")?;
        let key = rustls_pemfile::private_key(&mut &key_pem[..])?
            .context("no private key in client-key-data")?;
        Ok(Tls {
            config: client_config(&ca, Some((certs(&cert)?, key)))?,
            port,
        })
    }

    /// Opens a new connection (TCP, TLS handshake, HTTP/1.1).
    pub async fn connect(&self) -> anyhow::Result<Conn> {
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let tcp = TcpStream::connect((loopback, self.port)).await?;
        tcp.set_nodelay(true)?;
        let tls = TlsConnector::from(self.config.clone())
            .connect(ServerName::IpAddress(loopback.into()), tcp)
            .await?;
        let (sender, conn) = http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn { sender })
    }
}

impl Conn {
    /// Sends one request and returns the response with its body still streaming.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> anyhow::Result<Response<Incoming>> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, "127.0.0.1")
            .header(http::header::ACCEPT, "application/json");
        if body.is_some() {
            req = req.header(http::header::CONTENT_TYPE, "application/json");
        }
        let req = req.body(Full::new(body.unwrap_or_default()))?;
        self.sender.ready().await?;
        Ok(self.sender.send_request(req).await?)
    }

    /// Sends one request and reads the whole response body.
    pub async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let resp = self.send(method, path, body).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    /// Like [`Conn::call`], but fails unless the status is `want`.
    pub async fn expect(
        &mut self,
        want: StatusCode,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> anyhow::Result<Bytes> {
        let (status, body) = self.call(method.clone(), path, body).await?;
        if status != want {
            bail!(
                "{method} {path}: {status} (wanted {want}): {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok(body)
    }
}
