//! Client of the Docker Registry HTTP API v2 / OCI distribution API: which endpoints serve a
//! reference (mirrors from registries.yaml, then the registry itself), authentication, and
//! manifest and blob requests.

pub(crate) mod auth;
mod tls;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode};
use rkube_cri::AuthConfig;

use crate::credentials::{Credentials, credentials_for};
use crate::digest::sha256_of;
use crate::oci;
use crate::reference::Reference;
use crate::store::ImageStore;

/// What we accept for a manifest, most specific first (as containerd sends).
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, */*";

/// Largest manifest or config we read into memory.
const MAX_DOCUMENT: usize = 8 << 20;

/// Why a registry request failed; the kinds decide which endpoint's error is reported.
#[derive(Debug)]
pub(crate) enum RegistryError {
    /// 404 (`<ref>: not found`).
    NotFound(String),
    /// 401/403 or a failed token fetch.
    Auth(String),
    /// Anything else (transport errors, other statuses, bad documents).
    Other(String),
}

impl std::fmt::Display for RegistryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegistryError::NotFound(m) | RegistryError::Auth(m) | RegistryError::Other(m) => {
                f.write_str(m)
            }
        }
    }
}

/// One place a reference can be fetched from.
pub(crate) struct Endpoint {
    host: String,
    /// API root path (`/v2`).
    prefix: String,
    /// Repository path at this endpoint (mirrors may rewrite it).
    pub(crate) repo: String,
    creds: Option<Credentials>,
    /// Loopback registries named without a scheme: try https, fall back to http.
    may_fall_back: bool,
    use_http: AtomicBool,
    http: reqwest::Client,
    authorization: Mutex<Option<String>>,
}

impl Endpoint {
    fn url(&self, suffix: &str) -> String {
        let scheme = if self.use_http.load(Ordering::Relaxed) {
            "http"
        } else {
            "https"
        };
        format!(
            "{scheme}://{}{}/{}/{suffix}",
            self.host, self.prefix, self.repo
        )
    }

    /// `host` of this endpoint, for messages.
    pub(crate) fn host(&self) -> &str {
        &self.host
    }
}

/// The endpoints for one pull, with their auth state.
pub(crate) struct Session {
    pub(crate) endpoints: Vec<Endpoint>,
}

/// A manifest (or index) as fetched.
pub(crate) struct Fetched {
    pub bytes: Vec<u8>,
    pub digest: String,
    pub media_type: String,
}

impl Session {
    /// The endpoints for `r`: its mirrors in order, then the registry itself.
    pub(crate) fn new(
        store: &ImageStore,
        r: &Reference,
        pull_auth: &[AuthConfig],
    ) -> Result<Session, String> {
        let registries = &store.inner.registries;
        let mut endpoints = Vec::new();
        let mut clients: HashMap<String, reqwest::Client> = HashMap::new();
        let mut client_for = |host: &str| -> Result<reqwest::Client, String> {
            if let Some(c) = clients.get(host) {
                return Ok(c.clone());
            }
            let tls = registries.config(host).and_then(|c| c.tls.as_ref());
            let c = match tls {
                Some(tls) => http_client(Some(tls))?,
                None => match store.inner.http.get() {
                    Some(c) => c.clone(),
                    None => {
                        let c = http_client(None)?;
                        store.inner.http.get_or_init(|| c).clone()
                    }
                },
            };
            clients.insert(host.to_string(), c.clone());
            Ok(c)
        };
        if let Some(mirror) = registries.mirror(&r.domain) {
            for ep in &mirror.endpoint {
                let (https, host, prefix) = parse_endpoint(ep)?;
                endpoints.push(Endpoint {
                    repo: mirror.rewrite_path(&r.path),
                    creds: credentials_for(&host, &r.domain, pull_auth, registries),
                    may_fall_back: false,
                    use_http: AtomicBool::new(!https),
                    http: client_for(&host)?,
                    authorization: Mutex::new(None),
                    host,
                    prefix,
                });
            }
        }
        let host = r.api_host().to_string();
        // A mirror endpoint that is the registry itself is not tried twice.
        if !endpoints
            .iter()
            .any(|e| e.host == host && e.prefix == "/v2")
        {
            endpoints.push(Endpoint {
                repo: r.path.clone(),
                creds: credentials_for(&host, &r.domain, pull_auth, registries),
                may_fall_back: Reference::is_loopback_host(&host),
                use_http: AtomicBool::new(false),
                http: client_for(&host)?,
                authorization: Mutex::new(None),
                host,
                prefix: "/v2".to_string(),
            });
        }
        Ok(Session { endpoints })
    }

    /// Finds `r`'s manifest at the first endpoint that has it. When all fail, the most
    /// telling error wins: not found, then an auth failure, then the registry's own error.
    pub(crate) async fn resolve(&self, r: &Reference) -> Result<(usize, Fetched), RegistryError> {
        let mut errors = Vec::new();
        for (i, ep) in self.endpoints.iter().enumerate() {
            match self.fetch_manifest(ep, r.object(), r).await {
                Ok(f) => return Ok((i, f)),
                Err(e) => {
                    tracing::debug!("resolving {r} at {}: {e}", ep.host);
                    errors.push(e);
                }
            }
        }
        let pick = |want: fn(&RegistryError) -> bool| errors.iter().position(want);
        let idx = pick(|e| matches!(e, RegistryError::NotFound(_)))
            .or_else(|| pick(|e| matches!(e, RegistryError::Auth(_))))
            .unwrap_or(errors.len().saturating_sub(1));
        Err(errors
            .into_iter()
            .nth(idx)
            .unwrap_or_else(|| RegistryError::Other("no registry endpoint".into())))
    }

    /// GETs a manifest by tag or digest and checks its digest when pinned.
    pub(crate) async fn fetch_manifest(
        &self,
        ep: &Endpoint,
        object: &str,
        r: &Reference,
    ) -> Result<Fetched, RegistryError> {
        let suffix = format!("manifests/{object}");
        let resp = self
            .send(ep, Method::GET, &suffix, Some(MANIFEST_ACCEPT))
            .await?;
        let url = ep.url(&suffix);
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            return Err(status_error(status, &url, &body, r));
        }
        let header_digest = resp
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.split(';').next().unwrap_or(s).trim().to_string())
            .unwrap_or_default();
        let bytes = read_limited(resp, &url).await?;
        let digest = sha256_of(&bytes);
        if object.starts_with("sha256:") && object != digest {
            return Err(RegistryError::Other(format!(
                "digest mismatch for manifest {object} from {url}: content is {digest}"
            )));
        }
        if let Some(h) = header_digest
            && h.starts_with("sha256:")
            && h != digest
        {
            return Err(RegistryError::Other(format!(
                "digest mismatch for manifest from {url}: the registry says {h}, content is {digest}"
            )));
        }
        // The document's own mediaType wins over a generic Content-Type.
        let media_type = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| {
                v.get("mediaType")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
                    .or_else(|| v.get("manifests").map(|_| oci::OCI_INDEX.to_string()))
            })
            .unwrap_or(content_type);
        Ok(Fetched {
            bytes,
            digest,
            media_type,
        })
    }

    /// GETs a small blob (a config) into memory and checks its digest.
    pub(crate) async fn fetch_small_blob(
        &self,
        ep: &Endpoint,
        digest: &str,
        r: &Reference,
    ) -> Result<Vec<u8>, RegistryError> {
        let resp = self.blob(ep, digest, r).await?;
        let url = ep.url(&format!("blobs/{digest}"));
        let bytes = read_limited(resp, &url).await?;
        let got = sha256_of(&bytes);
        if got != digest {
            return Err(RegistryError::Other(format!(
                "digest mismatch for blob {digest} from {url}: content is {got}"
            )));
        }
        Ok(bytes)
    }

    /// Starts a blob download (redirects to storage are followed).
    pub(crate) async fn blob(
        &self,
        ep: &Endpoint,
        digest: &str,
        r: &Reference,
    ) -> Result<Response, RegistryError> {
        let suffix = format!("blobs/{digest}");
        let resp = self.send(ep, Method::GET, &suffix, None).await?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            return Err(status_error(status, &ep.url(&suffix), &body, r));
        }
        Ok(resp)
    }

    /// Sends a request, answering a 401 challenge once (bearer token or Basic credentials),
    /// and falling back to plain http for loopback registries that do not speak TLS.
    async fn send(
        &self,
        ep: &Endpoint,
        method: Method,
        suffix: &str,
        accept: Option<&str>,
    ) -> Result<Response, RegistryError> {
        let mut answered = false;
        loop {
            let url = ep.url(suffix);
            let mut req = ep.http.request(method.clone(), &url);
            if let Some(a) = accept {
                req = req.header(ACCEPT, a);
            }
            let authorization = ep.authorization.lock().map(|a| a.clone()).unwrap_or(None);
            if let Some(a) = authorization {
                req = req.header(AUTHORIZATION, a);
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    if ep.may_fall_back && !ep.use_http.swap(true, Ordering::Relaxed) {
                        tracing::debug!("{url}: {e}; retrying over plain http");
                        continue;
                    }
                    let parsed = url::Url::parse(&url).ok();
                    return Err(RegistryError::Other(match parsed {
                        Some(u) => transport_error(method.as_str(), &u, &e),
                        None => e.to_string(),
                    }));
                }
            };
            if resp.status() != StatusCode::UNAUTHORIZED || answered {
                return Ok(resp);
            }
            answered = true;
            let challenges: Vec<auth::Challenge> = resp
                .headers()
                .get_all(WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(auth::parse_challenges)
                .collect();
            let header = if let Some(bearer) = challenges.iter().find(|c| c.scheme == "bearer") {
                let scope = format!("repository:{}:pull", ep.repo);
                let token = auth::fetch_token(&ep.http, bearer, &scope, ep.creds.as_ref())
                    .await
                    .map_err(|e| RegistryError::Auth(format!("failed to authorize: {e}")))?;
                format!("Bearer {token}")
            } else if let (Some(_), Some(Credentials::Basic { username, password })) = (
                challenges.iter().find(|c| c.scheme == "basic"),
                ep.creds.as_ref(),
            ) {
                auth::basic_header(username, password)
            } else {
                return Ok(resp);
            };
            if let Ok(mut a) = ep.authorization.lock() {
                *a = Some(header);
            }
        }
    }
}

/// `failed to do request: Get "https://…": <cause chain>` as Go's HTTP client words it.
pub(crate) fn transport_error(method: &str, url: &url::Url, e: &reqwest::Error) -> String {
    let mut msg = String::new();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = source {
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&s.to_string());
        source = s.source();
    }
    if msg.is_empty() {
        msg = e.to_string();
    }
    let mut m = method.to_ascii_lowercase();
    if let Some(first) = m.get_mut(..1) {
        first.make_ascii_uppercase();
    }
    format!("failed to do request: {m} \"{url}\": {msg}")
}

/// The registry's error text from a v2 error body (`{"errors":[{"code","message"}]}`), as
/// `code: message` with the code lower-cased (as docker and containerd print it).
pub(crate) fn server_message(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let errors = v.get("errors")?.as_array()?;
    let parts: Vec<String> = errors
        .iter()
        .map(|e| {
            let code = e.get("code").and_then(|c| c.as_str()).unwrap_or("");
            let message = e.get("message").and_then(|c| c.as_str()).unwrap_or("");
            match (code.is_empty(), message.is_empty()) {
                (false, false) => format!("{}: {message}", code.to_ascii_lowercase()),
                (false, true) => code.to_ascii_lowercase(),
                _ => message.to_string(),
            }
        })
        .filter(|s| !s.is_empty())
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

fn status_error(status: StatusCode, url: &str, body: &str, r: &Reference) -> RegistryError {
    match status {
        StatusCode::NOT_FOUND => RegistryError::NotFound(format!("{r}: not found")),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            let detail = match server_message(body) {
                Some(m) => format!("server message: {m} ({status})"),
                None => format!("unexpected status from GET request to {url}: {status}"),
            };
            RegistryError::Auth(format!(
                "pull access denied, repository does not exist or may require authorization: {detail}"
            ))
        }
        _ => {
            let detail = server_message(body)
                .map(|m| format!(" ({m})"))
                .unwrap_or_default();
            RegistryError::Other(format!(
                "unexpected status from GET request to {url}: {status}{detail}"
            ))
        }
    }
}

async fn read_limited(mut resp: Response, url: &str) -> Result<Vec<u8>, RegistryError> {
    let mut out = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                out.extend_from_slice(&c);
                if out.len() > MAX_DOCUMENT {
                    return Err(RegistryError::Other(format!(
                        "{url}: document larger than {MAX_DOCUMENT} bytes"
                    )));
                }
            }
            Ok(None) => return Ok(out),
            Err(e) => return Err(RegistryError::Other(format!("reading {url}: {e}"))),
        }
    }
}

/// `(https, host, api prefix)` of a mirror endpoint URL (`https` when no scheme is written).
fn parse_endpoint(ep: &str) -> Result<(bool, String, String), String> {
    let with_scheme = if ep.contains("://") {
        ep.to_string()
    } else {
        format!("https://{ep}")
    };
    let u = url::Url::parse(&with_scheme)
        .map_err(|e| format!("registries.yaml: invalid mirror endpoint {ep:?}: {e}"))?;
    let https = match u.scheme() {
        "https" => true,
        "http" => false,
        s => {
            return Err(format!(
                "registries.yaml: mirror endpoint {ep:?}: unsupported scheme {s}"
            ));
        }
    };
    let host = match (u.host_str(), u.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        (None, _) => {
            return Err(format!(
                "registries.yaml: mirror endpoint {ep:?} has no host"
            ));
        }
    };
    let path = u.path().trim_end_matches('/');
    let prefix = if path.is_empty() {
        "/v2".to_string()
    } else if path.ends_with("/v2") {
        path.to_string()
    } else {
        format!("{path}/v2")
    };
    Ok((https, host, prefix))
}

/// An HTTP client with rustls (ring) and the host's TLS settings.
fn http_client(tls: Option<&crate::config::RegistryTls>) -> Result<reqwest::Client, String> {
    let config = tls::client_config(tls)?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .user_agent(concat!("rkube/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| format!("building the registry HTTP client: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_messages() {
        assert_eq!(
            parse_endpoint("http://127.0.0.1:5000").unwrap(),
            (false, "127.0.0.1:5000".into(), "/v2".into())
        );
        assert_eq!(
            parse_endpoint("mirror.example.com/prefix/").unwrap(),
            (true, "mirror.example.com".into(), "/prefix/v2".into())
        );
        assert!(parse_endpoint("ftp://x").is_err());
        assert_eq!(
            server_message(r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}"#)
                .unwrap(),
            "unauthorized: authentication required"
        );
        let r = Reference::parse("nope").unwrap();
        let e = status_error(StatusCode::NOT_FOUND, "u", "", &r);
        assert_eq!(e.to_string(), "docker.io/library/nope:latest: not found");
        let e = status_error(
            StatusCode::UNAUTHORIZED,
            "http://h/v2/x/manifests/1",
            "",
            &r,
        );
        assert_eq!(
            e.to_string(),
            "pull access denied, repository does not exist or may require authorization: \
             unexpected status from GET request to http://h/v2/x/manifests/1: 401 Unauthorized"
        );
    }
}
