//! Custom resources: Table columns from a CRD version's
//! `additionalPrinterColumns`, evaluated with a small JSONPath subset.
//!
//! Supported paths (what CRDs use in practice): `.a.b`, `['a.b']`, `a\.b`
//! escapes, `[0]`, `[-1]`, `[*]`, `.*`, `..name` and filters such as
//! `[?(@.type=="Ready")]` (`==`, `!=`, `<`, `<=`, `>`, `>=`, or plain `@.x`
//! existence). As upstream, missing keys are not errors: the cell is null,
//! and only the first result of a path is printed.

use jiff::Timestamp;
use serde_json::Value;

use crate::duration::human_duration;
use crate::util::{int_at, name, str_at};
use crate::{AGE_DESC, ColumnOwned, NAME};

/// The printer of one custom resource version.
#[derive(Clone, Debug)]
pub struct CustomColumns {
    /// Name first, then one column per printer column.
    pub columns: Vec<ColumnOwned>,
    /// Why a printer column's jsonPath could not be parsed (its cells are null).
    pub errors: Vec<String>,
    paths: Vec<Option<Vec<Step>>>,
}

/// Builds the printer of a CRD version from its `additionalPrinterColumns`.
/// With no printer columns, upstream's default applies: an Age column
/// (`.metadata.creationTimestamp`, type date).
pub fn custom_columns(additional_printer_columns: &Value) -> CustomColumns {
    let defs: Vec<Value> = match additional_printer_columns.as_array() {
        Some(a) if !a.is_empty() => a.clone(),
        _ => vec![serde_json::json!({
            "name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp", "description": AGE_DESC,
        })],
    };
    let mut out = CustomColumns {
        columns: vec![NAME.into()],
        errors: Vec::new(),
        paths: Vec::new(),
    };
    for def in &defs {
        let json_path = str_at(def, "/jsonPath");
        let description = match str_at(def, "/description") {
            "" => format!("Custom resource definition column (in JSONPath format): {json_path}"),
            d => d.to_string(),
        };
        let path = match parse(json_path) {
            Ok(p) => Some(p),
            Err(e) => {
                out.errors
                    .push(format!("unrecognized column definition {json_path:?}: {e}"));
                None
            }
        };
        out.paths.push(path);
        out.columns.push(ColumnOwned {
            name: str_at(def, "/name").to_string(),
            type_: str_at(def, "/type").to_string(),
            format: str_at(def, "/format").to_string(),
            description,
            priority: i32::try_from(int_at(def, "/priority")).unwrap_or(0),
        });
    }
    out
}

impl CustomColumns {
    /// The cells of one object, one per column. `date` columns are rendered
    /// as a human duration since the timestamp (`<invalid>` if unparseable).
    pub fn cells(&self, obj: &Value, now: Timestamp) -> Vec<Value> {
        let mut cells = vec![name(obj)];
        for (path, column) in self.paths.iter().zip(&self.columns[1..]) {
            let first = path.as_ref().and_then(|p| eval(p, obj).into_iter().next());
            cells.push(match first {
                None => Value::Null,
                Some(v) => cell(&column.type_, v, now),
            });
        }
        cells
    }

    /// `columnDefinitions` for the Table.
    pub fn column_definitions_json(&self) -> Value {
        crate::owned_column_definitions_json(&self.columns)
    }
}

