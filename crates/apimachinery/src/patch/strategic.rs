//! Strategic merge patch, as upstream's `strategicpatch` applies what kubectl sends.
//!
//! Maps merge recursively and `null` deletes a field. Lists whose schema says
//! `patchStrategy: merge` merge: lists of objects by their merge key, lists of scalars as a
//! union. Every other list (and anything under [`Schema::Any`]) is replaced, which makes a
//! patch against an unknown schema behave like a JSON merge patch. Directives:
//! - `$patch: replace` / `$patch: delete` in a map replace it with the rest of the patch map /
//!   delete it; in a list of objects, an item `{"name": x, "$patch": "delete"}` removes item
//!   `x` and an item `{"$patch": "replace"}` replaces the whole list with the other items;
//! - `$deleteFromPrimitiveList/<field>: [values]` removes values from a scalar list;
//! - `$setElementOrder/<field>: [...]` gives the order of the merged list (items only on the
//!   server keep their relative place);
//! - `$retainKeys: [fields]` drops every other field of the live map.

use serde_json::{Map, Value};

use super::PatchError;
use crate::schema::{ListPatch, Schema, Schemas};

const DIRECTIVE: &str = "$patch";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
const RETAIN_KEYS: &str = "$retainKeys";

/// Applies a strategic merge patch to `doc` (the object described by `schema`).
pub fn strategic_merge_patch(
    doc: &Value,
    patch: &Value,
    schema: &Schema,
    schemas: &Schemas,
) -> Result<Value, PatchError> {
    let Value::Object(p) = patch else {
        return Err(PatchError::Invalid(
            "strategic merge patch must be a JSON object".to_string(),
        ));
    };
    let original = match doc {
        Value::Object(o) => o.clone(),
        _ => Map::new(),
    };
    Ok(Value::Object(merge_map(
        original,
        p.clone(),
        schema,
        schemas,
    )?))
}

/// How a list field merges: `Some(merge key)` when it merges, `None` when it is replaced.
fn list_strategy<'a>(
    schema: &'a Schema,
    schemas: &'a Schemas,
) -> Option<(Option<&'a str>, &'a Schema)> {
    match schemas.resolve(schema) {
        Schema::List {
            items,
            patch: ListPatch::Merge { key, .. },
            ..
        } => Some((key.as_deref(), schemas.resolve(items))),
        _ => None,
    }
}

fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    schema: &Schema,
    schemas: &Schemas,
) -> Result<Map<String, Value>, PatchError> {
    if let Some(d) = patch.get(DIRECTIVE) {
        return match d.as_str() {
            Some("replace") => {
                patch.shift_remove(DIRECTIVE);
                Ok(patch)
            }
            Some("delete") => Ok(Map::new()),
            _ => Err(PatchError::Invalid(format!(
                "unknown patch type: {} in map: {}",
                display(d),
                Value::Object(patch.clone())
            ))),
        };
    }
    apply_retain_keys(&mut original, &mut patch)?;
    merge_set_element_order(&mut original, &mut patch, schema, schemas)?;

    for (k, pv) in patch {
        let (key, delete_list) = match k.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            Some(field) => (field.to_string(), true),
            None => (k, false),
        };
        if pv.is_null() {
            if !delete_list {
                original.shift_remove(&key);
            }
            continue;
        }
        let sub = schemas.field(schema, &key);
        let existing = original.get_mut(&key).map(std::mem::take);
        let merged = match (existing, pv) {
            (None, _) if delete_list => continue,
            (None, Value::Object(p)) => Value::Object(merge_map(Map::new(), p, sub, schemas)?),
            (None, Value::Array(p)) => match list_strategy(sub, schemas) {
                Some((mkey, items)) => {
                    Value::Array(merge_list(Vec::new(), p, mkey, items, schemas, false)?)
                }
                None => discard_nulls(Value::Array(p)),
            },
            (None, p) => p,
            (Some(Value::Object(o)), Value::Object(p)) if !delete_list => {
                Value::Object(merge_map(o, p, sub, schemas)?)
            }
            (Some(Value::Array(o)), Value::Array(p)) => match list_strategy(sub, schemas) {
                Some((mkey, items)) => {
                    Value::Array(merge_list(o, p, mkey, items, schemas, delete_list)?)
                }
                None if delete_list => Value::Array(delete_from_list(o, &p)),
                None => discard_nulls(Value::Array(p)),
            },
            (Some(o), _) if delete_list => o,
            (Some(_), p) => discard_nulls(p),
        };
        match original.get_mut(&key) {
            Some(slot) => *slot = merged,
            None => {
                original.insert(key, merged);
            }
        }
    }
    Ok(original)
}

