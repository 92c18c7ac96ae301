//! Schema-driven walks over objects: the field set of an object, the comparison of two
//! objects, the apply merge and pruning.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::fieldset::{FieldSet, PathElement};
use crate::schema::{ListType, Schema, Schemas};

/// How a value is treated by server-side apply.
enum Kind<'a> {
    /// A struct or a map: fields are owned separately.
    Fields { is_map: bool },
    /// A list whose items are identified by these keys.
    Associative(Keys<'a>, &'a Schema),
    /// A set of scalars.
    Set,
    /// A scalar, an atomic list or `Any`: owned as a whole.
    Atomic,
}

fn kind<'a>(schema: &'a Schema, schemas: &'a Schemas, v: &Value) -> Kind<'a> {
    match (schemas.resolve(schema), v) {
        (Schema::Object { .. }, Value::Object(_)) => Kind::Fields { is_map: false },
        (Schema::Map { .. }, Value::Object(_)) => Kind::Fields { is_map: true },
        (
            Schema::List {
                list_type: ListType::Map { keys },
                items,
                ..
            },
            Value::Array(_),
        ) => {
            // A key field an item leaves out takes the schema's default (`protocol: TCP`).
            let defaults = match items.as_ref() {
                Schema::Ref(name) => schemas.defaults_of(name),
                _ => None,
            };
            Kind::Associative(
                Keys {
                    names: keys,
                    defaults,
                },
                schemas.resolve(items),
            )
        }
        (
            Schema::List {
                list_type: ListType::Set,
                ..
            },
            Value::Array(_),
        ) => Kind::Set,
        _ => Kind::Atomic,
    }
}

/// The key fields of an associative list, and the schema defaults of its item type.
#[derive(Clone, Copy)]
struct Keys<'a> {
    names: &'a [String],
    defaults: Option<&'a BTreeMap<String, Value>>,
}

/// The path element naming an associative-list item: its key fields (a missing one takes
/// its schema default, as upstream's structured-merge-diff does), or its index if it has
/// none.
fn item_pe(item: &Value, keys: Keys<'_>, index: usize) -> PathElement {
    let fields: BTreeMap<String, Value> = keys
        .names
        .iter()
        .filter_map(|k| {
            item.get(k)
                .or_else(|| keys.defaults.and_then(|d| d.get(k)))
                .map(|v| (k.clone(), v.clone()))
        })
        .collect();
    if fields.is_empty() {
        PathElement::Index(index)
    } else {
        PathElement::key(&fields)
    }
}

fn items_by_pe<'v>(list: &'v [Value], keys: Keys<'_>) -> Vec<(PathElement, &'v Value)> {
    list.iter()
        .enumerate()
        .map(|(i, v)| (item_pe(v, keys, i), v))
        .collect()
}

/// The field set of `v`: its leaves, associative-list items (as members), set elements and
/// empty maps.
pub fn to_field_set(v: &Value, schema: &Schema, schemas: &Schemas) -> FieldSet {
    let mut set = FieldSet::new();
    walk_set_under(v, schema, schemas, &mut Vec::new(), &mut set, false, 0);
    set
}

/// Inserts the paths of `v` (see [`to_field_set`]) below `path`, whose first `root` elements
/// are a prefix: the value at the prefix itself is never inserted (the caller decides
/// whether it is owned). `own_maps` also owns every non-empty map.
fn walk_set_under(
    v: &Value,
    schema: &Schema,
    schemas: &Schemas,
    path: &mut Vec<PathElement>,
    set: &mut FieldSet,
    own_maps: bool,
    root: usize,
) {
    match kind(schema, schemas, v) {
        Kind::Fields { is_map } => {
            let obj = v.as_object().expect("kind checked");
            if path.len() > root && (obj.is_empty() || (own_maps && is_map)) {
                set.insert(path);
            }
            for (k, cv) in obj {
                path.push(PathElement::Field(k.clone()));
                walk_set_under(
                    cv,
                    schemas.field(schema, k),
                    schemas,
                    path,
                    set,
                    own_maps,
                    root,
                );
                path.pop();
            }
        }
        Kind::Associative(keys, items) => {
            for (pe, item) in items_by_pe(v.as_array().expect("kind checked"), keys) {
                path.push(pe);
                set.insert(path);
                if let Value::Object(m) = item {
                    for (k, cv) in m {
                        path.push(PathElement::Field(k.clone()));
                        walk_set_under(
                            cv,
                            schemas.field(items, k),
                            schemas,
                            path,
                            set,
                            own_maps,
                            root,
                        );
                        path.pop();
                    }
                }
                path.pop();
            }
        }
        Kind::Set => {
            for item in v.as_array().expect("kind checked") {
                path.push(PathElement::value(item));
                set.insert(path);
                path.pop();
            }
        }
        Kind::Atomic => set.insert(path),
    }
}

