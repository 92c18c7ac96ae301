//! Field selectors (`k8s.io/apimachinery/pkg/fields`): `metadata.name=x,status.phase!=Failed`
//! as sent in `?fieldSelector=`. Values may escape `\`, `,` and `=` with a backslash.
//!
//! This module does not know which fields a kind supports: the caller checks
//! [`Selector::requirements`] (or calls [`Selector::check_supported`]) and supplies the field
//! values to [`Selector::matches`].

use std::fmt;

/// A field selector error, worded as upstream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldSelectorError {
    /// A term with no operator, e.g. `metadata.name`.
    #[error("invalid selector: '{selector}'; can't understand '{term}'")]
    Invalid {
        /// The whole selector.
        selector: String,
        /// The offending term.
        term: String,
    },
    /// A backslash followed by something other than `\`, `,` or `=`.
    #[error("invalid field selector: invalid escape sequence: {0}")]
    InvalidEscapeSequence(String),
    /// An unescaped `,` or `=` in a value (upstream prints the rune as a number).
    #[error("invalid field selector: unescaped character in value: {}", *.0 as u32)]
    UnescapedRune(char),
    /// A field the kind does not support.
    #[error("field label not supported: {0}")]
    NotSupported(String),
}

/// `=`/`==` (equal) or `!=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// `=`
    Equals,
    /// `==`
    DoubleEquals,
    /// `!=`
    NotEquals,
}

/// One `field op value` term; `value` is unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// The field, e.g. `metadata.name`.
    pub field: String,
    /// The operator.
    pub operator: Operator,
    /// The value, unescaped.
    pub value: String,
}

/// A conjunction of field requirements, sorted as upstream sorts the terms.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

impl Selector {
    /// The selector that matches everything.
    pub fn everything() -> Selector {
        Selector::default()
    }

    /// Parses the string form (`fields.ParseSelector`).
    pub fn parse(selector: &str) -> Result<Selector, FieldSelectorError> {
        let mut terms = split_terms(selector);
        terms.sort();
        let mut requirements = Vec::new();
        for term in terms {
            if term.is_empty() {
                continue;
            }
            let Some((field, operator, rhs)) = split_term(term) else {
                return Err(FieldSelectorError::Invalid {
                    selector: selector.to_string(),
                    term: term.to_string(),
                });
            };
            requirements.push(Requirement {
                field: field.to_string(),
                operator,
                value: unescape_value(rhs)?,
            });
        }
        Ok(Selector { requirements })
    }

    /// Builds the selector `field=value` (`fields.OneTermEqualSelector`).
    pub fn one_term_equal(field: &str, value: &str) -> Selector {
        Selector {
            requirements: vec![Requirement {
                field: field.to_string(),
                operator: Operator::Equals,
                value: value.to_string(),
            }],
        }
    }

    /// The parsed terms.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Whether there are no terms.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The value the selector requires for `field` with `=`/`==`, if any
    /// (`RequiresExactMatch`), e.g. to narrow a list to one name or node.
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && r.operator != Operator::NotEquals)
            .map(|r| r.value.as_str())
    }

    /// Errs with `field label not supported: <name>` for the first field `supported` rejects.
    pub fn check_supported(
        &self,
        supported: impl Fn(&str) -> bool,
    ) -> Result<(), FieldSelectorError> {
        match self.requirements.iter().find(|r| !supported(&r.field)) {
            Some(r) => Err(FieldSelectorError::NotSupported(r.field.clone())),
            None => Ok(()),
        }
    }

    /// Whether an object satisfies every term; `get` returns a field's value (a missing
    /// field counts as the empty string, as upstream's `fields.Set`).
    pub fn matches(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.requirements.iter().all(|r| {
            let have = get(&r.field).unwrap_or_default();
            match r.operator {
                Operator::Equals | Operator::DoubleEquals => have == r.value,
                Operator::NotEquals => have != r.value,
            }
        })
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let op = match r.operator {
                Operator::NotEquals => "!=",
                _ => "=",
            };
            write!(f, "{}{op}{}", r.field, escape_value(&r.value))?;
        }
        Ok(())
    }
}

