//! Reading request bodies: JSON or YAML objects, their apiVersion/kind checked against the
//! endpoint, unknown fields handled as `fieldValidation` asks, and DeleteOptions.

use rkube_core::status::ApiError;
use serde_json::Value;

use super::Ctx;

/// The media type of the request body, without parameters.
pub fn content_type(ctx: &Ctx<'_>) -> String {
    ctx.req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Parses bytes as JSON, or YAML when `yaml` is set (or the bytes are not JSON-looking).
pub fn parse(bytes: &[u8], yaml: bool) -> Result<Value, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "the body of the request was empty; an object is required",
        ));
    }
    if yaml {
        let text = std::str::from_utf8(bytes)
            .map_err(|e| ApiError::bad_request(format!("error converting YAML to JSON: {e}")))?;
        return serde_saphyr::from_str::<Value>(text)
            .map_err(|e| ApiError::bad_request(format!("error converting YAML to JSON: {e}")));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
    })
}

/// The body of a request carrying a whole object (JSON, YAML or Kubernetes protobuf).
pub fn typed(ctx: &Ctx<'_>) -> Result<Value, ApiError> {
    match content_type(ctx).as_str() {
        "application/json" | "" => parse(ctx.req.body(), false),
        "application/yaml" => parse(ctx.req.body(), true),
        "application/vnd.kubernetes.protobuf" => {
            rkube_apimachinery::protobuf::decode(ctx.req.body())
                .map_err(|e| ApiError::bad_request(format!("error decoding protobuf body: {e}")))
        }
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

/// The object in the body of a create or update, checked against the endpoint.
pub fn object(ctx: &Ctx<'_>) -> Result<Value, ApiError> {
    let mut obj = typed(ctx)?;
    if !obj.is_object() {
        return Err(ApiError::bad_request(format!(
            "the object provided is unrecognized (must be of type {}): couldn't get version/kind; json parse error: expected an object",
            ctx.rt.kind
        )));
    }
    check_type(ctx, &mut obj, &ctx.rt.kind)?;
    Ok(obj)
}

/// Checks `apiVersion`/`kind` of a body against what the endpoint serves (`expected_kind`,
/// which differs from the resource's kind for subresources such as Scale or Binding).
pub fn check_type(ctx: &Ctx<'_>, obj: &mut Value, expected_kind: &str) -> Result<(), ApiError> {
    if !obj.is_object() {
        return Err(ApiError::bad_request(format!(
            "the object provided is unrecognized (must be of type {expected_kind}): couldn't get version/kind; json parse error: expected an object"
        )));
    }
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    if kind.is_empty() {
        // As upstream decodes into the endpoint's type, a body without a kind is that kind.
        obj["kind"] = Value::String(expected_kind.to_string());
        return check_type(ctx, obj, expected_kind);
    }
    if kind != expected_kind {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({expected_kind})"
        )));
    }
    let expected_version = match expected_kind {
        "Scale" => "autoscaling/v1".to_string(),
        "Binding" | "DeleteOptions" => "v1".to_string(),
        _ => ctx.rt.api_version(),
    };
    match obj.get("apiVersion").and_then(Value::as_str) {
        Some(v) if v == expected_version => Ok(()),
        Some("") | None => {
            obj["apiVersion"] = Value::String(expected_version);
            Ok(())
        }
        Some(v) => Err(ApiError::bad_request(format!(
            "the API version in the data ({v}) does not match the expected API version ({expected_version})"
        ))),
    }
}

/// Checks the fields of `obj` against its kind's schema: values of the wrong type are always
/// an error (the object could not be decoded upstream); unknown fields follow
/// `fieldValidation`: an error for `Strict`, else dropped, with warnings for `Warn` (the
/// default, as kubectl's).
pub fn field_validation(ctx: &Ctx<'_>, obj: &mut Value) -> Result<(), ApiError> {
    if let Some(e) = ctx.srv.type_errors(&ctx.rt, obj).first() {
        return Err(ApiError::bad_request(format!(
            "{} in version {:?} cannot be handled as a {}: {e}",
            ctx.rt.kind,
            ctx.rt.api_version(),
            ctx.rt.kind
        )));
    }
    let mode = ctx.query.get("fieldValidation").unwrap_or("Warn");
    if !matches!(mode, "Strict" | "Warn" | "Ignore") {
        return Err(ApiError::bad_request(format!(
            "fieldValidation must be one of \"Ignore\", \"Warn\", or \"Strict\", got {mode:?}"
        )));
    }
    let unknown = ctx.srv.unknown_fields(&ctx.rt, obj);
    if unknown.is_empty() {
        return Ok(());
    }
    if mode != "Strict" {
        ctx.srv.prune_unknown(&ctx.rt, obj);
    }
    if mode == "Ignore" {
        return Ok(());
    }
    if mode == "Strict" {
        let list = unknown
            .iter()
            .map(|f| format!("unknown field {f:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(ApiError::bad_request(format!(
            "{} in version {:?} cannot be handled as a {}: strict decoding error: {list}",
            ctx.rt.kind,
            ctx.rt.api_version(),
            ctx.rt.kind
        )));
    }
    for f in unknown {
        ctx.warn(format!("unknown field {f:?}"));
    }
    Ok(())
}

/// DeleteOptions from the body, with query parameters overriding, as upstream merges them.
pub fn delete_options(ctx: &Ctx<'_>) -> Result<Value, ApiError> {
    let body = ctx.req.body();
    let mut opts = if body.iter().all(u8::is_ascii_whitespace) {
        serde_json::json!({})
    } else {
        typed(ctx)?
    };
    if !opts.is_object() {
        return Err(ApiError::bad_request("DeleteOptions must be an object"));
    }
    if let Some(g) = ctx.query.non_empty("gracePeriodSeconds") {
        let g: i64 = g
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid gracePeriodSeconds {g:?}")))?;
        opts["gracePeriodSeconds"] = g.into();
    }
    if let Some(p) = ctx.query.non_empty("propagationPolicy") {
        opts["propagationPolicy"] = p.into();
    }
    if ctx.query.get("orphanDependents").is_some() {
        opts["orphanDependents"] = ctx.query.flag("orphanDependents").into();
    }
    if let Some(policy) = opts.get("propagationPolicy").and_then(Value::as_str)
        && !matches!(policy, "Orphan" | "Background" | "Foreground")
    {
        return Err(ApiError::invalid(
            "",
            "DeleteOptions",
            "",
            &[rkube_core::validation::FieldError::not_supported(
                "propagationPolicy",
                policy.into(),
                &["Background", "Foreground", "Orphan"],
            )],
        ));
    }
    Ok(opts)
}
