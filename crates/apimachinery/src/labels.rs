//! Label selectors (`k8s.io/apimachinery/pkg/labels`): the string form kubectl sends in
//! `?labelSelector=` (`a=b,c!=d,e in (x,y),!f`) and the `metav1.LabelSelector` object form used
//! in specs, with upstream's parse and validation error messages.
//!
//! A [`Selector`] is a conjunction of [`Requirement`]s, kept sorted by key as upstream does so
//! that [`Display`](std::fmt::Display) gives the canonical string.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use crate::validation::{go_quote, is_qualified_name, is_valid_label_value};

/// A selector parse or validation error, worded as upstream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(pub String);

/// A requirement's operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// `key in (a,b)`
    In,
    /// `key notin (a,b)`
    NotIn,
    /// `key=a`
    Equals,
    /// `key==a`
    DoubleEquals,
    /// `key!=a`
    NotEquals,
    /// `key`
    Exists,
    /// `!key`
    DoesNotExist,
    /// `key>1`
    GreaterThan,
    /// `key<1`
    LessThan,
}

/// One `key op values` term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    operator: Operator,
    /// Sorted and deduplicated, as upstream's string set.
    values: Vec<String>,
}

impl Requirement {
    /// Builds a requirement, validating the key, the values and their number as upstream's
    /// `NewRequirement` (errors are joined as a `field.ErrorList` aggregate).
    pub fn new(
        key: &str,
        operator: Operator,
        values: Vec<String>,
    ) -> Result<Requirement, SelectorError> {
        let mut errs = Vec::new();
        let key_errs = is_qualified_name(key);
        if !key_errs.is_empty() {
            errs.push(format!(
                "key: Invalid value: {}: {}",
                go_quote(key),
                key_errs.join("; ")
            ));
        }
        let show = || {
            format!(
                "[]string{{{}}}",
                values
                    .iter()
                    .map(|v| go_quote(v))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        match operator {
            Operator::In | Operator::NotIn if values.is_empty() => errs.push(format!(
                "values: Invalid value: {}: for 'in', 'notin' operators, values set can't be empty",
                show()
            )),
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals
                if values.len() != 1 =>
            {
                errs.push(format!(
                    "values: Invalid value: {}: exact-match compatibility requires one single value",
                    show()
                ))
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => errs.push(format!(
                "values: Invalid value: {}: values set must be empty for exists and does not exist",
                show()
            )),
            Operator::GreaterThan | Operator::LessThan => {
                if values.len() != 1 {
                    errs.push(format!(
                        "values: Invalid value: {}: for 'Gt', 'Lt' operators, exactly one value is required",
                        show()
                    ));
                }
                for (i, v) in values.iter().enumerate() {
                    if v.parse::<i64>().is_err() {
                        errs.push(format!(
                            "values[{i}]: Invalid value: {}: for 'Gt', 'Lt' operators, the value must be an integer",
                            go_quote(v)
                        ));
                    }
                }
            }
            _ => {}
        }
        for (i, v) in values.iter().enumerate() {
            let e = is_valid_label_value(v);
            if !e.is_empty() {
                errs.push(format!(
                    "values[{i}][{key}]: Invalid value: {}: {}",
                    go_quote(v),
                    e.join("; ")
                ));
            }
        }
        if !errs.is_empty() {
            return Err(SelectorError(aggregate(errs)));
        }
        let mut values = values;
        values.sort();
        values.dedup();
        Ok(Requirement {
            key: key.to_string(),
            operator,
            values,
        })
    }

    /// The label key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The operator.
    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The values, sorted.
    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Whether labels (looked up by `get`) satisfy this requirement.
    pub fn matches<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> bool {
        let has = |v: &str| self.values.iter().any(|x| x == v);
        match self.operator {
            Operator::In | Operator::Equals | Operator::DoubleEquals => {
                get(&self.key).is_some_and(has)
            }
            Operator::NotIn | Operator::NotEquals => get(&self.key).is_none_or(|v| !has(v)),
            Operator::Exists => get(&self.key).is_some(),
            Operator::DoesNotExist => get(&self.key).is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let Some(Ok(have)) = get(&self.key).map(str::parse::<i64>) else {
                    return false;
                };
                let Some(Ok(want)) = self.values.first().map(|v| v.parse::<i64>()) else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.operator == Operator::DoesNotExist {
            f.write_str("!")?;
        }
        f.write_str(&self.key)?;
        let op = match self.operator {
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => " in ",
            Operator::NotIn => " notin ",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
            Operator::Exists | Operator::DoesNotExist => return Ok(()),
        };
        f.write_str(op)?;
        if matches!(self.operator, Operator::In | Operator::NotIn) {
            write!(f, "({})", self.values.join(","))
        } else {
            f.write_str(&self.values.join(","))
        }
    }
}

fn aggregate(errs: Vec<String>) -> String {
    if errs.len() == 1 {
        errs.into_iter().next().unwrap_or_default()
    } else {
        format!("[{}]", errs.join(", "))
    }
}

/// A label selector: every requirement must hold. `nothing` selects no object at all (a null
/// `metav1.LabelSelector`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selector {
    requirements: Vec<Requirement>,
    nothing: bool,
}

impl Selector {
    /// The selector that matches every object.
    pub fn everything() -> Selector {
        Selector::default()
    }

    /// The selector that matches no object.
    pub fn nothing() -> Selector {
        Selector {
            requirements: Vec::new(),
            nothing: true,
        }
    }

    /// Builds a selector from requirements (sorted by key).
    pub fn from_requirements(mut requirements: Vec<Requirement>) -> Selector {
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Selector {
            requirements,
            nothing: false,
        }
    }

    /// Parses the string form (`labels.Parse`).
    pub fn parse(s: &str) -> Result<Selector, SelectorError> {
        let tokens = lex(s);
        let requirements = Parser { tokens, pos: 0 }.parse()?;
        Ok(Selector::from_requirements(requirements))
    }

    /// Converts a `metav1.LabelSelector` (`LabelSelectorAsSelector`): null selects nothing, an
    /// empty selector everything.
    pub fn from_label_selector(v: &Value) -> Result<Selector, SelectorError> {
        let obj = match v {
            Value::Null => return Ok(Selector::nothing()),
            Value::Object(o) => o,
            _ => {
                return Err(SelectorError(
                    "label selector must be an object".to_string(),
                ));
            }
        };
        let mut reqs = Vec::new();
        match obj.get("matchLabels") {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) => {
                for (k, v) in m {
                    let v = v.as_str().ok_or_else(|| {
                        SelectorError(format!("matchLabels.{k}: value must be a string"))
                    })?;
                    reqs.push(Requirement::new(k, Operator::Equals, vec![v.to_string()])?);
                }
            }
            Some(_) => {
                return Err(SelectorError("matchLabels must be an object".to_string()));
            }
        }
        match obj.get("matchExpressions") {
            None | Some(Value::Null) => {}
            Some(Value::Array(exprs)) => {
                for e in exprs {
                    let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
                    let op_str = e
                        .get("operator")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    let op = match op_str {
                        "In" => Operator::In,
                        "NotIn" => Operator::NotIn,
                        "Exists" => Operator::Exists,
                        "DoesNotExist" => Operator::DoesNotExist,
                        other => {
                            return Err(SelectorError(format!(
                                "{} is not a valid label selector operator",
                                go_quote(other)
                            )));
                        }
                    };
                    let values = match e.get("values") {
                        None | Some(Value::Null) => Vec::new(),
                        Some(Value::Array(vs)) => vs
                            .iter()
                            .map(|v| v.as_str().map(str::to_string))
                            .collect::<Option<Vec<_>>>()
                            .ok_or_else(|| {
                                SelectorError("matchExpressions values must be strings".into())
                            })?,
                        Some(_) => {
                            return Err(SelectorError(
                                "matchExpressions values must be a list".to_string(),
                            ));
                        }
                    };
                    reqs.push(Requirement::new(key, op, values)?);
                }
            }
            Some(_) => {
                return Err(SelectorError("matchExpressions must be a list".to_string()));
            }
        }
        Ok(Selector::from_requirements(reqs))
    }

    /// Whether the selector has no requirements (matches everything, unless `nothing`).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether this selector matches nothing.
    pub fn is_nothing(&self) -> bool {
        self.nothing
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Whether labels, looked up by `get`, satisfy every requirement.
    pub fn matches<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(&get))
    }

    /// [`Selector::matches`] over a map of labels.
    pub fn matches_map(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches(|k| labels.get(k).map(String::as_str))
    }

    /// [`Selector::matches`] over a JSON object of labels (e.g. `metadata.labels`; null or
    /// absent means no labels).
    pub fn matches_json(&self, labels: Option<&Value>) -> bool {
        let map = labels.and_then(Value::as_object);
        self.matches(|k| map.and_then(|m| m.get(k)).and_then(Value::as_str))
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Identifier(String),
    In,
    NotIn,
    DoesNotExist,
    Equals,
    DoubleEquals,
    NotEquals,
    GreaterThan,
    LessThan,
    Comma,
    OpenPar,
    ClosedPar,
    EndOfString,
}

impl Token {
    fn literal(&self) -> &str {
        match self {
            Token::Identifier(s) => s,
            Token::In => "in",
            Token::NotIn => "notin",
            Token::DoesNotExist => "!",
            Token::Equals => "=",
            Token::DoubleEquals => "==",
            Token::NotEquals => "!=",
            Token::GreaterThan => ">",
            Token::LessThan => "<",
            Token::Comma => ",",
            Token::OpenPar => "(",
            Token::ClosedPar => ")",
            Token::EndOfString => "",
        }
    }
}

fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

fn symbol(s: &str) -> Option<Token> {
    Some(match s {
        "!" => Token::DoesNotExist,
        "!=" => Token::NotEquals,
        "=" => Token::Equals,
        "==" => Token::DoubleEquals,
        ">" => Token::GreaterThan,
        "<" => Token::LessThan,
        "," => Token::Comma,
        "(" => Token::OpenPar,
        ")" => Token::ClosedPar,
        _ => return None,
    })
}

fn lex(s: &str) -> Vec<Token> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if matches!(c, ' ' | '\t' | '\r' | '\n') {
            i += 1;
        } else if is_special(c) {
            // Longest run of symbol characters that still forms a token.
            let mut best = None;
            let mut j = i;
            while j < chars.len() && is_special(chars[j]) {
                let cand: String = chars[i..=j].iter().collect();
                match symbol(&cand) {
                    Some(t) => best = Some((t, j + 1)),
                    None if best.is_some() => break,
                    None => {}
                }
                j += 1;
            }
            // Every single symbol character is a token, so `best` is always set.
            let (t, end) = best.unwrap_or((Token::Comma, i + 1));
            out.push(t);
            i = end;
        } else {
            let start = i;
            // Upstream ends identifiers only at its own whitespace set; other Unicode spaces
            // are identifier characters (and the loop always advances past `start`).
            while i < chars.len()
                && !is_special(chars[i])
                && !matches!(chars[i], ' ' | '\t' | '\r' | '\n')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            out.push(match word.as_str() {
                "in" => Token::In,
                "notin" => Token::NotIn,
                _ => Token::Identifier(word),
            });
        }
    }
    out.push(Token::EndOfString);
    out
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

/// Where a token is read: among values, the keywords `in`/`notin` are plain identifiers.
#[derive(PartialEq, Clone, Copy)]
enum Ctx {
    KeyAndOperator,
    Values,
}

impl Parser {
    fn lookahead(&self, ctx: Ctx) -> Token {
        let t = self
            .tokens
            .get(self.pos)
            .cloned()
            .unwrap_or(Token::EndOfString);
        match (ctx, t) {
            (Ctx::Values, Token::In) => Token::Identifier("in".into()),
            (Ctx::Values, Token::NotIn) => Token::Identifier("notin".into()),
            (_, t) => t,
        }
    }

