//! The generic REST handler: one implementation of get, list, watch, create, update, patch and
//! delete for every kind, driven by the registry row of the resource and its
//! [`crate::strategy`]. Subresources (`status`, `scale`, `binding`, `finalize`) reuse the same
//! paths with a different view of the object.

mod body;
pub(crate) mod connect;
mod delete;
mod eviction;
mod filter;
mod read;
mod scale;
mod token;
pub(crate) mod write;

use std::sync::Arc;

use bytes::Bytes;
use rkube_core::registry::ResourceType;
use rkube_core::status::ApiError;
use serde_json::Value;

use crate::ApiServer;
use crate::request::{Query, RequestInfo};
use crate::response::{Accept, Response, error};

/// Everything a verb handler needs about the request.
pub(crate) struct Ctx<'a> {
    pub srv: &'a Arc<ApiServer>,
    pub info: RequestInfo,
    pub rt: ResourceType,
    pub query: Query,
    pub req: http::Request<Bytes>,
    pub accept: Accept,
    /// Warnings for the client (`Warning` headers).
    pub warnings: std::sync::Mutex<Vec<String>>,
}

impl Ctx<'_> {
    /// Adds a warning for the client.
    pub fn warn(&self, msg: String) {
        self.warnings.lock().expect("warnings lock").push(msg);
    }

    /// The namespace of the request (None for cluster-scoped resources).
    pub fn namespace(&self) -> Option<&str> {
        if self.rt.namespaced {
            self.info.namespace.as_deref()
        } else {
            None
        }
    }

    /// The object name from the path.
    pub fn name(&self) -> &str {
        self.info.name.as_deref().unwrap_or("")
    }

    /// Store key of the named object.
    pub fn key(&self) -> String {
        self.rt.key(self.namespace(), self.name())
    }

    /// Whether `dryRun=All` was given.
    pub fn dry_run(&self) -> Result<bool, ApiError> {
        let mut dry = false;
        for v in self.query.all("dryRun") {
            match v.as_str() {
                "All" => dry = true,
                "" => {}
                other => {
                    return Err(ApiError::bad_request(format!(
                        "Invalid dryRun value: {other:?}: supported values: \"All\""
                    )));
                }
            }
        }
        Ok(dry)
    }

    /// `NotFound` for the named object.
    pub fn not_found(&self) -> ApiError {
        ApiError::not_found(&self.rt.group, &self.rt.plural, self.name())
    }

    /// The field manager of a write: `fieldManager`, else derived from the User-Agent as
    /// upstream does (the part before the first `/`).
    pub fn field_manager(&self) -> String {
        if let Some(m) = self.query.non_empty("fieldManager") {
            return m.to_string();
        }
        self.req
            .headers()
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .and_then(|ua| ua.split('/').next())
            .filter(|s| !s.is_empty())
            .unwrap_or("unknown")
            .to_string()
    }
}

/// Handles a resource request.
pub async fn handle(
    srv: &Arc<ApiServer>,
    info: RequestInfo,
    query: Query,
    req: http::Request<Bytes>,
) -> Response {
    // Only the one row is cloned: cloning the registry on every request showed in profiles.
    let found = srv
        .registry
        .read()
        .expect("registry lock")
        .lookup(&info.group, &info.version, &info.resource)
        .cloned();
    let rt = match found {
        Some(rt) => rt,
        None => {
            return error(&ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ));
        }
    };
    if rt.namespaced && info.namespace.is_none() && info.name.is_some() {
        return error(&ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ));
    }
    if !info.subresource.is_empty() && !crate::discovery::serves_subresource(&rt, &info.subresource)
    {
        return error(&ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ));
    }
    let accept = Accept::from_headers(req.headers());
    let ctx = Ctx {
        srv,
        info,
        rt,
        query,
        req,
        accept,
        warnings: Default::default(),
    };
    let result = match (ctx.info.verb.as_str(), ctx.info.subresource.as_str()) {
        ("get", "scale") => scale::get(&ctx).await,
        ("update" | "patch", "scale") => scale::update(&ctx).await,
        ("get", "log") => connect::log(&ctx).await,
        ("get" | "create", "exec" | "attach" | "portforward") => connect::connect(&ctx).await,
        ("get", _) => read::get(&ctx).await,
        ("list", "") => read::list(&ctx).await,
        ("watch", "") => read::watch(&ctx).await,
        ("create", "binding") => write::bind(&ctx).await,
        ("create", "eviction") => eviction::evict(&ctx).await,
        ("create", "token") => token::create(&ctx).await,
        ("create", "") => write::create(&ctx).await,
        ("update", _) => write::update(&ctx).await,
        ("patch", _) => write::patch(&ctx).await,
        ("delete", "") => delete::delete(&ctx).await,
        ("deletecollection", "") => delete::delete_collection(&ctx).await,
        (verb, _) => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({verb})"
        ))),
    };
    let mut resp = result.unwrap_or_else(|e| error(&e));
    for w in ctx.warnings.lock().expect("warnings lock").iter() {
        // Upstream's form: `299 - "<text>"`.
        if let Ok(v) = http::HeaderValue::from_str(&format!("299 - {w:?}")) {
            resp.headers_mut().append(http::header::WARNING, v);
        }
    }
    resp
}

/// Loads the named object (in the request's version) and its revision, or NotFound.
pub(crate) async fn load(ctx: &Ctx<'_>) -> Result<(Value, i64), ApiError> {
    match ctx.srv.store.get(&ctx.key()).await {
        Ok(Some(kv)) => Ok((
            crate::conversion::to_view(&ctx.rt, crate::codec::decode(&kv.value, kv.mod_revision)),
            kv.mod_revision,
        )),
        Ok(None) => Err(ctx.not_found()),
        Err(e) => Err(ApiError::internal(e)),
    }
}

/// The current time as upstream writes timestamps (RFC 3339, seconds).
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or_else(|_| jiff::Timestamp::now())
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}