/// What changed between two objects.
#[derive(Debug, Default)]
pub struct Comparison {
    /// Paths present only in the new object.
    pub added: FieldSet,
    /// Leaves present in both with different values.
    pub modified: FieldSet,
    /// Paths present only in the old object.
    pub removed: FieldSet,
}

/// Compares two objects.
pub fn compare(old: &Value, new: &Value, schema: &Schema, schemas: &Schemas) -> Comparison {
    let mut c = Comparison::default();
    cmp(
        Some(old),
        Some(new),
        schema,
        schemas,
        &mut Vec::new(),
        &mut c,
    );
    c
}

/// Inserts every path of `v` under `path` into `set`, and `path` itself when `own`. Maps
/// (not structs) inside are owned themselves too, as upstream records an added map.
fn subtree(
    v: &Value,
    schema: &Schema,
    schemas: &Schemas,
    path: &mut Vec<PathElement>,
    set: &mut FieldSet,
    own: bool,
) {
    if own {
        set.insert(path);
    }
    // Walked in place under `path` (no intermediate set): this runs for every field of a
    // created object, on every create.
    let root = path.len();
    walk_set_under(v, schema, schemas, path, set, true, root);
}

fn cmp(
    old: Option<&Value>,
    new: Option<&Value>,
    schema: &Schema,
    schemas: &Schemas,
    path: &mut Vec<PathElement>,
    c: &mut Comparison,
) {
    let (o, n) = match (old, new) {
        (None, None) => return,
        (Some(o), None) => return subtree(o, schema, schemas, path, &mut c.removed, true),
        (None, Some(n)) => return subtree(n, schema, schemas, path, &mut c.added, false),
        (Some(o), Some(n)) => (o, n),
    };
    match (kind(schema, schemas, o), kind(schema, schemas, n)) {
        (Kind::Fields { .. }, Kind::Fields { .. }) => {
            let (om, nm) = (o.as_object().expect("kind"), n.as_object().expect("kind"));
            let keys: Vec<&String> = om
                .keys()
                .chain(nm.keys().filter(|k| !om.contains_key(*k)))
                .collect();
            for k in keys {
                path.push(PathElement::Field(k.clone()));
                cmp(
                    om.get(k),
                    nm.get(k),
                    schemas.field(schema, k),
                    schemas,
                    path,
                    c,
                );
                path.pop();
            }
        }
        (Kind::Associative(keys, items), Kind::Associative(..)) => {
            let oi = items_by_pe(o.as_array().expect("kind"), keys);
            let ni = items_by_pe(n.as_array().expect("kind"), keys);
            for (pe, ov) in &oi {
                path.push(pe.clone());
                match find(&ni, pe) {
                    Some(nv) => cmp_item(ov, nv, items, schemas, path, c),
                    None => subtree(ov, items, schemas, path, &mut c.removed, true),
                }
                path.pop();
            }
            for (pe, nv) in &ni {
                if find(&oi, pe).is_none() {
                    path.push(pe.clone());
                    subtree(nv, items, schemas, path, &mut c.added, true);
                    path.pop();
                }
            }
        }
        (Kind::Set, Kind::Set) => {
            let (ol, nl) = (o.as_array().expect("kind"), n.as_array().expect("kind"));
            for v in ol.iter().filter(|v| !nl.contains(v)) {
                path.push(PathElement::value(v));
                c.removed.insert(path);
                path.pop();
            }
            for v in nl.iter().filter(|v| !ol.contains(v)) {
                path.push(PathElement::value(v));
                c.added.insert(path);
                path.pop();
            }
        }
        _ => {
            if o != n {
                c.modified.insert(path);
            }
        }
    }
}

fn find<'v>(l: &[(PathElement, &'v Value)], pe: &PathElement) -> Option<&'v Value> {
    l.iter().find(|(p, _)| p == pe).map(|(_, v)| *v)
}

/// Compares two items of an associative list field by field.
fn cmp_item(
    o: &Value,
    n: &Value,
    items: &Schema,
    schemas: &Schemas,
    path: &mut Vec<PathElement>,
    c: &mut Comparison,
) {
    match (o, n) {
        (Value::Object(om), Value::Object(nm)) => {
            let keys: Vec<&String> = om
                .keys()
                .chain(nm.keys().filter(|k| !om.contains_key(*k)))
                .collect();
            for k in keys {
                path.push(PathElement::Field(k.clone()));
                cmp(
                    om.get(k),
                    nm.get(k),
                    schemas.field(items, k),
                    schemas,
                    path,
                    c,
                );
                path.pop();
            }
        }
        _ if o != n => c.modified.insert(path),
        _ => {}
    }
}

