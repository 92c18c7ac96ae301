//! rkube-apiserver: the Kubernetes API.
//!
//! A request flows: [`server`] (TLS, client certificates) → [`ApiServer::handle`] (authn,
//! authz, routing) → [`discovery`] / [`openapi`] / [`rest`] (the one generic REST handler) →
//! [`strategy`] (per-kind defaulting and validation) → the [`rkube_store::Store`]. LIST and
//! WATCH are answered from the [`cache::WatchCache`].
//!
//! This is the only crate that touches the store; everything else reaches objects through
//! the HTTP API (in-process callers through [`ApiServer::handle`], with the same checks).

pub mod alloc;
pub mod authn;
pub mod authz;
pub mod cache;
pub mod codec;
pub mod conversion;
pub mod crd;
pub mod discovery;
pub mod fieldmanager;
pub mod local;
pub mod pki;
pub mod request;
pub mod response;
pub mod rest;
pub mod satoken;
pub mod server;
pub mod strategy;
pub mod table;

use std::sync::{Arc, RwLock};
use std::time::Instant;

use bytes::Bytes;
use rkube_core::registry::Registry;
use rkube_core::status::ApiError;
use rkube_store::Store;
use serde_json::json;

use crate::authn::{Authenticator, UserInfo};
use crate::authz::{AllowAuthenticated, Authorizer, Decision};
use crate::request::{ApiPath, Query};
use crate::response::{Response, error, json};

/// Largest request body accepted, as upstream (3 MiB).
pub const MAX_REQUEST_BYTES: usize = 3 * 1024 * 1024;

/// The Kubernetes version served.
pub const KUBERNETES_VERSION: &str = "v1.35.0";

/// Settings of the apiserver.
#[derive(Debug, Clone)]
pub struct Config {
    /// Service ClusterIP range, e.g. `10.43.0.0/16`.
    pub service_cidr: String,
    /// NodePort range, inclusive.
    pub node_port_range: (u16, u16),
    /// The URL clients reach the apiserver at (for the `kubernetes` Endpoints).
    pub advertise_address: String,
    /// The port the apiserver listens on.
    pub port: u16,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            service_cidr: "10.43.0.0/16".into(),
            node_port_range: (30000, 32767),
            advertise_address: "127.0.0.1".into(),
            port: 6443,
        }
    }
}

/// The apiserver: shared by every connection.
pub struct ApiServer {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) cache: Arc<cache::WatchCache>,
    pub(crate) registry: RwLock<Registry>,
    pub(crate) authenticator: Authenticator,
    pub(crate) authorizer: Box<dyn Authorizer>,
    pub(crate) allocators: alloc::ServiceAllocators,
    pub(crate) config: Config,
    pub(crate) schemas: RwLock<Arc<rkube_apimachinery::schema::Schemas>>,
    openapi: tokio::sync::watch::Sender<Option<Arc<rkube_openapi::OpenApi>>>,
    openapi_jobs: std::sync::mpsc::Sender<OpenApiJob>,
    pub(crate) printer_columns: RwLock<crd::PrinterColumns>,
    ready: std::sync::atomic::AtomicBool,
    started: Instant,
    /// TLS client settings for kubelets (logs, exec, attach, port-forward).
    pub(crate) kubelet_client: std::sync::OnceLock<rest::connect::KubeletClient>,
}

impl ApiServer {
    /// Builds an apiserver over `store`, loading the watch cache.
    pub async fn new(
        store: Arc<dyn Store>,
        authenticator: Authenticator,
        config: Config,
    ) -> Result<Arc<ApiServer>, rkube_store::Error> {
        let cache = cache::WatchCache::start(store.clone()).await?;
        let allocators =
            alloc::ServiceAllocators::new(&config.service_cidr, config.node_port_range)
                .map_err(rkube_store::Error::Backend)?;
        let (openapi_jobs, jobs) = std::sync::mpsc::channel();
        let srv = Arc::new(ApiServer {
            store,
            cache,
            registry: RwLock::new(Registry::builtin()),
            authenticator,
            authorizer: Box::new(AllowAuthenticated),
            allocators,
            config,
            // Typed schemas are needed by the first write (patch strategies, managed fields),
            // so they are built now; the OpenAPI documents follow on their own thread.
            schemas: RwLock::new(Arc::new(rkube_openapi::schemas())),
            openapi: tokio::sync::watch::channel(None).0,
            openapi_jobs,
            printer_columns: RwLock::default(),
            ready: std::sync::atomic::AtomicBool::new(false),
            started: Instant::now(),
            kubelet_client: std::sync::OnceLock::new(),
        });
        srv.allocators.load(&srv.cache);
        spawn_openapi_builder(Arc::downgrade(&srv), jobs);
        srv.load_crds();
        Ok(srv)
    }

