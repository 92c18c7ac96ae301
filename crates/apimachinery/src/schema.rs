//! A typed view of an OpenAPI schema holding just what patching, server-side apply and strict
//! decoding need: which fields exist, which are maps, and how each list merges.

use std::collections::{BTreeMap, HashMap};

/// The shape of a value.
#[derive(Debug, Clone, PartialEq)]
pub enum Schema {
    /// A named definition (e.g. `io.k8s.api.core.v1.PodSpec`), resolved through [`Schemas`].
    Ref(String),
    /// An object with known fields (a Go struct).
    Object {
        /// Known fields.
        fields: BTreeMap<String, Schema>,
        /// `x-kubernetes-preserve-unknown-fields`: fields not listed are kept, not rejected.
        preserve_unknown: bool,
    },
    /// An object with arbitrary keys whose values share one schema (a Go map).
    Map {
        /// Schema of every value.
        values: Box<Schema>,
    },
    /// A list.
    List {
        /// Schema of every item.
        items: Box<Schema>,
        /// How strategic merge patch treats the list (`x-kubernetes-patch-strategy` and
        /// `x-kubernetes-patch-merge-key`).
        patch: ListPatch,
        /// How server-side apply treats the list (`x-kubernetes-list-type` and
        /// `x-kubernetes-list-map-keys`).
        list_type: ListType,
    },
    /// A scalar.
    Scalar(ScalarType),
    /// Anything at all, treated as one atomic value (`RawExtension`, untyped JSON).
    Any,
}

/// Strategic-merge-patch behaviour of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListPatch {
    /// The patch's list replaces the live one (no patch strategy).
    Replace,
    /// Items merge: by `key` for lists of objects, by value for lists of scalars (`key` is
    /// `None`). `retain_keys` is the extra `retainKeys` strategy.
    Merge {
        /// The patch merge key, e.g. `name` for containers.
        key: Option<String>,
        /// Whether the `retainKeys` strategy applies as well.
        retain_keys: bool,
    },
}

/// Server-side-apply behaviour of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListType {
    /// The whole list is one value, owned by one manager.
    Atomic,
    /// A set of scalars; each element is owned separately.
    Set,
    /// A list of objects identified by these keys; each element is owned separately.
    Map {
        /// `x-kubernetes-list-map-keys`.
        keys: Vec<String>,
    },
}

/// Scalar types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarType {
    /// A string (also dates, quantities, byte strings).
    String,
    /// An integer.
    Integer,
    /// A floating-point number.
    Number,
    /// A boolean.
    Boolean,
    /// `IntOrString`: an integer or a string.
    IntOrString,
}

/// Named definitions, e.g. every type in the Kubernetes API.
///
/// Cloning is cheap: the maps are shared, and copied only when a clone is changed (adding a
/// custom resource's schema). Every component holding the built-in schemas shares one copy.
#[derive(Debug, Clone, Default)]
pub struct Schemas {
    defs: std::sync::Arc<HashMap<String, Schema>>,
    /// Field defaults by definition, e.g. `ServicePort.protocol` = `"TCP"`.
    defaults: std::sync::Arc<HashMap<String, BTreeMap<String, serde_json::Value>>>,
    /// Required fields by definition (the schema's `required` list).
    required: std::sync::Arc<HashMap<String, Vec<String>>>,
}

impl Schemas {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a definition.
    pub fn insert(&mut self, name: impl Into<String>, schema: Schema) {
        std::sync::Arc::make_mut(&mut self.defs).insert(name.into(), schema);
    }

    /// Records the schema default of `field` in definition `name`.
    pub fn insert_default(
        &mut self,
        name: impl Into<String>,
        field: impl Into<String>,
        value: serde_json::Value,
    ) {
        std::sync::Arc::make_mut(&mut self.defaults)
            .entry(name.into())
            .or_default()
            .insert(field.into(), value);
    }

    /// Records the required fields of definition `name`.
    pub fn insert_required(&mut self, name: impl Into<String>, fields: Vec<String>) {
        std::sync::Arc::make_mut(&mut self.required).insert(name.into(), fields);
    }

    /// The required fields of definition `name`.
    pub fn required_of(&self, name: &str) -> &[String] {
        self.required.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The field defaults of definition `name`.
    pub fn defaults_of(&self, name: &str) -> Option<&BTreeMap<String, serde_json::Value>> {
        self.defaults.get(name)
    }

    /// A definition by name.
    pub fn get(&self, name: &str) -> Option<&Schema> {
        self.defs.get(name)
    }

    /// Follows [`Schema::Ref`]s until a concrete schema; `Any` for an unknown name.
    pub fn resolve<'a>(&'a self, mut schema: &'a Schema) -> &'a Schema {
        // Bounded so that a definition referring to itself cannot loop forever.
        for _ in 0..32 {
            match schema {
                Schema::Ref(name) => match self.defs.get(name) {
                    Some(s) => schema = s,
                    None => return &Schema::Any,
                },
                other => return other,
            }
        }
        &Schema::Any
    }

    /// Number of definitions.
    pub fn len(&self) -> usize {
        self.defs.len()
    }

    /// Whether there are no definitions.
    pub fn is_empty(&self) -> bool {
        self.defs.is_empty()
    }
}

impl Schemas {
    /// The schema of the value under `key` of an object described by `schema`: a struct's field
    /// (`Any` for a field it does not list), a map's value schema, `Any` otherwise.
    pub fn field<'a>(&'a self, schema: &'a Schema, key: &str) -> &'a Schema {
        match self.resolve(schema) {
            Schema::Object { fields, .. } => {
                fields.get(key).map_or(&Schema::Any, |s| self.resolve(s))
            }
            Schema::Map { values } => self.resolve(values),
            _ => &Schema::Any,
        }
    }

    /// The schema of the items of a list described by `schema`; `Any` if it is not a list.
    pub fn items<'a>(&'a self, schema: &'a Schema) -> &'a Schema {
        match self.resolve(schema) {
            Schema::List { items, .. } => self.resolve(items),
            _ => &Schema::Any,
        }
    }
}