    fn consume(&mut self, ctx: Ctx) -> Token {
        let t = self.lookahead(ctx);
        if self.pos < self.tokens.len() {
            self.pos += 1;
        }
        t
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut reqs = Vec::new();
        loop {
            match self.lookahead(Ctx::Values) {
                Token::Identifier(_) | Token::DoesNotExist => {
                    let r = self.parse_requirement().map_err(|e| {
                        SelectorError(format!("unable to parse requirement: {}", e.0))
                    })?;
                    reqs.push(r);
                    match self.consume(Ctx::Values) {
                        Token::EndOfString => return Ok(reqs),
                        Token::Comma => {
                            let t = self.lookahead(Ctx::Values);
                            if !matches!(t, Token::Identifier(_) | Token::DoesNotExist) {
                                return Err(SelectorError(format!(
                                    "found '{}', expected: identifier after ','",
                                    t.literal()
                                )));
                            }
                        }
                        t => {
                            return Err(SelectorError(format!(
                                "found '{}', expected: ',' or 'end of string'",
                                t.literal()
                            )));
                        }
                    }
                }
                Token::EndOfString => return Ok(reqs),
                t => {
                    return Err(SelectorError(format!(
                        "found '{}', expected: !, identifier, or 'end of string'",
                        t.literal()
                    )));
                }
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement, SelectorError> {
        let (key, op) = self.parse_key_and_infer_operator()?;
        if let Some(op @ (Operator::Exists | Operator::DoesNotExist)) = op {
            return Requirement::new(&key, op, Vec::new());
        }
        let op = self.parse_operator()?;
        let values = match op {
            Operator::In | Operator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        Requirement::new(&key, op, values)
    }

    fn parse_key_and_infer_operator(
        &mut self,
    ) -> Result<(String, Option<Operator>), SelectorError> {
        let mut op = None;
        let mut t = self.consume(Ctx::Values);
        if t == Token::DoesNotExist {
            op = Some(Operator::DoesNotExist);
            t = self.consume(Ctx::Values);
        }
        let Token::Identifier(key) = t else {
            return Err(SelectorError(format!(
                "found '{}', expected: identifier",
                t.literal()
            )));
        };
        let errs = is_qualified_name(&key);
        if !errs.is_empty() {
            return Err(SelectorError(format!(
                "<nil>: Invalid value: {}: {}",
                go_quote(&key),
                errs.join("; ")
            )));
        }
        if matches!(
            self.lookahead(Ctx::Values),
            Token::EndOfString | Token::Comma
        ) && op.is_none()
        {
            op = Some(Operator::Exists);
        }
        Ok((key, op))
    }

    fn parse_operator(&mut self) -> Result<Operator, SelectorError> {
        Ok(match self.consume(Ctx::KeyAndOperator) {
            Token::In => Operator::In,
            Token::NotIn => Operator::NotIn,
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::NotEquals => Operator::NotEquals,
            Token::GreaterThan => Operator::GreaterThan,
            Token::LessThan => Operator::LessThan,
            t => {
                return Err(SelectorError(format!(
                    "found '{}', expected: in, notin, =, ==, !=, gt, lt",
                    t.literal()
                )));
            }
        })
    }

    fn parse_values(&mut self) -> Result<Vec<String>, SelectorError> {
        let t = self.consume(Ctx::Values);
        if t != Token::OpenPar {
            return Err(SelectorError(format!(
                "found '{}' expected: '('",
                t.literal()
            )));
        }
        let t = self.lookahead(Ctx::Values);
        match t {
            Token::Identifier(_) | Token::Comma => {
                let s = self.parse_identifiers_list()?;
                if self.consume(Ctx::Values) != Token::ClosedPar {
                    return Err(SelectorError(format!(
                        "found '{}', expected: ')'",
                        t.literal()
                    )));
                }
                Ok(s)
            }
            Token::ClosedPar => {
                self.consume(Ctx::Values);
                Ok(vec![String::new()])
            }
            t => Err(SelectorError(format!(
                "found '{}', expected: ',', ')' or identifier",
                t.literal()
            ))),
        }
    }

    fn parse_identifiers_list(&mut self) -> Result<Vec<String>, SelectorError> {
        let mut s: Vec<String> = Vec::new();
        loop {
            match self.consume(Ctx::Values) {
                Token::Identifier(v) => {
                    s.push(v);
                    match self.lookahead(Ctx::Values) {
                        Token::Comma => continue,
                        Token::ClosedPar => return Ok(s),
                        t => {
                            return Err(SelectorError(format!(
                                "found '{}', expected: ',' or ')'",
                                t.literal()
                            )));
                        }
                    }
                }
                Token::Comma => {
                    // `(,a`, `a,)` and `a,,b` stand for empty values.
                    if s.is_empty() {
                        s.push(String::new());
                    }
                    match self.lookahead(Ctx::Values) {
                        Token::ClosedPar => {
                            s.push(String::new());
                            return Ok(s);
                        }
                        Token::Comma => {
                            self.consume(Ctx::Values);
                            s.push(String::new());
                        }
                        _ => {}
                    }
                }
                t => {
                    return Err(SelectorError(format!(
                        "found '{}', expected: ',', or identifier",
                        t.literal()
                    )));
                }
            }
        }
    }

    fn parse_exact_value(&mut self) -> Result<Vec<String>, SelectorError> {
        if matches!(
            self.lookahead(Ctx::Values),
            Token::EndOfString | Token::Comma
        ) {
            return Ok(vec![String::new()]);
        }
        match self.consume(Ctx::Values) {
            Token::Identifier(v) => Ok(vec![v]),
            t => Err(SelectorError(format!(
                "found '{}', expected: identifier",
                t.literal()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Parses `input` and checks its canonical string form.
    fn check(input: &str, canonical: &str) {
        let s = Selector::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(s.to_string(), canonical, "{input}");
        // The canonical form parses back to the same selector.
        assert_eq!(Selector::parse(canonical).unwrap(), s);
    }

    fn check_err(input: &str, msg: &str) {
        let e = Selector::parse(input).unwrap_err();
        assert_eq!(e.0, msg, "{input}");
    }

    #[test]
    fn parses() {
        for (input, canonical) in [
            ("", ""),
            ("x=a", "x=a"),
            ("x==a", "x==a"),
            ("x!=a", "x!=a"),
            ("  x = a , y != b ", "x=a,y!=b"),
            ("y=b,x=a", "x=a,y=b"),
            ("x in (a, b)", "x in (a,b)"),
            ("x in (b,a,a)", "x in (a,b)"),
            ("x notin (a)", "x notin (a)"),
            ("x", "x"),
            ("!x", "!x"),
            ("x,!y", "x,!y"),
            ("x=", "x="),
            ("x in ()", "x in ()"),
            ("x in (in,notin)", "x in (in,notin)"),
            ("x>1", "x>1"),
            ("x<10", "x<10"),
            ("example.com/app=web", "example.com/app=web"),
            (
                "environment in (production, qa),tier notin (frontend)",
                "environment in (production,qa),tier notin (frontend)",
            ),
        ] {
            check(input, canonical);
        }
    }

    #[test]
    fn errors() {
        for (input, msg) in [
            ("x=a,", "found '', expected: identifier after ','"),
            (
                ",x",
                "found ',', expected: !, identifier, or 'end of string'",
            ),
            ("x=a b", "found 'b', expected: ',' or 'end of string'"),
            (
                "x in a",
                "unable to parse requirement: found 'a' expected: '('",
            ),
            (
                "x in (a",
                "unable to parse requirement: found '', expected: ',' or ')'",
            ),
            (
                "x (a)",
                "unable to parse requirement: found '(', expected: in, notin, =, ==, !=, gt, lt",
            ),
            (
                "x=(",
                "unable to parse requirement: found '(', expected: identifier",
            ),
            (
                "!=a",
                "found '!=', expected: !, identifier, or 'end of string'",
            ),
            (
                "!",
                "unable to parse requirement: found '', expected: identifier",
            ),
            (
                "x>a",
                "unable to parse requirement: values[0]: Invalid value: \"a\": for 'Gt', 'Lt' operators, the value must be an integer",
            ),
            (
                "a_=b",
                "unable to parse requirement: <nil>: Invalid value: \"a_\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
            ),
            (
                "a=b_",
                "unable to parse requirement: values[0][a]: Invalid value: \"b_\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
            ),
        ] {
            check_err(input, msg);
        }
    }

    #[test]
    fn matching() {
        let labels: BTreeMap<String, String> = [("app", "web"), ("tier", "fe"), ("n", "5")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for (sel, want) in [
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app=db", false),
            ("app!=db", true),
            ("missing!=x", true),
            ("app in (db, web)", true),
            ("app notin (web)", false),
            ("missing notin (web)", true),
            ("missing in (web)", false),
            ("app", true),
            ("!app", false),
            ("!missing", true),
            ("app=web,tier=fe", true),
            ("app=web,tier=be", false),
            ("n>4", true),
            ("n<5", false),
            ("app>1", false),
        ] {
            let s = Selector::parse(sel).unwrap();
            assert_eq!(s.matches_map(&labels), want, "{sel}");
        }
        assert!(!Selector::nothing().matches_map(&labels));
        assert!(Selector::everything().matches_map(&labels));
        assert!(Selector::everything().is_empty());
        let json = json!({"app": "web"});
        assert!(
            Selector::parse("app=web")
                .unwrap()
                .matches_json(Some(&json))
        );
        assert!(!Selector::parse("app").unwrap().matches_json(None));
    }

    #[test]
    fn label_selector_objects() {
        for (input, canonical) in [
            (json!({}), ""),
            (json!({"matchLabels": {"b": "2", "a": "1"}}), "a=1,b=2"),
            (
                json!({"matchLabels": {"app": "web"}, "matchExpressions": [
                    {"key": "tier", "operator": "In", "values": ["fe", "be"]},
                    {"key": "env", "operator": "NotIn", "values": ["dev"]},
                    {"key": "x", "operator": "Exists"},
                    {"key": "y", "operator": "DoesNotExist"}
                ]}),
                "app=web,env notin (dev),tier in (be,fe),x,!y",
            ),
        ] {
            assert_eq!(
                Selector::from_label_selector(&input).unwrap().to_string(),
                canonical
            );
        }
        assert!(
            Selector::from_label_selector(&Value::Null)
                .unwrap()
                .is_nothing()
        );
        for (input, msg) in [
            (
                json!({"matchExpressions": [{"key": "a", "operator": "Foo"}]}),
                "\"Foo\" is not a valid label selector operator",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}),
                "values: Invalid value: []string{}: for 'in', 'notin' operators, values set can't be empty",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}),
                "values: Invalid value: []string{\"x\"}: values set must be empty for exists and does not exist",
            ),
            (
                json!({"matchLabels": {"a": "-"}}),
                "values[0][a]: Invalid value: \"-\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
            ),
        ] {
            assert_eq!(Selector::from_label_selector(&input).unwrap_err().0, msg);
        }
    }
}
