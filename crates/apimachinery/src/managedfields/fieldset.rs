//! Field sets: which fields of an object a manager owns, and their `FieldsV1` JSON form
//! (`{"f:spec":{"f:containers":{"k:{\"name\":\"nginx\"}":{".":{},"f:image":{}}}}}`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde_json::{Map, Value};

/// One step of a path into an object. Ordered as upstream orders them: fields, then keys,
/// then values, then indices.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    /// A field of an object or a key of a map (`f:name`).
    Field(String),
    /// An item of an associative list, identified by its key fields: the canonical JSON object
    /// of those fields, keys sorted (`k:{"name":"nginx"}`).
    Key(String),
    /// An element of a set list: its canonical JSON (`v:"a"`).
    Value(String),
    /// An item of a list by position (`i:0`).
    Index(usize),
}

impl PathElement {
    /// A key element from the key fields of a list item.
    pub fn key(fields: &BTreeMap<String, Value>) -> PathElement {
        let m: Map<String, Value> = fields.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        PathElement::Key(Value::Object(m).to_string())
    }

    /// A value element for a set item.
    pub fn value(v: &Value) -> PathElement {
        PathElement::Value(v.to_string())
    }

    pub(crate) fn encode(&self) -> String {
        match self {
            PathElement::Field(f) => format!("f:{f}"),
            PathElement::Key(k) => format!("k:{k}"),
            PathElement::Value(v) => format!("v:{v}"),
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    fn decode(s: &str) -> Result<PathElement, FieldSetError> {
        let bad = || FieldSetError(format!("invalid path element {s:?}"));
        let (kind, rest) = s.split_once(':').ok_or_else(bad)?;
        Ok(match kind {
            "f" => PathElement::Field(rest.to_string()),
            "k" => {
                let v: Value = serde_json::from_str(rest).map_err(|_| bad())?;
                let Value::Object(m) = v else {
                    return Err(bad());
                };
                PathElement::key(&m.into_iter().collect())
            }
            "v" => {
                let v: Value = serde_json::from_str(rest).map_err(|_| bad())?;
                PathElement::value(&v)
            }
            "i" => PathElement::Index(rest.parse().map_err(|_| bad())?),
            _ => return Err(bad()),
        })
    }
}

/// Formats a path as upstream prints it in conflicts: `.spec.containers[name="nginx"].image`,
/// `.metadata.finalizers[="a"]`, `.spec.args[0]`.
pub fn path_string(path: &[PathElement]) -> String {
    let mut out = String::new();
    for pe in path {
        match pe {
            PathElement::Field(f) => {
                let _ = write!(out, ".{f}");
            }
            PathElement::Key(k) => {
                let parsed: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
                let parts: Vec<String> = parsed.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let _ = write!(out, "[{}]", parts.join(","));
            }
            PathElement::Value(v) => {
                let _ = write!(out, "[={v}]");
            }
            PathElement::Index(i) => {
                let _ = write!(out, "[{i}]");
            }
        }
    }
    out
}

/// A malformed `fieldsV1` document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FieldSetError(pub String);

/// A set of paths, stored as a tree: `members` are paths ending here, `children` are
/// subtrees. Empty subtrees are never stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    members: BTreeSet<PathElement>,
    children: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    /// The empty set.
    pub fn new() -> FieldSet {
        FieldSet::default()
    }

    /// Whether the set has no path.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.is_empty()
    }

    /// Adds a path (the empty path is ignored).
    pub fn insert(&mut self, path: &[PathElement]) {
        match path {
            [] => {}
            // Clone a path element only when it is new here: most inserts share a prefix.
            [pe] => {
                if !self.members.contains(pe) {
                    self.members.insert(pe.clone());
                }
            }
            [pe, rest @ ..] => match self.children.get_mut(pe) {
                Some(child) => child.insert(rest),
                None => self.children.entry(pe.clone()).or_default().insert(rest),
            },
        }
    }

    /// Whether the set holds exactly this path.
    pub fn contains(&self, path: &[PathElement]) -> bool {
        match path {
            [] => false,
            [pe] => self.members.contains(pe),
            [pe, rest @ ..] => self.children.get(pe).is_some_and(|c| c.contains(rest)),
        }
    }

    /// Whether `pe` is a member (a path ending here).
    pub fn has_member(&self, pe: &PathElement) -> bool {
        self.members.contains(pe)
    }

    /// The subtree under `pe`.
    pub fn child(&self, pe: &PathElement) -> Option<&FieldSet> {
        self.children.get(pe)
    }

    /// Members at this level.
    pub fn members(&self) -> impl Iterator<Item = &PathElement> {
        self.members.iter()
    }

    /// Subtrees at this level.
    pub fn children(&self) -> impl Iterator<Item = (&PathElement, &FieldSet)> {
        self.children.iter()
    }

