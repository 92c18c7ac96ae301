//! JSON patch (RFC 6902) over JSON pointers (RFC 6901).

use serde_json::Value;

use super::PatchError;

/// Decodes one reference token of a JSON pointer (`~1` is `/`, `~0` is `~`).
pub fn unescape_pointer_token(t: &str) -> String {
    t.replace("~1", "/").replace("~0", "~")
}

fn parse_pointer(path: &str) -> Result<Vec<String>, PatchError> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(PatchError::Invalid(format!(
            "invalid JSON pointer: {path:?} must start with '/'"
        )));
    };
    Ok(rest.split('/').map(unescape_pointer_token).collect())
}

/// An array index token: digits without leading zeros.
fn parse_index(t: &str, len: usize, allow_end: bool) -> Option<usize> {
    if allow_end && t == "-" {
        return Some(len);
    }
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) || (t.len() > 1 && t.starts_with('0'))
    {
        return None;
    }
    let i: usize = t.parse().ok()?;
    let max = if allow_end {
        len
    } else {
        len.saturating_sub(1)
    };
    (i <= max && (allow_end || len > 0)).then_some(i)
}

fn get<'a>(doc: &'a Value, tokens: &[String]) -> Option<&'a Value> {
    let mut cur = doc;
    for t in tokens {
        cur = match cur {
            Value::Object(m) => m.get(t)?,
            Value::Array(a) => a.get(parse_index(t, a.len(), false)?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn parent_mut<'a>(doc: &'a mut Value, tokens: &[String]) -> Option<&'a mut Value> {
    let mut cur = doc;
    for t in tokens {
        cur = match cur {
            Value::Object(m) => m.get_mut(t)?,
            Value::Array(a) => {
                let i = parse_index(t, a.len(), false)?;
                a.get_mut(i)?
            }
            _ => return None,
        };
    }
    Some(cur)
}

fn add(
    doc: &mut Value,
    tokens: &[String],
    value: Value,
    op: &str,
    path: &str,
) -> Result<(), PatchError> {
    let missing = || {
        PatchError::MissingPath(format!(
            "{op} operation does not apply: doc is missing path: {path:?}: missing value"
        ))
    };
    let Some((last, parents)) = tokens.split_last() else {
        *doc = value;
        return Ok(());
    };
    match parent_mut(doc, parents).ok_or_else(missing)? {
        Value::Object(m) => {
            m.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(a) => {
            let i = parse_index(last, a.len(), true).ok_or_else(missing)?;
            a.insert(i, value);
            Ok(())
        }
        _ => Err(missing()),
    }
}

fn remove(doc: &mut Value, tokens: &[String], op: &str, path: &str) -> Result<Value, PatchError> {
    let missing = || {
        PatchError::MissingPath(format!(
            "{op} operation does not apply: doc is missing path: {path:?}: missing value"
        ))
    };
    let Some((last, parents)) = tokens.split_last() else {
        return Ok(std::mem::take(doc));
    };
    match parent_mut(doc, parents).ok_or_else(missing)? {
        Value::Object(m) => m.shift_remove(last).ok_or_else(missing),
        Value::Array(a) => {
            let i = parse_index(last, a.len(), false).ok_or_else(missing)?;
            Ok(a.remove(i))
        }
        _ => Err(missing()),
    }
}

/// Applies an RFC 6902 patch (a list of `add`, `remove`, `replace`, `move`, `copy`, `test`
/// operations) to a copy of `doc`. Either every operation applies or an error is returned.
pub fn json_patch(doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    let Value::Array(ops) = patch else {
        return Err(PatchError::Invalid(
            "json patch must be a list of operations".to_string(),
        ));
    };
    let mut doc = doc.clone();
    for op in ops {
        let Value::Object(o) = op else {
            return Err(PatchError::Invalid(format!("invalid operation {op}")));
        };
        let kind = o.get("op").and_then(Value::as_str).unwrap_or_default();
        let path = o
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| PatchError::Invalid(format!("{kind} operation missing path")))?;
        let tokens = parse_pointer(path)?;
        let value = || {
            o.get("value")
                .cloned()
                .ok_or_else(|| PatchError::Invalid(format!("{kind} operation missing value")))
        };
        let from = || -> Result<(String, Vec<String>), PatchError> {
            let f = o
                .get("from")
                .and_then(Value::as_str)
                .ok_or_else(|| PatchError::Invalid(format!("{kind} operation missing from")))?;
            Ok((f.to_string(), parse_pointer(f)?))
        };
        match kind {
            "add" => add(&mut doc, &tokens, value()?, kind, path)?,
            "remove" => {
                remove(&mut doc, &tokens, kind, path)?;
            }
            "replace" => {
                let v = value()?;
                let slot = get_mut_existing(&mut doc, &tokens).ok_or_else(|| {
                    PatchError::MissingPath(format!(
                        "replace operation does not apply: doc is missing key: {path}: missing value"
                    ))
                })?;
                *slot = v;
            }
            "move" => {
                let (from_path, from_tokens) = from()?;
                if tokens.len() > from_tokens.len() && tokens.starts_with(&from_tokens) {
                    return Err(PatchError::Invalid(format!(
                        "move operation does not apply: cannot move {from_path:?} into its own child {path:?}"
                    )));
                }
                let v = remove(&mut doc, &from_tokens, kind, &from_path)?;
                add(&mut doc, &tokens, v, kind, path)?;
            }
            "copy" => {
                let (from_path, from_tokens) = from()?;
                let v = get(&doc, &from_tokens).cloned().ok_or_else(|| {
                    PatchError::MissingPath(format!(
                        "copy operation does not apply: doc is missing from path: {from_path:?}: missing value"
                    ))
                })?;
                add(&mut doc, &tokens, v, kind, path)?;
            }
            "test" => {
                let want = value()?;
                if get(&doc, &tokens) != Some(&want) {
                    return Err(PatchError::TestFailed(format!(
                        "testing value {path} failed: test failed"
                    )));
                }
            }
            other => {
                return Err(PatchError::Invalid(format!("Unexpected kind: {other}")));
            }
        }
    }
    Ok(doc)
}

fn get_mut_existing<'a>(doc: &'a mut Value, tokens: &[String]) -> Option<&'a mut Value> {
    parent_mut(doc, tokens)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn operations() {
        let doc = json!({"metadata": {"labels": {"a/b": "1"}}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        for (patch, want) in [
            (
                json!([{"op": "add", "path": "/metadata/labels/x", "value": "2"}]),
                json!({"metadata": {"labels": {"a/b": "1", "x": "2"}}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]}}),
            ),
            (
                json!([{"op": "remove", "path": "/metadata/labels/a~1b"}]),
                json!({"metadata": {"labels": {}}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]}}),
            ),
            (
                json!([{"op": "add", "path": "/spec/containers/-", "value": {"name": "c"}}]),
                json!({"metadata": {"labels": {"a/b": "1"}}, "spec": {"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}}),
            ),
            (
                json!([{"op": "add", "path": "/spec/containers/0", "value": {"name": "z"}}]),
                json!({"metadata": {"labels": {"a/b": "1"}}, "spec": {"containers": [{"name": "z"}, {"name": "a"}, {"name": "b"}]}}),
            ),
            (
                json!([{"op": "replace", "path": "/spec/containers/1/name", "value": "q"}]),
                json!({"metadata": {"labels": {"a/b": "1"}}, "spec": {"containers": [{"name": "a"}, {"name": "q"}]}}),
            ),
            (
                json!([{"op": "move", "from": "/spec/containers/0", "path": "/spec/containers/1"}]),
                json!({"metadata": {"labels": {"a/b": "1"}}, "spec": {"containers": [{"name": "b"}, {"name": "a"}]}}),
            ),
            (
                json!([{"op": "copy", "from": "/metadata/labels", "path": "/spec/labels"}]),
                json!({"metadata": {"labels": {"a/b": "1"}}, "spec": {"containers": [{"name": "a"}, {"name": "b"}], "labels": {"a/b": "1"}}}),
            ),
            (
                json!([{"op": "test", "path": "/spec/containers/0/name", "value": "a"}, {"op": "remove", "path": "/spec"}]),
                json!({"metadata": {"labels": {"a/b": "1"}}}),
            ),
            (json!([{"op": "replace", "path": "", "value": 1}]), json!(1)),
        ] {
            assert_eq!(json_patch(&doc, &patch).unwrap(), want, "{patch}");
        }
    }

    #[test]
    fn errors() {
        let doc = json!({"a": {"b": [1, 2]}, "t~": 1});
        for (patch, msg) in [
            (
                json!([{"op": "remove", "path": "/x"}]),
                "remove operation does not apply: doc is missing path: \"/x\": missing value",
            ),
            (
                json!([{"op": "add", "path": "/x/y", "value": 1}]),
                "add operation does not apply: doc is missing path: \"/x/y\": missing value",
            ),
            (
                json!([{"op": "add", "path": "/a/b/5", "value": 1}]),
                "add operation does not apply: doc is missing path: \"/a/b/5\": missing value",
            ),
            (
                json!([{"op": "remove", "path": "/a/b/01"}]),
                "remove operation does not apply: doc is missing path: \"/a/b/01\": missing value",
            ),
            (
                json!([{"op": "replace", "path": "/x", "value": 1}]),
                "replace operation does not apply: doc is missing key: /x: missing value",
            ),
            (
                json!([{"op": "test", "path": "/t~0", "value": 2}]),
                "testing value /t~0 failed: test failed",
            ),
            (
                json!([{"op": "frob", "path": "/a"}]),
                "Unexpected kind: frob",
            ),
            (
                json!({"op": "add"}),
                "json patch must be a list of operations",
            ),
            (
                json!([{"op": "move", "from": "/a", "path": "/a/c"}]),
                "move operation does not apply: cannot move \"/a\" into its own child \"/a/c\"",
            ),
        ] {
            assert_eq!(
                json_patch(&doc, &patch).unwrap_err().to_string(),
                msg,
                "{patch}"
            );
        }
        // A failing operation leaves nothing half-applied: the input is untouched.
        assert_eq!(doc, json!({"a": {"b": [1, 2]}, "t~": 1}));
        assert_eq!(
            json_patch(&doc, &json!([{"op": "test", "path": "/t~0", "value": 1}])).unwrap(),
            doc
        );
    }
}
