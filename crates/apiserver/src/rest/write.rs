//! Create, update and patch (including server-side apply), plus `pods/binding`.
//!
//! Every write ends in [`create_object`] or [`update_object`], which run the strategy,
//! validation, admission and metadata bookkeeping in upstream's order and then write to the
//! store with compare-and-swap on the revision the change was computed from.

use bytes::Bytes;
use rkube_core::meta;
use rkube_core::status::ApiError;
use rkube_store::Error as StoreError;
use serde_json::{Value, json};

use super::body;
use super::read::render_one;
use super::{Ctx, load, now_rfc3339};
use crate::response::{self, Accept, Response};
use crate::strategy::{self, Allocation};
use crate::{codec, conversion};

/// How many times a write without a client precondition is retried after losing a race.
const CONFLICT_RETRIES: usize = 8;

/// `POST …/<plural>`.
pub async fn create(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let mut obj = body::object(ctx)?;
    body::field_validation(ctx, &mut obj)?;
    let url_ns = ctx.namespace().map(String::from);
    if ctx.rt.namespaced {
        let body_ns = meta::namespace(&obj).to_string();
        match (&url_ns, body_ns.as_str()) {
            (Some(u), b) if !b.is_empty() && b != u => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            (Some(u), _) => meta::set_str(&mut obj, "namespace", u.clone()),
            (None, _) => {}
        }
    } else if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("namespace");
    }
    let created = create_object(ctx, obj, FieldTracking::Track).await?;
    Ok(render_created(ctx, created))
}

/// What a create stored.
pub struct Created {
    /// The object as it reads back.
    pub object: Value,
    /// Its stored bytes and revision, when the request's version shows them as stored (no
    /// conversion between API groups) and it was not a dry run.
    pub stored: Option<(Bytes, i64)>,
}

/// The 201 response to a create. A JSON response is the stored bytes with the
/// resourceVersion spliced in, as reads and watches send it, rather than a second
/// serialisation of the object.
fn render_created(ctx: &Ctx<'_>, created: Created) -> Response {
    let mut r = match (&created.stored, ctx.accept) {
        (Some((bytes, rv)), Accept::Json) => response::json_bytes(201, codec::with_rv(bytes, *rv)),
        _ => render_one(ctx, &created.object),
    };
    *r.status_mut() = http::StatusCode::CREATED;
    r
}

/// Whether a write records its changed fields in managedFields as an `Update`, or keeps the
/// entries it carries (server-side apply computed them already).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum FieldTracking {
    /// Record an Update entry for the request's field manager.
    Track,
    /// Keep `metadata.managedFields` as given.
    Keep,
}

/// Runs the create path for `obj` and stores it; returns the stored object.
pub async fn create_object(
    ctx: &Ctx<'_>,
    mut obj: Value,
    tracking: FieldTracking,
) -> Result<Created, ApiError> {
    let dry_run = ctx.dry_run()?;
    let generate_name = meta::str_at(&obj, "generateName").to_string();
    // Upstream admits before generating the name, so admission errors show the prefix.
    let name_generated = meta::name(&obj).is_empty() && !generate_name.is_empty();
    if name_generated {
        meta::set_str(&mut obj, "name", generated_name(&generate_name));
    }
    if !meta::resource_version(&obj).is_empty() {
        return Err(ApiError::bad_request(
            "resourceVersion should not be set on objects to be created",
        ));
    }
    fill_system_fields(&mut obj);
    let strat = strategy::for_resource(&ctx.rt);
    strat.prepare_for_create(&mut obj);
    if ctx.rt.subresources.iter().any(|s| s == "status") || obj.get("spec").is_some() {
        meta::metadata_mut(&mut obj).insert("generation".into(), json!(1));
    }
    let mut errs = strategy::validate_object_meta(&ctx.rt, &obj, strat.name_is_label());
    errs.extend(required_fields(ctx, &obj));
    errs.extend(strat.validate(&obj));
    if !errs.is_empty() {
        return Err(ApiError::invalid(
            &ctx.rt.group,
            &ctx.rt.kind,
            meta::name(&obj),
            &errs,
        ));
    }
    admit_namespace(ctx, &obj).await?;
    let shown_name = if name_generated {
        generate_name.clone()
    } else {
        meta::name(&obj).to_string()
    };
    strat.admit(ctx.srv, &mut obj, None, &shown_name).await?;
    if tracking == FieldTracking::Track {
        ctx.srv.track_managed_fields(
            &ctx.rt,
            None,
            &mut obj,
            &ctx.field_manager(),
            &ctx.info.subresource,
        );
    }
    let name = meta::name(&obj).to_string();
    let key = ctx.rt.key(ctx.namespace(), &name);
    if strat.allocates()
        && ctx
            .srv
            .store
            .get(&key)
            .await
            .map_err(ApiError::internal)?
            .is_some()
    {
        // Checked before allocating, so that a duplicate is AlreadyExists, not a conflict
        // with the addresses the existing object holds.
        return Err(ApiError::already_exists(
            &ctx.rt.group,
            &ctx.rt.plural,
            &name,
        ));
    }
    let allocation = strat.allocate(&ctx.srv.allocators, &mut obj, None)?;
    if dry_run {
        allocation.release(&ctx.srv.allocators);
        return Ok(Created {
            object: obj,
            stored: None,
        });
    }
    let bytes = conversion::encode(&ctx.rt, &mut obj);
    match ctx.srv.store.create(&key, bytes.clone()).await {
        Ok(rev) => {
            let stored = codec::stored(obj, rev);
            strat.stored(ctx.srv, None, Some(&stored), None);
            Ok(Created {
                object: stored,
                stored: (!conversion::converts(&ctx.rt)).then_some((bytes, rev)),
            })
        }
        Err(e) => {
            allocation.release(&ctx.srv.allocators);
            Err(match e {
                StoreError::AlreadyExists(_) => {
                    ApiError::already_exists(&ctx.rt.group, &ctx.rt.plural, &name)
                }
                other => ApiError::internal(other),
            })
        }
    }
}