fn display(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Removes `null` members everywhere in a value taken from the patch as is.
fn discard_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, discard_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(discard_nulls).collect()),
        other => other,
    }
}

fn apply_retain_keys(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
) -> Result<(), PatchError> {
    let Some(retain) = patch.shift_remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let bad = || PatchError::Invalid("invalid patch format of retainKeys".to_string());
    let Value::Array(list) = retain else {
        return Err(bad());
    };
    let keys: Vec<&str> = list
        .iter()
        .map(Value::as_str)
        .collect::<Option<_>>()
        .ok_or_else(bad)?;
    for (k, v) in patch.iter() {
        if v.is_null()
            || k.starts_with(DELETE_FROM_PRIMITIVE_LIST)
            || k.starts_with(SET_ELEMENT_ORDER)
        {
            continue;
        }
        if !keys.contains(&k.as_str()) {
            return Err(bad());
        }
    }
    original.retain(|k, _| keys.contains(&k.as_str()));
    Ok(())
}

/// Handles every `$setElementOrder/<field>` of `patch`: merges the field's patch list into the
/// original, orders the result and removes both from `patch`.
fn merge_set_element_order(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    schema: &Schema,
    schemas: &Schemas,
) -> Result<(), PatchError> {
    let directives: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ELEMENT_ORDER))
        .cloned()
        .collect();
    for directive in directives {
        let field = directive[SET_ELEMENT_ORDER.len()..].to_string();
        let Some(Value::Array(order)) = patch.shift_remove(&directive) else {
            return Err(PatchError::Invalid(format!(
                "invalid type for {directive}: expected a list"
            )));
        };
        if patch.get(&field).is_some_and(|v| !v.is_array()) {
            // `null` or a non-list value: the main merge handles the field.
            continue;
        }
        let orig = match original.get(&field) {
            Some(Value::Array(a)) => a.clone(),
            _ => Vec::new(),
        };
        let patch_list = match patch.shift_remove(&field) {
            Some(Value::Array(a)) => a,
            _ => Vec::new(),
        };
        let sub = schemas.field(schema, &field);
        let strategy = list_strategy(sub, schemas);
        let key = strategy.and_then(|(k, _)| k);
        let mut merged = match (strategy, orig.is_empty(), patch_list.is_empty()) {
            (_, _, true) => orig.clone(),
            (Some((k, items)), _, false) => {
                merge_list(orig.clone(), patch_list, k, items, schemas, false)?
            }
            (None, _, false) => patch_list,
        };
        if !merged.is_empty() {
            let (in_order, server_only) = partition(merged, &order, key);
            merged = normalize_element_order(in_order, server_only, &order, &orig, key);
        }
        if merged.is_empty() {
            original.shift_remove(&field);
        } else {
            original.insert(field, Value::Array(merged));
        }
    }
    Ok(())
}

fn delete_from_list(list: Vec<Value>, remove: &[Value]) -> Vec<Value> {
    list.into_iter().filter(|v| !remove.contains(v)).collect()
}