fn cell(type_: &str, v: &Value, now: Timestamp) -> Value {
    match (type_, v) {
        (_, Value::Null) => Value::Null,
        ("string", Value::String(_)) => v.clone(),
        ("string", other) => Value::from(other.to_string()),
        ("integer", Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .map_or(Value::Null, Value::from),
        ("number", Value::Number(n)) => n.as_f64().map_or(Value::Null, Value::from),
        ("boolean", Value::Bool(_)) => v.clone(),
        ("date", Value::String(s)) => match s.parse::<Timestamp>() {
            Ok(t) => Value::from(human_duration(now.duration_since(t))),
            Err(_) => Value::from("<invalid>"),
        },
        _ => Value::Null,
    }
}

/// One JSONPath step.
#[derive(Clone, Debug, PartialEq)]
enum Step {
    Field(String),
    Recursive(String),
    Index(i64),
    Wildcard,
    Filter(Filter),
}

#[derive(Clone, Debug, PartialEq)]
struct Filter {
    path: Vec<Step>,
    op: Option<(Op, Value)>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// Parses a path like `.status.conditions[?(@.type=="Ready")].status`.
fn parse(path: &str) -> Result<Vec<Step>, String> {
    let mut p = path.trim();
    if let Some(inner) = p.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
        p = inner.trim();
    }
    p = p.strip_prefix('$').unwrap_or(p);
    let chars: Vec<char> = p.chars().collect();
    let mut steps = Vec::new();
    let mut i = 0;
    // A leading bare name is allowed (`spec.replicas`).
    if chars.first().is_some_and(|c| *c != '.' && *c != '[') {
        let (name, next) = read_name(&chars, 0);
        steps.push(Step::Field(name));
        i = next;
    }
    while i < chars.len() {
        match chars[i] {
            '.' if chars.get(i + 1) == Some(&'.') => {
                let (name, next) = read_name(&chars, i + 2);
                if name.is_empty() {
                    return Err(format!("empty name after '..' at {i}"));
                }
                steps.push(Step::Recursive(name));
                i = next;
            }
            '.' => {
                if chars.get(i + 1) == Some(&'*') {
                    steps.push(Step::Wildcard);
                    i += 2;
                    continue;
                }
                let (name, next) = read_name(&chars, i + 1);
                if !name.is_empty() {
                    steps.push(Step::Field(name));
                }
                i = next;
            }
            '[' => {
                let end = matching_bracket(&chars, i).ok_or("unclosed '['")?;
                let inner: String = chars[i + 1..end].iter().collect();
                steps.push(parse_bracket(inner.trim())?);
                i = end + 1;
            }
            c => return Err(format!("unexpected {c:?} at {i}")),
        }
    }
    Ok(steps)
}

/// Reads a field name up to `.` or `[`, honouring `\.` escapes.
fn read_name(chars: &[char], mut i: usize) -> (String, usize) {
    let mut name = String::new();
    while i < chars.len() {
        match chars[i] {
            '\\' if i + 1 < chars.len() => {
                name.push(chars[i + 1]);
                i += 2;
            }
            '.' | '[' => break,
            c => {
                name.push(c);
                i += 1;
            }
        }
    }
    (name, i)
}

/// Index of the `]` closing the `[` at `open`, skipping quoted text and nesting.
fn matching_bracket(chars: &[char], open: usize) -> Option<usize> {
    let mut depth = 0;
    let mut quote: Option<char> = None;
    for (i, &c) in chars.iter().enumerate().skip(open) {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '[') => depth += 1,
            (None, ']') => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

fn unquote(s: &str) -> Option<&str> {
    let s = s.trim();
    s.strip_prefix('\'')
        .and_then(|r| r.strip_suffix('\''))
        .or_else(|| s.strip_prefix('"').and_then(|r| r.strip_suffix('"')))
}

fn parse_bracket(inner: &str) -> Result<Step, String> {
    if inner == "*" {
        return Ok(Step::Wildcard);
    }
    if let Some(key) = unquote(inner) {
        return Ok(Step::Field(key.to_string()));
    }
    if let Ok(n) = inner.parse::<i64>() {
        return Ok(Step::Index(n));
    }
    let expr = inner
        .strip_prefix("?(")
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("unsupported subscript [{inner}]"))?
        .trim();
    let ops = [
        ("==", Op::Eq),
        ("!=", Op::Ne),
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("<", Op::Lt),
        (">", Op::Gt),
    ];
    let (lhs, op) = match ops
        .iter()
        .find_map(|(s, op)| expr.find(s).map(|at| (at, s, op)))
    {
        Some((at, s, op)) => {
            let rhs = expr[at + s.len()..].trim();
            let literal = match unquote(rhs) {
                Some(text) => Value::from(text),
                None => serde_json::from_str(rhs).map_err(|_| format!("bad literal {rhs:?}"))?,
            };
            (expr[..at].trim(), Some((*op, literal)))
        }
        None => (expr, None),
    };
    let rel = lhs
        .strip_prefix('@')
        .ok_or_else(|| format!("filter must start with '@': {lhs:?}"))?;
    Ok(Step::Filter(Filter {
        path: if rel.is_empty() {
            Vec::new()
        } else {
            parse(rel)?
        },
        op,
    }))
}

fn eval<'a>(steps: &[Step], root: &'a Value) -> Vec<&'a Value> {
    let mut current = vec![root];
    for step in steps {
        let mut next = Vec::new();
        for v in current {
            apply(step, v, &mut next);
        }
        current = next;
    }
    current
}

