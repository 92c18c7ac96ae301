//! The `serviceaccounts/<name>/token` subresource (TokenRequest): issues a signed, expiring
//! token for a service account, optionally bound to a pod, as projected service-account
//! token volumes and `kubectl create token` use it.

use rkube_core::status::ApiError;
use serde_json::{Value, json};

use super::{Ctx, body, load};
use crate::response::{self, Response};
use crate::satoken::TokenSubject;

/// Upstream's default lifetime (one hour) and minimum (ten minutes).
const DEFAULT_EXPIRATION: i64 = 3600;
const MIN_EXPIRATION: i64 = 600;

/// `POST serviceaccounts/<name>/token`.
pub async fn create(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let mut request = body::typed(ctx)?;
    let (sa, _) = load(ctx).await?;
    let spec = request.get("spec").cloned().unwrap_or(json!({}));
    let expiration = spec
        .get("expirationSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(DEFAULT_EXPIRATION);
    if expiration < MIN_EXPIRATION {
        return Err(ApiError::invalid(
            "authentication.k8s.io",
            "TokenRequest",
            ctx.name(),
            &[rkube_core::validation::FieldError::invalid(
                "spec.expirationSeconds",
                json!(expiration),
                "may not specify a duration less than 10 minutes",
            )],
        ));
    }
    let audiences: Vec<String> = spec
        .get("audiences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    let pod = match spec.get("boundObjectRef") {
        Some(r) if r["kind"] == "Pod" => Some((
            r["name"].as_str().unwrap_or("").to_string(),
            r["uid"].as_str().unwrap_or("").to_string(),
        )),
        _ => None,
    };
    let issuer = ctx
        .srv
        .authenticator()
        .service_accounts
        .clone()
        .ok_or_else(|| ApiError::internal("no service-account signing key is configured"))?;
    let subject = TokenSubject {
        namespace: ctx.info.namespace.clone().unwrap_or_default(),
        name: ctx.name().to_string(),
        uid: sa
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        audiences: audiences.clone(),
        expiration_seconds: expiration,
        pod,
    };
    let (token, exp) = issuer.issue(&subject).map_err(ApiError::internal)?;
    let expires = jiff::Timestamp::from_second(exp)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    request["kind"] = json!("TokenRequest");
    request["apiVersion"] = json!("authentication.k8s.io/v1");
    request["spec"]["expirationSeconds"] = json!(expiration);
    request["spec"]["audiences"] = json!(if audiences.is_empty() {
        vec![crate::satoken::ISSUER.to_string()]
    } else {
        audiences
    });
    request["status"] = json!({"token": token, "expirationTimestamp": expires});
    if request.get("metadata").is_none_or(|m| !m.is_object()) {
        request["metadata"] = json!({});
    }
    request["metadata"]["name"] = json!(ctx.name());
    request["metadata"]["namespace"] = json!(subject.namespace);
    Ok(response::json(201, &request))
}