/// Fields the resource's schema requires that `obj` lacks. A view of another group's objects
/// (`events.k8s.io` Events) leaves this to its strategy: upstream enforces the schema's
/// `required` through typed decoding only, and its Event validation says which fields matter
/// (e.g. `eventTime` on create, not on update).
fn required_fields(ctx: &Ctx<'_>, obj: &Value) -> Vec<rkube_core::validation::FieldError> {
    if conversion::converts(&ctx.rt) {
        return Vec::new();
    }
    ctx.srv.missing_required(&ctx.rt, obj)
}

/// `metadata.generateName` plus five random characters from upstream's alphabet.
pub(crate) fn generated_name(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let prefix = if prefix.len() > 58 {
        &prefix[..58]
    } else {
        prefix
    };
    let suffix: String = (0..5)
        .map(|_| ALPHABET[rand::random::<u32>() as usize % ALPHABET.len()] as char)
        .collect();
    format!("{prefix}{suffix}")
}

/// uid and creationTimestamp set by the server; client-set system fields cleared.
fn fill_system_fields(obj: &mut Value) {
    let m = meta::metadata_mut(obj);
    m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    m.insert("creationTimestamp".into(), json!(now_rfc3339()));
    for k in [
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
        "generation",
    ] {
        m.remove(k);
    }
}

/// The NamespaceLifecycle admission check: the namespace must exist and not be terminating.
async fn admit_namespace(ctx: &Ctx<'_>, obj: &Value) -> Result<(), ApiError> {
    if !ctx.rt.namespaced {
        return Ok(());
    }
    let ns = meta::namespace(obj);
    let key = format!("/registry/namespaces/{ns}");
    match ctx.srv.store.get(&key).await.map_err(ApiError::internal)? {
        None => Err(ApiError::not_found("", "namespaces", ns)),
        Some(kv) => {
            if namespace_terminating(&kv.value) {
                Err(ApiError::forbidden(
                    &ctx.rt.group,
                    &ctx.rt.plural,
                    meta::name(obj),
                    &format!(
                        "unable to create new content in namespace {ns} because it is being terminated"
                    ),
                ))
            } else {
                Ok(())
            }
        }
    }
}

/// Whether the stored namespace has a deletionTimestamp. Read without building the whole
/// object: every namespaced create asks.
fn namespace_terminating(stored: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Namespace {
        #[serde(default)]
        metadata: Metadata,
    }
    #[derive(serde::Deserialize, Default)]
    struct Metadata {
        #[serde(default, rename = "deletionTimestamp")]
        deletion_timestamp: Option<serde::de::IgnoredAny>,
    }
    serde_json::from_slice::<Namespace>(stored)
        .is_ok_and(|ns| ns.metadata.deletion_timestamp.is_some())
}

