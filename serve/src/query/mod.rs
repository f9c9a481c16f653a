//! Query strings, parsed by hand.
//!
//! A generic deserialiser would accept `seed=+5`, silently keep the last of two
//! `seed`s, ignore unknown names and replace bad UTF-8; here every such request is
//! refused with a message that names the parameter and what it accepts, so a typo
//! (`sed=42`) never turns into a random picture. This module splits and decodes;
//! [`values`] parses single values; one file per route says which names it takes.

mod generate;
mod interpolate;
pub mod values;

pub use generate::{parse_generate, ClassChoice, GenerateQuery, Seeds, GENERATE_PARAMS};
pub use interpolate::{parse_interpolate, InterpolateQuery, Start, INTERPOLATE_PARAMS};

use crate::limits::MAX_QUERY_BYTES;

/// Values are echoed in messages; a megabyte of junk is cut short.
const ECHO_LIMIT: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("the query string is {0} bytes long; at most {MAX_QUERY_BYTES} are accepted")]
    TooLong(usize),
    #[error("malformed query string: {0}")]
    Malformed(String),
    #[error("unknown parameter {}; allowed: {}", echo(.name), .allowed.join(", "))]
    Unknown { name: String, allowed: &'static [&'static str] },
    #[error("parameter {0} is given {1} times; give it at most once")]
    Repeated(&'static str, usize),
    #[error("{param} must be an integer from 0 to {}, got {}", u64::MAX, echo(.got))]
    Seed { param: &'static str, got: String },
    #[error("{param} must be {expected}, got {}", echo(.got))]
    Invalid { param: &'static str, expected: String, got: String },
    #[error("parameter {0} is required")]
    Missing(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Limit(String),
    #[error("model must be the name of a loaded model, got an empty value")]
    EmptyModel,
}

/// The decoded `name=value` pairs of a query string, each name one of `allowed`
/// and none repeated.
#[derive(Debug)]
pub struct Params {
    pairs: Vec<(&'static str, String)>,
}

impl Params {
    /// Splits and decodes `query` (without the `?`). An empty string and empty
    /// `&&` segments are fine; anything else outside the grammar is an error.
    pub fn parse(query: &str, allowed: &'static [&'static str]) -> Result<Params, QueryError> {
        // First, before any work proportional to the input.
        if query.len() > MAX_QUERY_BYTES {
            return Err(QueryError::TooLong(query.len()));
        }
        let mut pairs = Vec::new();
        for segment in query.split('&').filter(|s| !s.is_empty()) {
            let (raw_name, raw_value) = segment.split_once('=').unwrap_or((segment, ""));
            let name = percent_decode(raw_name)?;
            let value = percent_decode(raw_value)?;
            if name.is_empty() {
                return Err(QueryError::Malformed(format!("{} has no parameter name", echo(segment))));
            }
            match allowed.iter().position(|a| *a == name) {
                Some(i) => pairs.push((i, value)),
                None => return Err(QueryError::Unknown { name, allowed }),
            }
        }
        // Counted after decoding, so an escaped name is the same parameter; the
        // first repeated name (in order of appearance) is the one reported.
        let mut counts = vec![0usize; allowed.len()];
        for (i, _) in &pairs {
            counts[*i] += 1;
        }
        if let Some((i, _)) = pairs.iter().find(|(i, _)| counts[*i] > 1) {
            return Err(QueryError::Repeated(allowed[*i], counts[*i]));
        }
        Ok(Params { pairs: pairs.into_iter().map(|(i, v)| (allowed[i], v)).collect() })
    }

    /// The value of `name`, if given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a byte, and
/// the bytes must be UTF-8. Stray `%` and bad UTF-8 are errors, not replaced.
fn percent_decode(raw: &str) -> Result<String, QueryError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                // Two hex digits, checked here: `from_str_radix` alone takes a sign (`%+5` is 5).
                let byte = bytes
                    .get(i + 1..i + 3)
                    .filter(|hex| hex.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|hex| std::str::from_utf8(hex).ok())
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                    .ok_or_else(|| QueryError::Malformed(format!("bad percent-escape in {}", echo(raw))))?;
                out.push(byte);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| QueryError::Malformed(format!("{} is not UTF-8 once decoded", echo(raw))))
}

/// A value quoted for a message, shortened when long.
pub fn echo(value: &str) -> String {
    match value.char_indices().nth(ECHO_LIMIT) {
        Some((cut, _)) => format!("{:?}…", &value[..cut]),
        None => format!("{value:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: &[&str] = &["seed", "model"];

    fn err(q: &str) -> String {
        match Params::parse(q, NAMES) {
            Ok(v) => panic!("{q:?} should fail, got {v:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn decodes_names_and_values() {
        let p = Params::parse("&seed=%34%32&&model=a+b%2Dc", NAMES).unwrap();
        assert_eq!((p.get("seed"), p.get("model")), (Some("42"), Some("a b-c")));
        assert_eq!(Params::parse("model=%C3%A9", NAMES).unwrap().get("model"), Some("é"));
        assert_eq!(Params::parse("seed", NAMES).unwrap().get("seed"), Some(""));
        assert!(Params::parse("", NAMES).unwrap().get("seed").is_none());
    }

    #[test]
    fn repeated_parameters_are_refused() {
        assert_eq!(err("seed=1&seed=2"), "parameter seed is given 2 times; give it at most once");
        assert_eq!(err("seed=1&seed=1"), "parameter seed is given 2 times; give it at most once");
        assert_eq!(err("model=a&seed=1&model=b&model=c"), "parameter model is given 3 times; give it at most once");
        assert!(err("seed=1&s%65ed=2").contains("seed is given 2 times"));
    }

    #[test]
    fn unknown_parameters_are_refused_with_the_allowed_list() {
        assert_eq!(err("sed=42"), r#"unknown parameter "sed"; allowed: seed, model"#);
        assert_eq!(err("seed=1&Seed=2"), r#"unknown parameter "Seed"; allowed: seed, model"#);
    }

    #[test]
    fn malformed_and_overlong_strings_are_refused() {
        for q in ["seed=%", "seed=%4", "seed=%zz", "model=%FF", "=5", "%=1", "model=%C3", "seed=%+5", "model=%-1"] {
            assert!(err(q).starts_with("malformed query string"), "{q}: {}", err(q));
        }
        let long = format!("model={}", "x".repeat(MAX_QUERY_BYTES));
        assert!(err(&long).contains("at most 8192"), "{}", err(&long));
    }

    #[test]
    fn long_values_are_shortened_in_messages() {
        let e = err(&format!("{}=1", "x".repeat(1000)));
        assert!(e.len() < 200 && e.contains('…'), "{e}");
        // Cutting never splits a multi-byte character.
        let e = err(&format!("{}=1", "é".repeat(100)));
        assert!(e.contains("unknown parameter"), "{e}");
    }
}
