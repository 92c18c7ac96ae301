//! Shared cell helpers: tolerant field access on untyped objects, ages,
//! label and label-selector formatting, container name/image layout.
//!
//! Every accessor returns the Go zero value (`""`, `0`, empty list) for a
//! missing or mistyped field, so printers never fail on partial objects.

use jiff::Timestamp;
use serde_json::{Map, Value};

use crate::duration::human_duration;

/// The string at JSON pointer `ptr`, or `""`.
pub(crate) fn str_at<'a>(obj: &'a Value, ptr: &str) -> &'a str {
    obj.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

/// The string at `ptr` if present (even when empty).
pub(crate) fn opt_str<'a>(obj: &'a Value, ptr: &str) -> Option<&'a str> {
    obj.pointer(ptr).and_then(Value::as_str)
}

/// The integer at `ptr`, or 0. Floats are truncated as Go's int conversion does.
pub(crate) fn int_at(obj: &Value, ptr: &str) -> i64 {
    opt_int(obj, ptr).unwrap_or(0)
}

/// The integer at `ptr` if present and numeric.
pub(crate) fn opt_int(obj: &Value, ptr: &str) -> Option<i64> {
    let v = obj.pointer(ptr)?;
    v.as_i64().or_else(|| v.as_f64().map(|f| f as i64))
}

/// The boolean at `ptr`, or false.
pub(crate) fn bool_at(obj: &Value, ptr: &str) -> bool {
    obj.pointer(ptr).and_then(Value::as_bool).unwrap_or(false)
}

/// The list at `ptr`, or an empty slice.
pub(crate) fn arr_at<'a>(obj: &'a Value, ptr: &str) -> &'a [Value] {
    obj.pointer(ptr)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The map at `ptr`, if any.
pub(crate) fn map_at<'a>(obj: &'a Value, ptr: &str) -> Option<&'a Map<String, Value>> {
    obj.pointer(ptr).and_then(Value::as_object)
}

/// Number of entries of the map at `ptr` (0 when missing).
pub(crate) fn map_len(obj: &Value, ptr: &str) -> usize {
    map_at(obj, ptr).map_or(0, Map::len)
}

/// Whether the field at `ptr` is present and not null.
pub(crate) fn present(obj: &Value, ptr: &str) -> bool {
    obj.pointer(ptr).is_some_and(|v| !v.is_null())
}

/// `metadata.name` as a cell.
pub(crate) fn name(obj: &Value) -> Value {
    Value::from(str_at(obj, "/metadata/name"))
}

/// Parses an RFC 3339 timestamp at `ptr`. Go's zero time is treated as unset.
pub(crate) fn time_at(obj: &Value, ptr: &str) -> Option<Timestamp> {
    let t: Timestamp = opt_str(obj, ptr)?.parse().ok()?;
    (t.as_second() > -62_135_596_800).then_some(t)
}

/// Upstream's `translateTimestampSince`: a human duration since `ptr`, or `<unknown>`.
pub(crate) fn since(obj: &Value, ptr: &str, now: Timestamp) -> String {
    match time_at(obj, ptr) {
        Some(t) => human_duration(now.duration_since(t)),
        None => "<unknown>".to_string(),
    }
}

/// The Age cell (creation timestamp relative to `now`).
pub(crate) fn age(obj: &Value, now: Timestamp) -> Value {
    Value::from(since(obj, "/metadata/creationTimestamp", now))
}

/// The "Created At" cell: creation timestamp in RFC 3339, UTC, seconds precision.
pub(crate) fn created_at(obj: &Value) -> Value {
    let t = time_at(obj, "/metadata/creationTimestamp")
        .and_then(|t| Timestamp::from_second(t.as_second()).ok());
    Value::from(match t {
        Some(t) => t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        None => "0001-01-01T00:00:00Z".to_string(),
    })
}

/// Renders a JSON scalar the way Go's `%v` would for typical API values.
pub(crate) fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Upstream's `labels.FormatLabels`: sorted `k=v` joined by commas, `<none>` when empty.
pub(crate) fn format_labels(map: Option<&Map<String, Value>>) -> String {
    let mut pairs: Vec<String> = map
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", scalar_text(v)))
        .collect();
    if pairs.is_empty() {
        return "<none>".to_string();
    }
    pairs.sort();
    pairs.join(",")
}

/// Upstream's `LabelSelectorAsSelector(sel).String()`; `Err` for an
/// unknown operator (upstream fails the row; callers print `<error>`).
pub(crate) fn selector_string(sel: Option<&Value>) -> Result<String, ()> {
    let Some(sel) = sel.filter(|s| !s.is_null()) else {
        return Ok(String::new());
    };
    let mut reqs: Vec<(String, String)> = Vec::new();
    if let Some(labels) = sel.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in labels {
            reqs.push((k.clone(), format!("{k}={}", scalar_text(v))));
        }
    }
    for expr in sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = str_at(expr, "/key").to_string();
        let mut values: Vec<String> = arr_at(expr, "/values").iter().map(scalar_text).collect();
        values.sort();
        values.dedup();
        let text = match str_at(expr, "/operator") {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.clone(),
            "DoesNotExist" => format!("!{key}"),
            _ => return Err(()),
        };
        reqs.push((key, text));
    }
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(reqs
        .into_iter()
        .map(|(_, t)| t)
        .collect::<Vec<_>>()
        .join(","))
}

/// A selector cell as upstream's workload printers show it (`""` when empty).
pub(crate) fn selector_cell(obj: &Value, ptr: &str) -> Value {
    Value::from(selector_string(obj.pointer(ptr)).unwrap_or_else(|()| "<error>".to_string()))
}