    /// The registry of served resources (built-ins plus custom resources).
    pub fn registry(&self) -> Registry {
        self.registry.read().expect("registry lock").clone()
    }

    /// Changes the OpenAPI documents (custom resources added or removed), off the request
    /// path: the builder thread applies changes in order and publishes the result.
    pub(crate) fn rebuild_openapi(
        &self,
        job: impl FnOnce(&mut rkube_openapi::OpenApi) + Send + 'static,
    ) {
        let _ = self.openapi_jobs.send(Box::new(job));
    }

    /// Installs the OpenAPI documents and the schemas derived from them.
    fn set_openapi(&self, openapi: rkube_openapi::OpenApi) -> Arc<rkube_openapi::OpenApi> {
        *self.schemas.write().expect("schemas lock") = Arc::new(openapi.schemas().clone());
        let published = Arc::new(openapi);
        self.openapi.send_replace(Some(published.clone()));
        published
    }

    /// The OpenAPI documents, waiting for them to be built.
    pub async fn openapi_documents(&self) -> Arc<rkube_openapi::OpenApi> {
        let mut rx = self.openapi.subscribe();
        let ready = rx.wait_for(Option::is_some).await;
        match ready {
            Ok(v) => v.clone().expect("checked by wait_for"),
            Err(_) => Arc::new(rkube_openapi::OpenApi::new(&self.registry())),
        }
    }

    /// The authenticator, for the TLS layer.
    pub fn authenticator(&self) -> &Authenticator {
        &self.authenticator
    }

    /// Marks start-up complete: `/readyz` answers ok from now on.
    pub fn set_ready(&self) {
        self.ready.store(true, std::sync::atomic::Ordering::Release);
    }

    /// The apiserver's settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Time since the apiserver was built.
    pub fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// Answers one request from `user` (already authenticated by the caller: the TLS layer,
    /// or an in-process component).
    pub async fn handle(self: &Arc<Self>, req: http::Request<Bytes>, user: UserInfo) -> Response {
        let path = req.uri().path().to_string();
        let query = Query::parse(req.uri().query());
        if let Some(r) = self.handle_non_resource(&path, &query, &req, &user) {
            return r;
        }
        if user.is_anonymous() {
            return error(&ApiError::unauthorized());
        }
        if path == "/openapi/v2" || path.starts_with("/openapi/v3") {
            return self.openapi(&path, &req).await;
        }
        match request::parse(req.method(), &path, &query) {
            ApiPath::LegacyRoot => {
                if discovery::wants_aggregated(req.headers()) {
                    let reg = self.registry();
                    return response::raw(
                        200,
                        discovery::AGGREGATED_V2,
                        serde_json::to_vec(&discovery::aggregated(&reg, true)).unwrap_or_default(),
                    );
                }
                json(200, &discovery::legacy_versions())
            }
            ApiPath::GroupsRoot => {
                let reg = self.registry();
                if discovery::wants_aggregated(req.headers()) {
                    return response::raw(
                        200,
                        discovery::AGGREGATED_V2,
                        serde_json::to_vec(&discovery::aggregated(&reg, false)).unwrap_or_default(),
                    );
                }
                json(200, &discovery::group_list(&reg))
            }
            ApiPath::Group(g) => match discovery::group(&self.registry(), &g) {
                Some(v) => json(200, &v),
                None => not_found_path(&path),
            },
            ApiPath::GroupVersion(g, v) => match discovery::resource_list(&self.registry(), &g, &v)
            {
                Some(doc) => json(200, &doc),
                None => not_found_path(&path),
            },
            ApiPath::Resource(info) => {
                if let Decision::Deny(why) = self.authorizer.authorize(&user, &info) {
                    return error(&ApiError::forbidden(
                        &info.group,
                        &info.resource,
                        info.name.as_deref().unwrap_or(""),
                        &why,
                    ));
                }
                rest::handle(self, info, query, req).await
            }
            ApiPath::NotFound => not_found_path(&path),
        }
    }