/// Merges a patch list into an original list whose strategy is `merge`.
fn merge_list(
    original: Vec<Value>,
    patch: Vec<Value>,
    key: Option<&str>,
    items: &Schema,
    schemas: &Schemas,
    delete_list: bool,
) -> Result<Vec<Value>, PatchError> {
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    if delete_list {
        return Ok(delete_from_list(original, &patch));
    }
    let of_maps = original.iter().chain(&patch).any(Value::is_object);
    if !of_maps {
        let mut merged: Vec<Value> = Vec::new();
        for v in original.iter().chain(&patch) {
            if !merged.contains(v) {
                merged.push(v.clone());
            }
        }
        let (in_patch, server_only) = partition(merged, &patch, None);
        return Ok(normalize_element_order(
            in_patch,
            server_only,
            &patch,
            &original,
            None,
        ));
    }
    let Some(key) = key else {
        return Err(PatchError::Invalid(
            "cannot merge lists without merge key".to_string(),
        ));
    };
    // Special items: `$patch: delete` removes by key, `$patch: replace` replaces the list.
    let mut plain = Vec::new();
    let mut replace = false;
    let mut original = original;
    for item in patch {
        let Value::Object(m) = &item else {
            return Err(PatchError::Invalid(format!(
                "cannot merge a list of maps with the non-map item {item}"
            )));
        };
        match m.get(DIRECTIVE) {
            None => plain.push(item),
            Some(d) => match d.as_str() {
                Some("delete") => {
                    let Some(kv) = m.get(key) else {
                        return Err(no_merge_key(&item, key));
                    };
                    original.retain(|o| o.get(key) != Some(kv));
                }
                Some("replace") => replace = true,
                Some("merge") => {
                    return Err(PatchError::Invalid(
                        "merging lists cannot yet be specified in the patch".to_string(),
                    ));
                }
                _ => {
                    return Err(PatchError::Invalid(format!(
                        "unknown patch type: {} in map: {item}",
                        display(d)
                    )));
                }
            },
        }
    }
    if replace {
        return Ok(plain.into_iter().map(discard_nulls).collect());
    }
    let server_order = original.clone();
    let mut merged = original;
    for item in &plain {
        let Some(kv) = item.get(key) else {
            return Err(no_merge_key(item, key));
        };
        let Value::Object(pm) = item else { continue };
        match merged.iter_mut().find(|o| o.get(key) == Some(kv)) {
            Some(slot) => {
                let om = match std::mem::take(slot) {
                    Value::Object(om) => om,
                    _ => Map::new(),
                };
                *slot = Value::Object(merge_map(om, pm.clone(), items, schemas)?);
            }
            None => merged.push(Value::Object(merge_map(
                Map::new(),
                pm.clone(),
                items,
                schemas,
            )?)),
        }
    }
    let (in_patch, server_only) = partition(merged, &plain, Some(key));
    Ok(normalize_element_order(
        in_patch,
        server_only,
        &plain,
        &server_order,
        Some(key),
    ))
}

fn no_merge_key(item: &Value, key: &str) -> PatchError {
    PatchError::Invalid(format!(
        "map: {item} does not contain declared merge key: {key}"
    ))
}

/// Position of `item` in `list`, by merge key for maps, by value for scalars.
fn index_of(list: &[Value], item: &Value, key: Option<&str>) -> Option<usize> {
    match key {
        Some(k) => {
            let kv = item.get(k)?;
            list.iter().position(|x| x.get(k) == Some(kv))
        }
        None => list.iter().position(|x| x == item),
    }
}

/// Splits `list` into the items found in `other` and the rest.
fn partition(list: Vec<Value>, other: &[Value], key: Option<&str>) -> (Vec<Value>, Vec<Value>) {
    list.into_iter()
        .partition(|v| index_of(other, v, key).is_some())
}

/// Sorts `to_sort` by position in `order`, items not in `order` last (stable).
fn normalize_slice_order(to_sort: Vec<Value>, order: &[Value], key: Option<&str>) -> Vec<Value> {
    let (mut present, absent) = partition(to_sort, order, key);
    present.sort_by_key(|v| index_of(order, v, key));
    present.extend(absent);
    present
}

/// Orders patch items by `patch_order` and server-only items by `server_order`, then
/// interleaves them so that each keeps its relative order, server-only items going before a
/// patch item that follows them on the server.
fn normalize_element_order(
    patch: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    key: Option<&str>,
) -> Vec<Value> {
    let right = normalize_slice_order(patch, patch_order, key);
    let left = normalize_slice_order(server_only, server_order, key);
    let mut out = Vec::with_capacity(left.len() + right.len());
    let (mut l, mut r) = (left.into_iter().peekable(), right.into_iter().peekable());
    loop {
        match (l.peek(), r.peek()) {
            (None, None) => break,
            (Some(_), None) => out.extend(l.next()),
            (None, Some(_)) => out.extend(r.next()),
            (Some(a), Some(b)) => {
                let before = match (
                    index_of(server_order, a, key),
                    index_of(server_order, b, key),
                ) {
                    (Some(ia), Some(ib)) => ia < ib,
                    _ => false,
                };
                if before {
                    out.extend(l.next());
                } else {
                    out.extend(r.next());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