fn apply<'a>(step: &Step, v: &'a Value, out: &mut Vec<&'a Value>) {
    match step {
        Step::Field(name) => out.extend(v.get(name.as_str())),
        Step::Index(i) => {
            if let Some(a) = v.as_array() {
                let len = a.len() as i64;
                let idx = if *i < 0 { len + i } else { *i };
                if (0..len).contains(&idx) {
                    out.extend(a.get(idx as usize));
                }
            }
        }
        Step::Wildcard => match v {
            Value::Array(a) => out.extend(a.iter()),
            Value::Object(m) => out.extend(m.values()),
            _ => {}
        },
        Step::Recursive(name) => recurse(name, v, out),
        Step::Filter(f) => {
            if let Some(a) = v.as_array() {
                out.extend(a.iter().filter(|item| matches(f, item)));
            }
        }
    }
}

fn recurse<'a>(name: &str, v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Object(m) => {
            out.extend(m.get(name));
            for child in m.values() {
                recurse(name, child, out);
            }
        }
        Value::Array(a) => {
            for child in a {
                recurse(name, child, out);
            }
        }
        _ => {}
    }
}

fn matches(f: &Filter, item: &Value) -> bool {
    let found = eval(&f.path, item);
    let Some((op, literal)) = &f.op else {
        return found.first().is_some_and(|v| !v.is_null());
    };
    let Some(lhs) = found.first() else {
        return false;
    };
    let ordering = match (lhs, literal) {
        (Value::Number(a), Value::Number(b)) => a
            .as_f64()
            .zip(b.as_f64())
            .and_then(|(a, b)| a.partial_cmp(&b)),
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        (a, b) => (*a == b).then_some(std::cmp::Ordering::Equal),
    };
    match op {
        Op::Eq => ordering == Some(std::cmp::Ordering::Equal),
        Op::Ne => ordering != Some(std::cmp::Ordering::Equal),
        Op::Lt => ordering == Some(std::cmp::Ordering::Less),
        Op::Le => matches!(
            ordering,
            Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)
        ),
        Op::Gt => ordering == Some(std::cmp::Ordering::Greater),
        Op::Ge => matches!(
            ordering,
            Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{ago, now};
    use serde_json::json;

    fn object() -> Value {
        json!({
            "metadata": {"name": "ct", "creationTimestamp": ago(200),
                "labels": {"app.kubernetes.io/name": "cron"}},
            "spec": {"replicas": 3, "ratio": 1.5, "paused": true, "cronSpec": "* * * * */5",
                "tags": ["a", "b", "c"], "nested": {"k": 1}},
            "status": {"conditions": [
                {"type": "Synced", "status": "True", "lastTransitionTime": ago(60)},
                {"type": "Ready", "status": "False", "observedGeneration": 2}]}
        })
    }

    #[test]
    fn json_paths() {
        let obj = object();
        for (path, expect) in [
            (".spec.replicas", json!([3])),
            ("spec.replicas", json!([3])),
            ("{.spec.cronSpec}", json!(["* * * * */5"])),
            ("$.spec.tags[1]", json!(["b"])),
            (".spec.tags[-1]", json!(["c"])),
            (".spec.tags[*]", json!(["a", "b", "c"])),
            (".spec.tags[9]", json!([])),
            (".spec.missing.deeper", json!([])),
            (
                ".status.conditions[?(@.type==\"Ready\")].status",
                json!(["False"]),
            ),
            (
                ".status.conditions[?(@.type=='Synced')].status",
                json!(["True"]),
            ),
            (
                ".status.conditions[?(@.type!=\"Synced\")].type",
                json!(["Ready"]),
            ),
            (
                ".status.conditions[?(@.observedGeneration>=2)].type",
                json!(["Ready"]),
            ),
            (
                ".status.conditions[?(@.observedGeneration)].type",
                json!(["Ready"]),
            ),
            (
                ".metadata.labels.app\\.kubernetes\\.io/name",
                json!(["cron"]),
            ),
            (
                ".metadata.labels['app.kubernetes.io/name']",
                json!(["cron"]),
            ),
            ("..observedGeneration", json!([2])),
            (".spec.nested.*", json!([1])),
        ] {
            let steps = parse(path).unwrap_or_else(|e| panic!("{path}: {e}"));
            let got: Vec<Value> = eval(&steps, &obj).into_iter().cloned().collect();
            assert_eq!(Value::Array(got), expect, "{path}");
        }
        for bad in [".a[", ".a[?(x==1)]", ".a[foo]", ".a[1:x]", ".a[?(@.b==x)]"] {
            assert!(parse(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn printer_columns() {
        let apc = json!([
            {"name": "Spec", "type": "string", "jsonPath": ".spec.cronSpec"},
            {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas", "description": "How many"},
            {"name": "Ratio", "type": "number", "jsonPath": ".spec.ratio", "priority": 1},
            {"name": "Paused", "type": "boolean", "jsonPath": ".spec.paused"},
            {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"},
            {"name": "Tags", "type": "string", "jsonPath": ".spec.tags"},
            {"name": "Count", "type": "string", "jsonPath": ".spec.replicas"},
            {"name": "Missing", "type": "string", "jsonPath": ".status.nothing"},
            {"name": "WrongType", "type": "integer", "jsonPath": ".spec.cronSpec"},
            {"name": "Synced", "type": "date", "jsonPath": ".status.conditions[0].lastTransitionTime"},
            {"name": "BadDate", "type": "date", "jsonPath": ".spec.cronSpec"},
            {"name": "Broken", "type": "string", "jsonPath": ".spec[oops"},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ]);
        let cc = custom_columns(&apc);
        assert_eq!(cc.columns.len(), 14);
        assert_eq!(cc.columns[0].name, "Name");
        assert_eq!(cc.columns[0].format, "name");
        assert_eq!(
            cc.columns[1].description,
            "Custom resource definition column (in JSONPath format): .spec.cronSpec"
        );
        assert_eq!(cc.columns[2].description, "How many");
        assert_eq!(cc.columns[3].priority, 1);
        assert_eq!(cc.errors.len(), 1);
        assert_eq!(
            Value::Array(cc.cells(&object(), now())),
            json!([
                "ct",
                "* * * * */5",
                3,
                1.5,
                true,
                "False",
                "[\"a\",\"b\",\"c\"]",
                "3",
                null,
                null,
                "60s",
                "<invalid>",
                null,
                "3m20s"
            ])
        );
        let defs = cc.column_definitions_json();
        assert_eq!(
            defs[2],
            json!({"name": "Replicas", "type": "integer", "format": "", "description": "How many", "priority": 0})
        );
        // Partial objects never panic and keep one cell per column.
        for obj in [json!(null), json!({}), json!({"spec": []})] {
            assert_eq!(cc.cells(&obj, now()).len(), cc.columns.len());
        }
    }

    #[test]
    fn default_age_column() {
        for apc in [json!(null), json!([])] {
            let cc = custom_columns(&apc);
            let names: Vec<&str> = cc.columns.iter().map(|c| c.name.as_str()).collect();
            assert_eq!(names, ["Name", "Age"]);
            assert_eq!(cc.columns[1].type_, "date");
            assert_eq!(cc.cells(&object(), now()), [json!("ct"), json!("3m20s")]);
        }
    }
}
