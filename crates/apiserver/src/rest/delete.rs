//! DELETE and deletecollection: preconditions, propagation policy finalizers, graceful pod
//! deletion, namespaces entering `Terminating`, and immediate deletion when nothing is pending.

use rkube_core::meta;
use rkube_core::status::ApiError;
use rkube_store::Error as StoreError;
use serde_json::{Value, json};

use super::filter::Filter;
use super::read::render_one;
use super::{Ctx, body, now_rfc3339};
use crate::response::{self, Response};
use crate::strategy;
use crate::{codec, conversion};

/// Outcome of deleting one object.
pub(crate) struct Deleted {
    /// The object as last stored (or as it would be, on dry run).
    pub obj: Value,
    /// Whether it is gone (200) or only marked for deletion (202).
    pub gone: bool,
}

/// `DELETE …/<name>`.
pub async fn delete(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let opts = body::delete_options(ctx)?;
    let d = delete_named(ctx, ctx.name(), &opts).await?;
    let mut r = render_one(ctx, &d.obj);
    if !d.gone {
        *r.status_mut() = http::StatusCode::ACCEPTED;
    }
    Ok(r)
}

pub(crate) async fn delete_named(
    ctx: &Ctx<'_>,
    name: &str,
    opts: &Value,
) -> Result<Deleted, ApiError> {
    let key = ctx.rt.key(ctx.namespace(), name);
    for _ in 0..8 {
        let (obj, rev) = match ctx.srv.store.get(&key).await.map_err(ApiError::internal)? {
            Some(kv) => (
                conversion::to_view(&ctx.rt, codec::decode(&kv.value, kv.mod_revision)),
                kv.mod_revision,
            ),
            None => return Err(ApiError::not_found(&ctx.rt.group, &ctx.rt.plural, name)),
        };
        check_preconditions(ctx, name, &obj, opts)?;
        match delete_one(ctx, &key, obj, rev, opts).await {
            Err(StoreError::Conflict { .. }) => continue,
            Err(StoreError::NotFound(_)) => {
                return Err(ApiError::not_found(&ctx.rt.group, &ctx.rt.plural, name));
            }
            Err(e) => return Err(ApiError::internal(e)),
            Ok(d) => return Ok(d),
        }
    }
    Err(ApiError::stale(&ctx.rt.group, &ctx.rt.plural, name))
}

fn check_preconditions(
    ctx: &Ctx<'_>,
    name: &str,
    obj: &Value,
    opts: &Value,
) -> Result<(), ApiError> {
    let fail = |what: &str, want: &str, have: &str| {
        ApiError::conflict(
            &ctx.rt.group,
            &ctx.rt.plural,
            name,
            &format!(
                "Precondition failed: {what} in precondition: {want}, {what} in object meta: {have}"
            ),
        )
    };
    if let Some(uid) = opts.pointer("/preconditions/uid").and_then(Value::as_str)
        && uid != meta::uid(obj)
    {
        return Err(fail("UID", uid, meta::uid(obj)));
    }
    if let Some(rv) = opts
        .pointer("/preconditions/resourceVersion")
        .and_then(Value::as_str)
        && rv != meta::resource_version(obj)
    {
        return Err(fail("ResourceVersion", rv, meta::resource_version(obj)));
    }
    Ok(())
}