    fn handle_non_resource(
        self: &Arc<Self>,
        path: &str,
        _query: &Query,
        _req: &http::Request<Bytes>,
        user: &UserInfo,
    ) -> Option<Response> {
        match path {
            "/readyz" | "/readyz/" if !self.ready.load(std::sync::atomic::Ordering::Acquire) => {
                // Upstream's shape for a failed check, until the built-in objects exist.
                Some(response::raw(
                    500,
                    "text/plain; charset=utf-8",
                    "[-]poststarthook/rkube-bootstrap failed: not finished\nreadyz check failed\n",
                ))
            }
            "/healthz" | "/livez" | "/readyz" | "/healthz/" | "/livez/" | "/readyz/" => {
                Some(response::raw(200, "text/plain; charset=utf-8", "ok"))
            }
            "/version" | "/version/" => Some(json(200, &version_info())),
            _ if authn::is_public_path(path) => {
                Some(response::raw(200, "text/plain; charset=utf-8", "ok"))
            }
            _ if path == "/openapi/v2" || path.starts_with("/openapi/v3") => {
                if user.is_anonymous() {
                    return Some(error(&ApiError::unauthorized()));
                }
                None
            }
            "/" => {
                if user.is_anonymous() {
                    return Some(error(&ApiError::unauthorized()));
                }
                Some(json(
                    200,
                    &json!({"paths": ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/openapi/v2", "/openapi/v3", "/readyz", "/version"]}),
                ))
            }
            _ => None,
        }
    }

    async fn openapi(&self, path: &str, req: &http::Request<Bytes>) -> Response {
        let docs = self.openapi_documents().await;
        let accept = req
            .headers()
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if path.trim_end_matches('/') == "/openapi/v2"
            && accept.contains("application/com.github.proto-openapi.spec.v2")
        {
            // Answered with the `.v1.0` spelling, as upstream: Go's MIME parser rejects the
            // `@` clients still put in Accept.
            return response::raw(
                200,
                "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
                docs.v2_protobuf().to_vec(),
            );
        }
        let protobuf_only = req
            .headers()
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("protobuf") && !a.contains("json"));
        if protobuf_only {
            return error(&ApiError::new(
                406,
                "NotAcceptable",
                "only application/json is served",
            ));
        }
        let doc = match path.trim_end_matches('/') {
            "/openapi/v2" => docs.v2(),
            "/openapi/v3" => return response::json_bytes(200, docs.v3_index().to_vec()),
            p => match docs.v3(p.trim_start_matches("/openapi/v3/")) {
                Some(doc) => doc,
                None => return not_found_path(path),
            },
        };
        if response::accepts_gzip(req.headers()) {
            let mut r = response::json_bytes(200, doc.gzip().to_vec());
            r.headers_mut().insert(
                http::header::CONTENT_ENCODING,
                http::HeaderValue::from_static("gzip"),
            );
            r
        } else {
            response::json_bytes(200, doc.decompress())
        }
    }
}

/// A change to the OpenAPI documents.
type OpenApiJob = Box<dyn FnOnce(&mut rkube_openapi::OpenApi) + Send>;

/// Builds the OpenAPI documents on a thread of their own (it takes a noticeable fraction of a
/// second, which start-up should not wait for), then applies changes as they come, publishing
/// after each batch. Requests needing the documents wait for the first build.
fn spawn_openapi_builder(
    srv: std::sync::Weak<ApiServer>,
    jobs: std::sync::mpsc::Receiver<OpenApiJob>,
) {
    std::thread::Builder::new()
        .name("openapi".into())
        .spawn(move || {
            let mut docs = rkube_openapi::OpenApi::new(&Registry::builtin());
            // Jobs queued during the first build are applied before the first publication.
            // The documents are published by move and copied back only when a change comes,
            // so one copy of them is resident between changes.
            loop {
                while let Ok(job) = jobs.try_recv() {
                    job(&mut docs);
                }
                let Some(s) = srv.upgrade() else { return };
                let published = s.set_openapi(docs);
                drop(s);
                match jobs.recv() {
                    Ok(job) => {
                        docs = (*published).clone();
                        job(&mut docs);
                    }
                    Err(_) => return,
                }
            }
        })
        .expect("spawn openapi thread");
}

/// `/version`.
pub fn version_info() -> serde_json::Value {
    let minor = KUBERNETES_VERSION.split('.').nth(1).unwrap_or("35");
    json!({
        "major": "1",
        "minor": minor,
        "emulationMajor": "1",
        "emulationMinor": minor,
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": (minor.parse::<u32>().unwrap_or(35) - 1).to_string(),
        "gitVersion": format!("{KUBERNETES_VERSION}+rkube"),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "2026-11-01T00:00:00Z",
        "goVersion": "rust",
        "compiler": "rustc",
        "platform": format!("linux/{}", if cfg!(target_arch = "aarch64") { "arm64" } else { "amd64" }),
    })
}

fn not_found_path(_path: &str) -> Response {
    error(&ApiError::new(
        404,
        "NotFound",
        "the server could not find the requested resource",
    ))
}