/// `PUT …/<name>[/status|/finalize]`.
pub async fn update(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let mut obj = body::object(ctx)?;
    body::field_validation(ctx, &mut obj)?;
    let body_name = meta::name(&obj).to_string();
    if !body_name.is_empty() && body_name != ctx.name() {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({})",
            ctx.name()
        )));
    }
    if let Some(ns) = ctx.namespace() {
        let body_ns = meta::namespace(&obj);
        if !body_ns.is_empty() && body_ns != ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        meta::set_str(&mut obj, "namespace", ns);
    }
    meta::set_str(&mut obj, "name", ctx.name());
    let precondition = meta::resource_version(&obj).to_string();
    for _ in 0..CONFLICT_RETRIES {
        let (old, rev) = load(ctx).await?;
        match update_object(
            ctx,
            &old,
            rev,
            obj.clone(),
            &precondition,
            FieldTracking::Track,
        )
        .await
        {
            Err(Retry::Conflict) if precondition.is_empty() => continue,
            Err(Retry::Conflict) => {
                return Err(ApiError::stale(&ctx.rt.group, &ctx.rt.plural, ctx.name()));
            }
            Err(Retry::Fail(e)) => return Err(e),
            Ok(stored) => return Ok(render_one(ctx, &stored)),
        }
    }
    Err(ApiError::stale(&ctx.rt.group, &ctx.rt.plural, ctx.name()))
}

/// Why an update did not happen.
pub enum Retry {
    /// The object changed underneath; recompute from the new version.
    Conflict,
    /// A final error.
    Fail(ApiError),
}

impl From<ApiError> for Retry {
    fn from(e: ApiError) -> Self {
        Retry::Fail(e)
    }
}