/// Merges an applied configuration into a live value: structs and maps merge, associative
/// lists merge items by key, set lists union, everything else is replaced.
pub fn merge(live: Option<&Value>, applied: &Value, schema: &Schema, schemas: &Schemas) -> Value {
    let Some(live) = live else {
        return applied.clone();
    };
    match (kind(schema, schemas, live), kind(schema, schemas, applied)) {
        (Kind::Fields { .. }, Kind::Fields { .. }) => {
            let mut out = live.as_object().cloned().unwrap_or_default();
            merge_fields(
                &mut out,
                applied.as_object().expect("kind"),
                schema,
                schemas,
            );
            Value::Object(out)
        }
        (Kind::Associative(keys, items), Kind::Associative(..)) => {
            let li = items_by_pe(live.as_array().expect("kind"), keys);
            let ai = items_by_pe(applied.as_array().expect("kind"), keys);
            let merge_item = |pe: &PathElement, a: &Value| -> Value {
                match (li.iter().find(|(p, _)| p == pe), a) {
                    (Some((_, Value::Object(lm))), Value::Object(am)) => {
                        let mut out = lm.clone();
                        merge_fields(&mut out, am, items, schemas);
                        Value::Object(out)
                    }
                    _ => a.clone(),
                }
            };
            // Live-only items keep their place; applied items keep the applied order.
            let mut out = Vec::new();
            let mut next = 0;
            for (pe, lv) in &li {
                match ai.iter().position(|(p, _)| p == pe) {
                    Some(j) => {
                        while next <= j {
                            out.push(merge_item(&ai[next].0, ai[next].1));
                            next += 1;
                        }
                    }
                    None => out.push((*lv).clone()),
                }
            }
            for (pe, av) in &ai[next.min(ai.len())..] {
                out.push(merge_item(pe, av));
            }
            Value::Array(out)
        }
        (Kind::Set, Kind::Set) => {
            let mut out = live.as_array().cloned().unwrap_or_default();
            for v in applied.as_array().expect("kind") {
                if !out.contains(v) {
                    out.push(v.clone());
                }
            }
            Value::Array(out)
        }
        _ => applied.clone(),
    }
}

fn merge_fields(
    out: &mut Map<String, Value>,
    applied: &Map<String, Value>,
    schema: &Schema,
    schemas: &Schemas,
) {
    for (k, av) in applied {
        if av.is_null() {
            out.shift_remove(k);
            continue;
        }
        let merged = merge(out.get(k), av, schemas.field(schema, k), schemas);
        match out.get_mut(k) {
            Some(slot) => *slot = merged,
            None => {
                out.insert(k.clone(), merged);
            }
        }
    }
}

/// Removes the paths of `remove` from `v`. Objects and lists emptied by the removal go too,
/// unless `owned` (what managers still own) reaches into them.
pub fn remove_paths(
    v: &mut Value,
    remove: &FieldSet,
    owned: Option<&FieldSet>,
    schema: &Schema,
    schemas: &Schemas,
) {
    let k = kind(schema, schemas, v);
    let item_schema = match k {
        Kind::Associative(_, items) => Some(items),
        _ => None,
    };
    let keys = match k {
        Kind::Associative(keys, _) => keys,
        _ => Keys {
            names: &[],
            defaults: None,
        },
    };
    for pe in remove.members() {
        match (v as &mut Value, pe) {
            (Value::Object(m), PathElement::Field(f)) => {
                m.shift_remove(f);
            }
            (Value::Array(a), PathElement::Value(_)) => {
                a.retain(|x| &PathElement::value(x) != pe);
            }
            (Value::Array(a), _) => {
                let mut i = 0;
                a.retain(|x| {
                    i += 1;
                    &item_pe(x, keys, i - 1) != pe
                });
            }
            _ => {}
        }
    }
    for (pe, sub) in remove.children() {
        let owned_sub = owned.and_then(|o| o.child(pe));
        match (v as &mut Value, pe) {
            (Value::Object(m), PathElement::Field(f)) => {
                let child_schema = schemas.field(schema, f);
                let Some(cv) = m.get_mut(f) else { continue };
                remove_paths(cv, sub, owned_sub, child_schema, schemas);
                let still_owned = owned.is_some_and(|o| o.has_member(pe))
                    || owned_sub.is_some_and(|s| !s.is_empty());
                let emptied = cv.as_object().is_some_and(Map::is_empty)
                    || cv.as_array().is_some_and(Vec::is_empty);
                if !still_owned && emptied {
                    m.shift_remove(f);
                }
            }
            (Value::Array(a), _) => {
                let items = item_schema.unwrap_or(&Schema::Any);
                for (i, item) in a.iter_mut().enumerate() {
                    if &item_pe(item, keys, i) == pe {
                        remove_paths(item, sub, owned_sub, items, schemas);
                    }
                }
            }
            _ => {}
        }
    }
}