async fn delete_one(
    ctx: &Ctx<'_>,
    key: &str,
    mut obj: Value,
    rev: i64,
    opts: &Value,
) -> Result<Deleted, StoreError> {
    let dry_run = ctx.dry_run().unwrap_or(false);
    if meta::is_terminating(&obj) {
        // Already being deleted: only a zero grace period (the kubelet confirming that the
        // pod's containers are gone, or `--force`) finishes the job, unless finalizers wait.
        let now_please = opts.get("gracePeriodSeconds").and_then(Value::as_i64) == Some(0);
        if !now_please || !meta::finalizers(&obj).is_empty() {
            return Ok(Deleted { obj, gone: false });
        }
        return remove(ctx, key, obj, rev, dry_run).await;
    }
    let policy = opts
        .get("propagationPolicy")
        .and_then(Value::as_str)
        .or_else(|| {
            opts.get("orphanDependents")
                .and_then(Value::as_bool)
                .map(|o| if o { "Orphan" } else { "Background" })
        })
        .unwrap_or("Background");
    let mut finalizers = meta::finalizers(&obj);
    let extra = match policy {
        "Orphan" => Some("orphan"),
        "Foreground" => Some("foregroundDeletion"),
        _ => None,
    };
    if let Some(f) = extra
        && !finalizers.iter().any(|x| x == f)
    {
        finalizers.push(f.to_string());
    }
    let is_namespace = ctx.rt.group.is_empty() && ctx.rt.kind == "Namespace";
    let grace = pod_grace_period(ctx, &obj, opts);
    let now = now_rfc3339();
    if is_namespace || grace > 0 || !finalizers.is_empty() {
        // Marked for deletion: a controller (namespace, garbage collector) or the kubelet
        // finishes the job.
        let deletion_time = if grace > 0 {
            (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(grace))
                .strftime("%Y-%m-%dT%H:%M:%SZ")
                .to_string()
        } else {
            now
        };
        let m = meta::metadata_mut(&mut obj);
        m.insert("deletionTimestamp".into(), json!(deletion_time));
        m.insert("deletionGracePeriodSeconds".into(), json!(grace));
        if !finalizers.is_empty() {
            m.insert("finalizers".into(), json!(finalizers));
        }
        if is_namespace {
            obj["status"] = json!({"phase": "Terminating"});
        }
        if dry_run {
            return Ok(Deleted { obj, gone: false });
        }
        let bytes = conversion::encode(&ctx.rt, &mut obj);
        let new_rev = ctx.srv.store.update(key, bytes, Some(rev)).await?;
        return Ok(Deleted {
            obj: codec::stored(obj, new_rev),
            gone: false,
        });
    }
    remove(ctx, key, obj, rev, dry_run).await
}

/// Removes the object from the store now, giving back what it held.
async fn remove(
    ctx: &Ctx<'_>,
    key: &str,
    obj: Value,
    rev: i64,
    dry_run: bool,
) -> Result<Deleted, StoreError> {
    if !dry_run {
        ctx.srv.store.delete(key, Some(rev)).await?;
        let strat = strategy::for_resource(&ctx.rt);
        strat.release(&ctx.srv.allocators, &obj);
        strat.stored(ctx.srv, Some(&obj), None, Some(&obj));
    }
    Ok(Deleted { obj, gone: true })
}

/// The grace period of a pod deletion: pods on a node stop gracefully (the kubelet deletes
/// them when their containers are gone); pods never scheduled go at once.
fn pod_grace_period(ctx: &Ctx<'_>, obj: &Value, opts: &Value) -> i64 {
    if !(ctx.rt.group.is_empty() && ctx.rt.kind == "Pod") {
        return 0;
    }
    let on_node = obj
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    let terminal = matches!(
        obj.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    );
    if !on_node || terminal {
        return 0;
    }
    opts.get("gracePeriodSeconds")
        .and_then(Value::as_i64)
        .or_else(|| {
            obj.pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
        })
        .unwrap_or(30)
        .max(0)
}

/// `DELETE …/<plural>`: deletes every selected object; answers the list of them.
pub async fn delete_collection(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let opts = body::delete_options(ctx)?;
    let filter = Filter::from_query(&ctx.rt, &ctx.query)?;
    let current = ctx
        .srv
        .store
        .current_revision()
        .await
        .map_err(ApiError::internal)?;
    ctx.srv.cache.wait_for(current).await;
    let prefix = ctx.rt.namespace_prefix(ctx.namespace());
    let (entries, rev) = ctx.srv.cache.list(&prefix, None);
    let mut items = Vec::new();
    for e in entries.iter().filter(|e| filter.matches(e)) {
        let name = e.object();
        let name = meta::name(&name).to_string();
        match delete_named(ctx, &name, &opts).await {
            Ok(d) => items.push(d.obj),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(response::negotiated(
        200,
        ctx.accept,
        &json!({
            "kind": ctx.rt.list_kind(),
            "apiVersion": ctx.rt.api_version(),
            "metadata": {"resourceVersion": rev.to_string()},
            "items": items,
        }),
    ))
}