/// Turns `new` (a full object computed from `old` at revision `rev`) into the stored object:
/// subresource rules, strategy, validation, generation, managed fields, then a
/// compare-and-swap write. An unchanged object is not written.
pub async fn update_object(
    ctx: &Ctx<'_>,
    old: &Value,
    rev: i64,
    mut new: Value,
    precondition: &str,
    tracking: FieldTracking,
) -> Result<Value, Retry> {
    if !precondition.is_empty() && precondition != rev.to_string() {
        return Err(Retry::Conflict);
    }
    let strat = strategy::for_resource(&ctx.rt);
    match ctx.info.subresource.as_str() {
        // Status writes change only status; main-resource writes never change status.
        "status" => {
            let status = new.get("status").cloned().unwrap_or(Value::Null);
            new = old.clone();
            new["status"] = status;
        }
        "finalize" => {
            let finalizers = new
                .pointer("/spec/finalizers")
                .cloned()
                .unwrap_or(json!([]));
            new = old.clone();
            new["spec"]["finalizers"] = finalizers;
        }
        _ => {
            strat.prepare_for_update(&mut new, old);
            if ctx.rt.subresources.iter().any(|s| s == "status") {
                match old.get("status") {
                    Some(s) => new["status"] = s.clone(),
                    None => {
                        if let Some(m) = new.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
            }
        }
    }
    keep_system_fields(&mut new, old);
    let spec_changed = new.get("spec") != old.get("spec");
    if spec_changed && old.pointer("/metadata/generation").is_some() {
        let g = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        meta::metadata_mut(&mut new).insert("generation".into(), json!(g + 1));
    }
    if meta::is_terminating(old) {
        // Finalizers may only be removed from a terminating object, not added.
        let old_f = meta::finalizers(old);
        if let Some(f) = meta::finalizers(&new).iter().find(|f| !old_f.contains(f)) {
            return Err(Retry::Fail(ApiError::forbidden(
                &ctx.rt.group,
                &ctx.rt.plural,
                ctx.name(),
                &format!(
                    "no new finalizers can be added if the object is being deleted, found new finalizers [{f:?}]"
                ),
            )));
        }
    }
    let mut errs = strategy::validate_object_meta(&ctx.rt, &new, strat.name_is_label());
    errs.extend(required_fields(ctx, &new));
    errs.extend(strat.validate_update(&new, old));
    if !errs.is_empty() {
        return Err(Retry::Fail(ApiError::invalid(
            &ctx.rt.group,
            &ctx.rt.kind,
            ctx.name(),
            &errs,
        )));
    }
    if ctx.info.subresource.is_empty() {
        strat
            .admit(ctx.srv, &mut new, Some(old), ctx.name())
            .await?;
    }
    let dry_run = ctx.dry_run()?;
    if unchanged(&new, old) {
        return Ok(old.clone());
    }
    if tracking == FieldTracking::Track {
        ctx.srv.track_managed_fields(
            &ctx.rt,
            Some(old),
            &mut new,
            &ctx.field_manager(),
            &ctx.info.subresource,
        );
    }
    let allocation: Allocation = strat.allocate(&ctx.srv.allocators, &mut new, Some(old))?;
    if dry_run {
        allocation.release(&ctx.srv.allocators);
        return Ok(new);
    }
    let key = ctx.key();
    // A terminating object whose last finalizer is gone is deleted, not updated; one still in
    // its grace period (a pod whose kubelet reports its final status) is only updated.
    let grace_over = old
        .pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(0)
        == 0;
    if meta::is_terminating(&new)
        && grace_over
        && meta::finalizers(&new).is_empty()
        && !namespace_pending(ctx, &new)
    {
        return match ctx.srv.store.delete(&key, Some(rev)).await {
            Ok(_) => {
                strat.release(&ctx.srv.allocators, &new);
                strat.stored(ctx.srv, Some(old), None, Some(&new));
                Ok(new)
            }
            Err(StoreError::Conflict { .. }) => Err(Retry::Conflict),
            Err(StoreError::NotFound(_)) => Err(Retry::Fail(ctx.not_found())),
            Err(e) => Err(Retry::Fail(ApiError::internal(e))),
        };
    }
    let bytes = conversion::encode(&ctx.rt, &mut new);
    match ctx.srv.store.update(&key, bytes, Some(rev)).await {
        Ok(new_rev) => {
            release_dropped(ctx, old, &new);
            let stored = codec::stored(new, new_rev);
            strat.stored(ctx.srv, Some(old), Some(&stored), None);
            Ok(stored)
        }
        Err(e) => {
            allocation.release(&ctx.srv.allocators);
            match e {
                StoreError::Conflict { .. } => Err(Retry::Conflict),
                StoreError::NotFound(_) => Err(Retry::Fail(ctx.not_found())),
                other => Err(Retry::Fail(ApiError::internal(other))),
            }
        }
    }
}

/// Namespaces also wait for their `spec.finalizers` (the namespace controller's `kubernetes`).
fn namespace_pending(ctx: &Ctx<'_>, obj: &Value) -> bool {
    ctx.rt.group.is_empty()
        && ctx.rt.kind == "Namespace"
        && obj
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty())
}

/// NodePorts a Service update gave up go back to the pool.
fn release_dropped(ctx: &Ctx<'_>, old: &Value, new: &Value) {
    if ctx.rt.group.is_empty() && ctx.rt.kind == "Service" {
        let kept = crate::alloc::node_ports(new);
        for p in crate::alloc::node_ports(old) {
            if !kept.contains(&p) {
                ctx.srv.allocators.release_port(p);
            }
        }
    }
}

/// Fields clients cannot change on update.
fn keep_system_fields(new: &mut Value, old: &Value) {
    let m = meta::metadata_mut(new);
    for k in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        match old.pointer(&format!("/metadata/{k}")) {
            Some(v) => {
                m.insert(k.into(), v.clone());
            }
            None => {
                m.remove(k);
            }
        }
    }
    m.remove("resourceVersion");
    m.remove("selfLink");
}

/// Whether an update would store the same object (ignoring resourceVersion).
fn unchanged(new: &Value, old: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
            m.remove("managedFields");
        }
        v
    };
    strip(new) == strip(old)
}