    /// Every path in the set, sorted.
    pub fn paths(&self) -> Vec<Vec<PathElement>> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out);
        out.sort();
        out
    }

    fn collect(&self, prefix: &mut Vec<PathElement>, out: &mut Vec<Vec<PathElement>>) {
        for m in &self.members {
            prefix.push(m.clone());
            out.push(prefix.clone());
            prefix.pop();
        }
        for (pe, c) in &self.children {
            prefix.push(pe.clone());
            c.collect(prefix, out);
            prefix.pop();
        }
    }

    /// Paths in either set.
    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.members.extend(other.members.iter().cloned());
        for (pe, c) in &other.children {
            let merged = match out.children.get(pe) {
                Some(mine) => mine.union(c),
                None => c.clone(),
            };
            out.children.insert(pe.clone(), merged);
        }
        out
    }

    /// Paths in both sets.
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet::new();
        out.members = self.members.intersection(&other.members).cloned().collect();
        for (pe, c) in &self.children {
            if let Some(o) = other.children.get(pe) {
                let i = c.intersection(o);
                if !i.is_empty() {
                    out.children.insert(pe.clone(), i);
                }
            }
        }
        out
    }

    /// Paths in `self` but not in `other` (a member of `other` does not remove the paths
    /// below it).
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet::new();
        out.members = self.members.difference(&other.members).cloned().collect();
        for (pe, c) in &self.children {
            let d = match other.children.get(pe) {
                Some(o) => c.difference(o),
                None => c.clone(),
            };
            if !d.is_empty() {
                out.children.insert(pe.clone(), d);
            }
        }
        out
    }

    /// Paths in `self` not in `other` and not below a member of `other`.
    pub fn recursive_difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet::new();
        out.members = self.members.difference(&other.members).cloned().collect();
        for (pe, c) in &self.children {
            if other.members.contains(pe) {
                continue;
            }
            let d = match other.children.get(pe) {
                Some(o) => c.recursive_difference(o),
                None => c.clone(),
            };
            if !d.is_empty() {
                out.children.insert(pe.clone(), d);
            }
        }
        out
    }

    /// The `fieldsV1` JSON form.
    pub fn to_json(&self) -> Value {
        let mut out = Map::new();
        let keys: BTreeSet<&PathElement> =
            self.members.iter().chain(self.children.keys()).collect();
        for pe in keys {
            let mut inner = Map::new();
            if let Some(c) = self.children.get(pe) {
                if self.members.contains(pe) {
                    inner.insert(".".to_string(), Value::Object(Map::new()));
                }
                if let Value::Object(m) = c.to_json() {
                    inner.extend(m);
                }
            }
            out.insert(pe.encode(), Value::Object(inner));
        }
        Value::Object(out)
    }

    /// Parses the `fieldsV1` JSON form.
    pub fn from_json(v: &Value) -> Result<FieldSet, FieldSetError> {
        let Value::Object(m) = v else {
            return Err(FieldSetError("fieldsV1 must be an object".to_string()));
        };
        let mut out = FieldSet::new();
        for (k, inner) in m {
            if k == "." {
                continue;
            }
            let pe = PathElement::decode(k)?;
            let Value::Object(im) = inner else {
                return Err(FieldSetError(format!("value of {k:?} must be an object")));
            };
            if im.is_empty() || im.contains_key(".") {
                out.members.insert(pe.clone());
            }
            let c = FieldSet::from_json(inner)?;
            if !c.is_empty() {
                out.children.insert(pe, c);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(s: &str) -> PathElement {
        PathElement::Field(s.to_string())
    }

    #[test]
    fn json_round_trip() {
        let doc = json!({
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {
                "f:containers": {"k:{\"name\":\"nginx\"}": {".": {}, "f:image": {}, "f:name": {}}},
                "f:finalizers": {"v:\"a\"": {}},
                "f:replicas": {}
            }
        });
        let set = FieldSet::from_json(&doc).unwrap();
        assert_eq!(set.to_json(), doc);
        let nginx = PathElement::Key("{\"name\":\"nginx\"}".into());
        assert!(set.contains(&[f("spec"), f("containers"), nginx.clone()]));
        assert!(set.contains(&[f("spec"), f("containers"), nginx.clone(), f("image")]));
        assert!(!set.contains(&[f("spec"), f("containers")]));
        let paths: Vec<String> = set.paths().iter().map(|p| path_string(p)).collect();
        assert_eq!(
            paths,
            vec![
                ".metadata.labels.app",
                ".spec.containers[name=\"nginx\"]",
                ".spec.containers[name=\"nginx\"].image",
                ".spec.containers[name=\"nginx\"].name",
                ".spec.finalizers[=\"a\"]",
                ".spec.replicas",
            ]
        );
        for bad in [
            json!([]),
            json!({"x:y": {}}),
            json!({"f:a": 1}),
            json!({"k:[1]": {}}),
        ] {
            assert!(FieldSet::from_json(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn set_operations() {
        let mut a = FieldSet::new();
        a.insert(&[f("spec"), f("replicas")]);
        a.insert(&[f("spec"), f("paused")]);
        a.insert(&[f("metadata")]);
        let mut b = FieldSet::new();
        b.insert(&[f("spec"), f("replicas")]);
        b.insert(&[f("spec"), f("x")]);
        b.insert(&[f("metadata"), f("labels")]);
        assert_eq!(a.union(&b).paths().len(), 5);
        assert_eq!(
            a.intersection(&b).paths(),
            vec![vec![f("spec"), f("replicas")]]
        );
        assert_eq!(
            a.difference(&b).paths(),
            vec![vec![f("metadata")], vec![f("spec"), f("paused")]]
        );
        assert_eq!(
            b.recursive_difference(&a).paths(),
            vec![vec![f("spec"), f("x")]]
        );
        assert!(a.difference(&a).is_empty());
    }
}