/// Upstream's `metav1.FormatLabelSelector`: like [`selector_string`] but `<none>` when empty.
pub(crate) fn format_label_selector(sel: Option<&Value>) -> String {
    match selector_string(sel) {
        Ok(s) if s.is_empty() => "<none>".to_string(),
        Ok(s) => s,
        Err(()) => "<error>".to_string(),
    }
}

/// Upstream's `layoutContainerCells`: container names and images, comma-joined.
pub(crate) fn containers_and_images(obj: &Value, ptr: &str) -> [Value; 2] {
    let containers = arr_at(obj, ptr);
    let names: Vec<&str> = containers.iter().map(|c| str_at(c, "/name")).collect();
    let images: Vec<&str> = containers.iter().map(|c| str_at(c, "/image")).collect();
    [Value::from(names.join(",")), Value::from(images.join(","))]
}

/// The first condition of `conditions` with this type, if any.
pub(crate) fn condition<'a>(conditions: &'a [Value], type_: &str) -> Option<&'a Value> {
    conditions.iter().find(|c| str_at(c, "/type") == type_)
}

/// Whether a condition of this type has status "True".
pub(crate) fn condition_true(conditions: &[Value], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| str_at(c, "/type") == type_ && str_at(c, "/status") == "True")
}

/// An IntOrString rendered as Go's `IntOrString.String()`.
pub(crate) fn int_or_string(v: &Value) -> String {
    match v {
        Value::Number(n) => n.as_i64().map_or_else(|| n.to_string(), |i| i.to_string()),
        other => scalar_text(other),
    }
}

/// Upstream's `listWithMoreString`: "a,b,c + 2 more...", or `empty` for none.
pub(crate) fn list_with_more(list: &[String], total: usize, max: usize, empty: &str) -> String {
    let ret = list.join(",");
    if total > max {
        return format!("{ret} + {} more...", total - max);
    }
    if ret.is_empty() {
        return empty.to_string();
    }
    ret
}

/// Upstream's `GetAccessModesAsString`: RWO, ROX, RWX, RWOP in that order.
pub(crate) fn access_modes(modes: &[Value]) -> String {
    let has = |m: &str| modes.iter().any(|v| v.as_str() == Some(m));
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(m, _)| has(m))
    .map(|(_, s)| *s)
    .collect::<Vec<_>>()
    .join(",")
}

/// Joins host and port as Go's `net.JoinHostPort` does (IPv6 in brackets).
pub(crate) fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A load balancer status (`ingress[].ip`/`hostname`) as a comma list.
pub(crate) fn load_balancer_ingress(obj: &Value, ptr: &str) -> String {
    let mut out = Vec::new();
    for ing in arr_at(obj, ptr) {
        let ip = str_at(ing, "/ip");
        if !ip.is_empty() {
            out.push(ip);
        }
        let host = str_at(ing, "/hostname");
        if !host.is_empty() {
            out.push(host);
        }
    }
    out.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selectors() {
        for (sel, expect) in [
            (json!(null), Ok("")),
            (json!({}), Ok("")),
            (json!({"matchLabels": {"b": "2", "a": "1"}}), Ok("a=1,b=2")),
            (
                json!({"matchLabels": {"app": "web"}, "matchExpressions": [
                    {"key": "tier", "operator": "In", "values": ["b", "a"]},
                    {"key": "env", "operator": "NotIn", "values": ["prod"]},
                    {"key": "x", "operator": "Exists"},
                    {"key": "y", "operator": "DoesNotExist"}]}),
                Ok("app=web,env notin (prod),tier in (a,b),x,!y"),
            ),
            (
                json!({"matchExpressions": [{"key": "k", "operator": "Bogus"}]}),
                Err(()),
            ),
        ] {
            assert_eq!(
                selector_string(Some(&sel)),
                expect.map(str::to_string),
                "{sel}"
            );
        }
        assert_eq!(format_label_selector(Some(&json!({}))), "<none>");
    }

    #[test]
    fn labels() {
        assert_eq!(format_labels(None), "<none>");
        let m = json!({"z": "1", "a": "b"});
        assert_eq!(format_labels(m.as_object()), "a=b,z=1");
    }

    #[test]
    fn created_at_formats() {
        let o = json!({"metadata": {"creationTimestamp": "2024-03-01T10:20:30.123Z"}});
        assert_eq!(created_at(&o), json!("2024-03-01T10:20:30Z"));
        assert_eq!(created_at(&json!({})), json!("0001-01-01T00:00:00Z"));
    }

    #[test]
    fn ages() {
        let now: Timestamp = "2024-01-02T00:00:00Z".parse().unwrap();
        let o = json!({"metadata": {"creationTimestamp": "2024-01-01T23:56:40Z"}});
        assert_eq!(age(&o, now), json!("3m20s"));
        assert_eq!(age(&json!({}), now), json!("<unknown>"));
        let bad = json!({"metadata": {"creationTimestamp": 12}});
        assert_eq!(age(&bad, now), json!("<unknown>"));
    }

    #[test]
    fn misc() {
        assert_eq!(join_host_port("fd00::1", 80), "[fd00::1]:80");
        assert_eq!(
            access_modes(&[json!("ReadWriteMany"), json!("ReadWriteOnce")]),
            "RWO,RWX"
        );
        assert_eq!(int_or_string(&json!("50%")), "50%");
        assert_eq!(int_or_string(&json!(2)), "2");
        assert_eq!(list_with_more(&[], 0, 3, "<unset>"), "<unset>");
    }
}