/// `PATCH …/<name>[/status]` with JSON, merge, strategic merge or apply patches.
pub async fn patch(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let ct = body::content_type(ctx);
    let is_apply = ct == "application/apply-patch+yaml" || ct == "application/apply-patch+cbor";
    if !matches!(
        ct.as_str(),
        "application/json-patch+json"
            | "application/merge-patch+json"
            | "application/strategic-merge-patch+json"
    ) && !is_apply
    {
        return Err(ApiError::unsupported_media_type(&ct));
    }
    if ct == "application/strategic-merge-patch+json" && ctx.rt.definition.is_empty() {
        return Err(ApiError::unsupported_media_type(
            "strategic merge patch is not supported for custom resources: use merge patch or apply",
        ));
    }
    let patch = body::parse(ctx.req.body(), is_apply)?;
    if is_apply && ctx.query.non_empty("fieldManager").is_none() {
        return Err(ApiError::bad_request(
            "PATCH, application/apply-patch+yaml requires fieldManager parameter",
        ));
    }
    for _ in 0..CONFLICT_RETRIES {
        let loaded = match load(ctx).await {
            Ok(l) => Some(l),
            Err(e) if e.code == 404 && is_apply && ctx.info.subresource.is_empty() => None,
            Err(e) => return Err(e),
        };
        let Some((old, rev)) = loaded else {
            // Apply creates what does not exist yet.
            let mut obj = patch.clone();
            body::check_type(ctx, &mut obj, &ctx.rt.kind)?;
            body::field_validation(ctx, &mut obj)?;
            if let Some(ns) = ctx.namespace() {
                meta::set_str(&mut obj, "namespace", ns);
            }
            meta::set_str(&mut obj, "name", ctx.name());
            let obj = ctx.srv.apply_to_new(&ctx.rt, obj, &ctx.field_manager())?;
            let created = create_object(ctx, obj, FieldTracking::Keep).await?;
            return Ok(render_created(ctx, created));
        };
        let tracking = if is_apply {
            FieldTracking::Keep
        } else {
            FieldTracking::Track
        };
        let mut new = if is_apply {
            let mut applied = patch.clone();
            body::check_type(ctx, &mut applied, &ctx.rt.kind)?;
            body::field_validation(ctx, &mut applied)?;
            ctx.srv.apply(
                &ctx.rt,
                &old,
                &applied,
                &ctx.field_manager(),
                ctx.query.flag("force"),
            )?
        } else {
            ctx.srv.patch(&ctx.rt, &ct, &old, &patch)?
        };
        // A patch must leave an object of the same kind with well-typed fields.
        body::check_type(ctx, &mut new, &ctx.rt.kind)?;
        if !is_apply {
            body::field_validation(ctx, &mut new)?;
        }
        let precondition = patch
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if meta::name(&new) != ctx.name() {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({})",
                meta::name(&new),
                ctx.name()
            )));
        }
        match update_object(ctx, &old, rev, new, &precondition, tracking).await {
            Ok(stored) => return Ok(render_one(ctx, &stored)),
            Err(Retry::Conflict) if precondition.is_empty() => continue,
            Err(Retry::Conflict) => {
                return Err(ApiError::stale(&ctx.rt.group, &ctx.rt.plural, ctx.name()));
            }
            Err(Retry::Fail(e)) => return Err(e),
        }
    }
    Err(ApiError::stale(&ctx.rt.group, &ctx.rt.plural, ctx.name()))
}

/// `POST pods/<name>/binding`: assigns a pod to a node, once.
pub async fn bind(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let mut binding = body::typed(ctx)?;
    body::check_type(ctx, &mut binding, "Binding")?;
    let node = binding
        .pointer("/target/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if node.is_empty() {
        return Err(ApiError::invalid(
            "",
            "Binding",
            ctx.name(),
            &[rkube_core::validation::FieldError::required(
                "target.name",
                "",
            )],
        ));
    }
    for _ in 0..CONFLICT_RETRIES {
        let (mut pod, rev) = load(ctx).await?;
        if meta::is_terminating(&pod) {
            return Err(ApiError::conflict(
                "",
                "pods",
                ctx.name(),
                "pod is being deleted, cannot be assigned to a host",
            ));
        }
        if let Some(current) = pod.pointer("/spec/nodeName").and_then(Value::as_str)
            && !current.is_empty()
        {
            return Err(ApiError::conflict(
                "",
                "pods",
                ctx.name(),
                &format!("pod {} is already assigned to node {current:?}", ctx.name()),
            ));
        }
        pod["spec"]["nodeName"] = json!(node);
        let conditions = pod["status"]
            .as_object_mut()
            .map(|s| s.entry("conditions").or_insert(json!([])));
        if let Some(Value::Array(list)) = conditions {
            list.retain(|c| c.get("type") != Some(&json!("PodScheduled")));
            list.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now_rfc3339()}));
        }
        let bytes = codec::encode(&mut pod);
        match ctx.srv.store.update(&ctx.key(), bytes, Some(rev)).await {
            Ok(_) => {
                return Ok(response::json(
                    201,
                    &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
                ));
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(ApiError::internal(e)),
        }
    }
    Err(ApiError::stale("", "pods", ctx.name()))
}