/// Escapes `\`, `,` and `=` in a value (`fields.EscapeValue`).
pub fn escape_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Undoes [`escape_value`], rejecting unknown escapes and bare `,`/`=` (`fields.UnescapeValue`).
pub fn unescape_value(s: &str) -> Result<String, FieldSelectorError> {
    let mut out = String::with_capacity(s.len());
    let mut in_slash = false;
    for c in s.chars() {
        if in_slash {
            if !matches!(c, '\\' | ',' | '=') {
                return Err(FieldSelectorError::InvalidEscapeSequence(format!("\\{c}")));
            }
            out.push(c);
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            ',' | '=' => return Err(FieldSelectorError::UnescapedRune(c)),
            c => out.push(c),
        }
    }
    if in_slash {
        return Err(FieldSelectorError::InvalidEscapeSequence("\\".to_string()));
    }
    Ok(out)
}

/// Splits on commas that are not escaped.
fn split_terms(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in s.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(&s[start..i]);
            start = i + 1;
        }
    }
    terms.push(&s[start..]);
    terms
}

/// Splits at the first operator (`!=`, `==`, `=`, tried in that order at each position).
fn split_term(term: &str) -> Option<(&str, Operator, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for (op, o) in [
            ("!=", Operator::NotEquals),
            ("==", Operator::DoubleEquals),
            ("=", Operator::Equals),
        ] {
            if let Some(value) = rest.strip_prefix(op) {
                return Some((&term[..i], o, value));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        for (input, canonical) in [
            ("", ""),
            ("metadata.name=x", "metadata.name=x"),
            ("metadata.name==x", "metadata.name=x"),
            (
                "status.phase!=Failed,metadata.name=a",
                "metadata.name=a,status.phase!=Failed",
            ),
            ("spec.nodeName=", "spec.nodeName="),
            (r"metadata.name=a\,b\=c\\d", r"metadata.name=a\,b\=c\\d"),
        ] {
            let s = Selector::parse(input).unwrap();
            assert_eq!(s.to_string(), canonical, "{input}");
        }
        let s = Selector::parse(r"metadata.name=a\,b").unwrap();
        assert_eq!(s.requirements()[0].value, "a,b");
        assert_eq!(s.requires_exact_match("metadata.name"), Some("a,b"));
    }

    #[test]
    fn errors() {
        for (input, msg) in [
            (
                "metadata.name",
                "invalid selector: 'metadata.name'; can't understand 'metadata.name'",
            ),
            (
                r"a=b\x",
                r"invalid field selector: invalid escape sequence: \x",
            ),
            (
                r"a=b\",
                r"invalid field selector: invalid escape sequence: \",
            ),
            (
                "a=b=c",
                "invalid field selector: unescaped character in value: 61",
            ),
        ] {
            assert_eq!(
                Selector::parse(input).unwrap_err().to_string(),
                msg,
                "{input}"
            );
        }
        let s = Selector::parse("metadata.name=a,spec.foo=b").unwrap();
        assert_eq!(
            s.check_supported(|f| f == "metadata.name")
                .unwrap_err()
                .to_string(),
            "field label not supported: spec.foo"
        );
    }

    #[test]
    fn matching() {
        let get = |f: &str| match f {
            "metadata.name" => Some("web".to_string()),
            "status.phase" => Some("Running".to_string()),
            _ => None,
        };
        for (sel, want) in [
            ("", true),
            ("metadata.name=web", true),
            ("metadata.name=db", false),
            ("status.phase!=Failed", true),
            ("status.phase!=Running", false),
            ("metadata.name=web,status.phase=Running", true),
            ("spec.nodeName=", true),
            ("spec.nodeName!=", false),
        ] {
            assert_eq!(Selector::parse(sel).unwrap().matches(get), want, "{sel}");
        }
    }
}
