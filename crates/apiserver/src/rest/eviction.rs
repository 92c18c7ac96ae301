//! The `pods/eviction` subresource: a delete that honours PodDisruptionBudgets, as
//! `kubectl drain` uses it. The disruption controller keeps each budget's
//! `disruptionsAllowed` current; an eviction spends one (recording the pod in
//! `disruptedPods`) before deleting, so two evictions cannot both take the last one.

use rkube_apimachinery::labels::Selector;
use rkube_core::meta;
use rkube_core::status::ApiError;
use rkube_store::Error as StoreError;
use serde_json::{Value, json};

use super::delete::delete_named;
use super::{Ctx, body, load, now_rfc3339};
use crate::codec;
use crate::response::{self, Response};

/// `POST pods/<name>/eviction`.
pub async fn evict(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let mut eviction = body::typed(ctx)?;
    if eviction
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("")
        .is_empty()
    {
        eviction["kind"] = json!("Eviction");
    }
    if eviction.get("kind") != Some(&json!("Eviction")) {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({}) does not match the expected kind (Eviction)",
            eviction["kind"].as_str().unwrap_or("")
        )));
    }
    let opts = eviction.get("deleteOptions").cloned().unwrap_or(json!({}));
    let (pod, _) = load(ctx).await?;
    // Pods that are finished or already going need no budget.
    let phase = pod
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !matches!(phase, "Succeeded" | "Failed") && !meta::is_terminating(&pod) {
        spend_budget(ctx, &pod).await?;
    }
    delete_named(ctx, ctx.name(), &opts).await?;
    Ok(response::json(
        201,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    ))
}

fn too_many_requests(message: &str, cause: Option<String>) -> ApiError {
    let mut e = ApiError::new(429, "TooManyRequests", message);
    if let Some(c) = cause {
        e.details = Some(Box::new(
            json!({"causes": [{"reason": "DisruptionBudget", "message": c}]}),
        ));
    }
    e
}

/// Takes one allowed disruption from the pod's budget, or refuses with 429.
async fn spend_budget(ctx: &Ctx<'_>, pod: &Value) -> Result<(), ApiError> {
    let ns = meta::namespace(pod);
    let prefix = format!("/registry/policy/poddisruptionbudgets/{ns}/");
    let labels: Vec<(String, String)> = meta::labels(pod)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let matching: Vec<(String, Value, i64)> = ctx
        .srv
        .store
        .list(&prefix)
        .await
        .map_err(ApiError::internal)?
        .0
        .into_iter()
        .map(|kv| {
            (
                kv.key.clone(),
                codec::decode(&kv.value, kv.mod_revision),
                kv.mod_revision,
            )
        })
        .filter(|(_, pdb, _)| {
            pdb.pointer("/spec/selector")
                .and_then(|s| Selector::from_label_selector(s).ok())
                .is_some_and(|s| {
                    !s.is_empty()
                        && s.matches(|k| {
                            labels
                                .iter()
                                .find(|(lk, _)| lk == k)
                                .map(|(_, v)| v.as_str())
                        })
                })
        })
        .collect();
    let (key, mut pdb, rev) = match matching.len() {
        0 => return Ok(()),
        1 => matching.into_iter().next().expect("one budget"),
        _ => {
            return Err(ApiError::internal(
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            ));
        }
    };
    let generation = pdb
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let observed = pdb
        .pointer("/status/observedGeneration")
        .and_then(Value::as_i64)
        .unwrap_or(-1);
    if observed < generation {
        return Err(too_many_requests(
            "Cannot evict pod as it would violate the pod's disruption budget.",
            Some("The disruption budget has not been processed yet".into()),
        ));
    }
    let allowed = pdb
        .pointer("/status/disruptionsAllowed")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if allowed <= 0 {
        let desired = pdb
            .pointer("/status/desiredHealthy")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let current = pdb
            .pointer("/status/currentHealthy")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        return Err(too_many_requests(
            "Cannot evict pod as it would violate the pod's disruption budget.",
            Some(format!(
                "The disruption budget {} needs {desired} healthy pods and has {current} currently",
                meta::name(&pdb)
            )),
        ));
    }
    pdb["status"]["disruptionsAllowed"] = json!(allowed - 1);
    pdb["status"]["disruptedPods"][meta::name(pod)] = json!(now_rfc3339());
    let bytes = codec::encode(&mut pdb);
    match ctx.srv.store.update(&key, bytes, Some(rev)).await {
        Ok(_) => Ok(()),
        // Another eviction spent it first: the client retries, as it does upstream.
        Err(StoreError::Conflict { .. }) => Err(too_many_requests(
            "Cannot evict pod as it would violate the pod's disruption budget.",
            None,
        )),
        Err(e) => Err(ApiError::internal(e)),
    }
}
