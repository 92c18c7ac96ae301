//! The `scale` subresource: an `autoscaling/v1` Scale view of a workload's replicas, read and
//! written as `kubectl scale` does.

use rkube_core::meta;
use rkube_core::status::ApiError;
use serde_json::{Value, json};

use super::write::{FieldTracking, Retry, update_object};
use super::{Ctx, body, load};
use crate::response::{self, Response};

/// The Scale of a workload object.
pub fn scale_of(obj: &Value) -> Value {
    let selector = obj
        .pointer("/spec/selector")
        .map(|s| {
            if s.get("matchLabels").is_some() || s.get("matchExpressions").is_some() {
                rkube_apimachinery::labels::Selector::from_label_selector(s)
                    .map(|s| s.to_string())
                    .unwrap_or_default()
            } else {
                // ReplicationControllers have a plain label map.
                let mut pairs: Vec<String> = s
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                    .collect();
                pairs.sort();
                pairs.join(",")
            }
        })
        .unwrap_or_default();
    let m = obj.get("metadata").cloned().unwrap_or(json!({}));
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": m.get("name"),
            "namespace": m.get("namespace"),
            "uid": m.get("uid"),
            "resourceVersion": m.get("resourceVersion"),
            "creationTimestamp": m.get("creationTimestamp"),
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(0))},
        "status": {
            "replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
            "selector": selector,
        },
    })
}

/// `GET …/<name>/scale`.
pub async fn get(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let (obj, _) = load(ctx).await?;
    Ok(response::json(200, &scale_of(&obj)))
}

/// `PUT` or `PATCH …/<name>/scale`.
pub async fn update(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    for _ in 0..8 {
        let (old, rev) = load(ctx).await?;
        let current = scale_of(&old);
        let wanted = if ctx.info.verb == "patch" {
            let ct = body::content_type(ctx);
            let patch = body::parse(ctx.req.body(), false)?;
            match ct.as_str() {
                "application/json-patch+json" => {
                    rkube_apimachinery::patch::json_patch(&current, &patch)
                        .map_err(|e| ApiError::new(422, "Invalid", e.to_string()))?
                }
                "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
                    rkube_apimachinery::patch::merge_patch(&current, &patch)
                }
                other => return Err(ApiError::unsupported_media_type(other)),
            }
        } else {
            let mut s = body::parse(
                ctx.req.body(),
                body::content_type(ctx) == "application/yaml",
            )?;
            body::check_type(ctx, &mut s, "Scale")?;
            s
        };
        let replicas = wanted
            .pointer("/spec/replicas")
            .cloned()
            .unwrap_or(json!(0));
        if replicas.as_i64().is_none_or(|r| r < 0) {
            return Err(ApiError::invalid(
                "autoscaling",
                "Scale",
                ctx.name(),
                &[rkube_core::validation::FieldError::invalid(
                    "spec.replicas",
                    replicas,
                    "must be greater than or equal to 0",
                )],
            ));
        }
        let precondition = meta::resource_version(&wanted).to_string();
        let precondition =
            if ctx.info.verb == "patch" && precondition == meta::resource_version(&old) {
                String::new()
            } else {
                precondition
            };
        let mut new = old.clone();
        new["spec"]["replicas"] = replicas;
        match update_object(ctx, &old, rev, new, &precondition, FieldTracking::Track).await {
            Ok(stored) => return Ok(response::json(200, &scale_of(&stored))),
            Err(Retry::Conflict) if precondition.is_empty() => continue,
            Err(Retry::Conflict) => {
                return Err(ApiError::stale(&ctx.rt.group, &ctx.rt.plural, ctx.name()));
            }
            Err(Retry::Fail(e)) => return Err(e),
        }
    }
    Err(ApiError::stale(&ctx.rt.group, &ctx.rt.plural, ctx.name()))
}