/// The `FieldsV1` JSON of every field `v` sets, as [`FieldSet::to_json`] renders the set that
/// comparing `v` with an empty object adds (maps and associative-list items owned
/// themselves), but built in one walk without the intermediate set: this runs on every
/// create. `None` when `v` is not a struct, or when a list holds two items with the same
/// key (the set semantics of that case are left to the general path).
pub fn created_fields_json(
    v: &Value,
    schema: &Schema,
    schemas: &Schemas,
) -> Option<Map<String, Value>> {
    match kind(schema, schemas, v) {
        kind @ Kind::Fields { .. } => children_json(v, kind, schema, schemas),
        _ => None,
    }
}

/// The JSON of one owned path: `{}` for a member without children, `{".":{},…}` for a member
/// with them, the children alone otherwise; `None` when it holds nothing.
fn node_json(member: bool, children: Map<String, Value>) -> Option<Value> {
    if children.is_empty() {
        return member.then(|| Value::Object(Map::new()));
    }
    if !member {
        return Some(Value::Object(children));
    }
    let mut out = Map::with_capacity(children.len() + 1);
    out.insert(".".to_string(), Value::Object(Map::new()));
    out.extend(children);
    Some(Value::Object(out))
}

/// The JSON of a value below the root (see [`walk_set_under`] with `own_maps`).
fn value_json(v: &Value, schema: &Schema, schemas: &Schemas) -> Option<Option<Value>> {
    Some(match kind(schema, schemas, v) {
        kind @ Kind::Fields { is_map } => {
            let empty = v.as_object().is_some_and(Map::is_empty);
            node_json(empty || is_map, children_json(v, kind, schema, schemas)?)
        }
        kind @ (Kind::Associative(..) | Kind::Set) => {
            node_json(false, children_json(v, kind, schema, schemas)?)
        }
        Kind::Atomic => Some(Value::Object(Map::new())),
    })
}

/// The JSON of the fields of a struct or map (or a list item) `m`, whose schema is `schema`.
fn fields_json(
    m: &Map<String, Value>,
    schema: &Schema,
    schemas: &Schemas,
    out: &mut Vec<(PathElement, Value)>,
) -> Option<()> {
    for (k, cv) in m {
        if let Some(j) = value_json(cv, schemas.field(schema, k), schemas)? {
            out.push((PathElement::Field(k.clone()), j));
        }
    }
    Some(())
}

/// The children of `v` (of kind `kind`), keyed and ordered as `FieldSet::to_json` writes them.
fn children_json(
    v: &Value,
    kind: Kind<'_>,
    schema: &Schema,
    schemas: &Schemas,
) -> Option<Map<String, Value>> {
    let mut kids: Vec<(PathElement, Value)> = Vec::new();
    match kind {
        Kind::Fields { .. } => fields_json(v.as_object()?, schema, schemas, &mut kids)?,
        Kind::Associative(keys, items) => {
            for (pe, item) in items_by_pe(v.as_array()?, keys) {
                let mut inner = Vec::new();
                if let Value::Object(m) = item {
                    fields_json(m, items, schemas, &mut inner)?;
                }
                let inner = sorted_map(inner)?;
                kids.push((pe, node_json(true, inner)?));
            }
        }
        Kind::Set => {
            for item in v.as_array()? {
                kids.push((PathElement::value(item), Value::Object(Map::new())));
            }
        }
        Kind::Atomic => {}
    }
    sorted_map(kids)
}

/// The entries in path-element order, keyed by their encoding; `None` on a duplicate.
fn sorted_map(mut kids: Vec<(PathElement, Value)>) -> Option<Map<String, Value>> {
    kids.sort_by(|a, b| a.0.cmp(&b.0));
    if kids.windows(2).any(|w| w[0].0 == w[1].0) {
        return None;
    }
    Some(kids.into_iter().map(|(pe, j)| (pe.encode(), j)).collect())
}
