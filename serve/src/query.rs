//! The query string of `GET /generate`, parsed by hand.
//!
//! A generic deserialiser would accept `seed=+5`, silently keep the last of two
//! `seed`s, ignore unknown names and replace bad UTF-8; here every such request is
//! refused with a message that names the parameter and what it accepts, so a typo
//! (`sed=42`) never turns into a random picture.

/// What `/generate` understands.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GenerateQuery {
    pub seed: Option<u64>,
    pub model: Option<String>,
}

const PARAMS: &[&str] = &["seed", "model"];

/// Values are echoed in messages; a megabyte of junk is cut short.
const ECHO_LIMIT: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("malformed query string: {0}")]
    Malformed(String),
    #[error("unknown parameter {}; allowed: {}", echo(.0), PARAMS.join(", "))]
    Unknown(String),
    #[error("parameter {0} is given {1} times; give it at most once")]
    Repeated(&'static str, usize),
    #[error("seed must be an integer from 0 to {}, got {}", u64::MAX, echo(.0))]
    Seed(String),
    #[error("model must be the name of a loaded model, got an empty value")]
    EmptyModel,
}

/// Parses `seed=42&model=demo` (without the `?`). An empty string and empty
/// `&&` segments are fine; anything else outside the grammar is an error.
pub fn parse_generate(query: &str) -> Result<GenerateQuery, QueryError> {
    let mut seeds = Vec::new();
    let mut models = Vec::new();
    for segment in query.split('&').filter(|s| !s.is_empty()) {
        let (raw_name, raw_value) = segment.split_once('=').unwrap_or((segment, ""));
        let name = percent_decode(raw_name)?;
        let value = percent_decode(raw_value)?;
        match name.as_str() {
            "seed" => seeds.push(value),
            "model" => models.push(value),
            "" => return Err(QueryError::Malformed(format!("{} has no parameter name", echo(segment)))),
            _ => return Err(QueryError::Unknown(name)),
        }
    }
    Ok(GenerateQuery {
        seed: at_most_once("seed", seeds)?.map(|v| parse_seed(&v)).transpose()?,
        model: parse_model(models)?,
    })
}

fn at_most_once(name: &'static str, mut values: Vec<String>) -> Result<Option<String>, QueryError> {
    match values.len() {
        0 | 1 => Ok(values.pop()),
        n => Err(QueryError::Repeated(name, n)),
    }
}

fn parse_model(values: Vec<String>) -> Result<Option<String>, QueryError> {
    match at_most_once("model", values)? {
        Some(v) if v.is_empty() => Err(QueryError::EmptyModel),
        other => Ok(other),
    }
}

/// Plain decimal digits only: `u64::from_str` would also take `+7`.
pub fn parse_seed(value: &str) -> Result<u64, QueryError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(QueryError::Seed(value.to_string()));
    }
    value.parse().map_err(|_| QueryError::Seed(value.to_string()))
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
                let byte = bytes
                    .get(i + 1..i + 3)
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
fn echo(value: &str) -> String {
    match value.char_indices().nth(ECHO_LIMIT) {
        Some((cut, _)) => format!("{:?}…", &value[..cut]),
        None => format!("{value:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(q: &str) -> GenerateQuery {
        parse_generate(q).unwrap_or_else(|e| panic!("{q:?} should parse: {e}"))
    }

    fn err(q: &str) -> String {
        match parse_generate(q) {
            Ok(v) => panic!("{q:?} should fail, got {v:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn accepts_good_queries() {
        assert_eq!(ok(""), GenerateQuery::default());
        assert_eq!(ok("seed=42").seed, Some(42));
        assert_eq!(ok("seed=0").seed, Some(0));
        assert_eq!(ok("seed=18446744073709551615").seed, Some(u64::MAX));
        assert_eq!(ok("seed=007").seed, Some(7));
        assert_eq!(ok("seed=%34%32").seed, Some(42));
        let q = ok("model=demo&seed=1");
        assert_eq!((q.seed, q.model.as_deref()), (Some(1), Some("demo")));
        assert_eq!(ok("model=my%2Dmodel").model.as_deref(), Some("my-model"));
        assert_eq!(ok("model=a+b").model.as_deref(), Some("a b"));
        assert_eq!(ok("&seed=3&&").seed, Some(3));
        assert_eq!(ok("model=%C3%A9").model.as_deref(), Some("é"));
    }

    #[test]
    fn seed_errors_name_the_range_and_the_value() {
        let range = "seed must be an integer from 0 to 18446744073709551615";
        for (q, got) in [
            ("seed=abc", r#"got "abc""#),
            ("seed=-1", r#"got "-1""#),
            ("seed=99999999999999999999", r#"got "99999999999999999999""#),
            ("seed=18446744073709551616", r#"got "18446744073709551616""#),
            ("seed=", r#"got """#),
            ("seed", r#"got """#),
            ("seed=%2B5", r#"got "+5""#),
            ("seed=+5", r#"got " 5""#),
            ("seed=%205", r#"got " 5""#),
            ("seed=1.5", r#"got "1.5""#),
            ("seed=0x10", r#"got "0x10""#),
            ("seed=١٢", r#"got "١٢""#),
        ] {
            let e = err(q);
            assert!(e.starts_with(range) && e.ends_with(got), "{q}: {e}");
        }
    }

    #[test]
    fn repeated_parameters_are_refused() {
        assert_eq!(err("seed=1&seed=2"), "parameter seed is given 2 times; give it at most once");
        assert_eq!(err("seed=1&seed=1"), "parameter seed is given 2 times; give it at most once");
        assert_eq!(err("model=a&seed=1&model=b&model=c"), "parameter model is given 3 times; give it at most once");
        // Counted after decoding, so an escaped name is the same parameter.
        assert!(err("seed=1&s%65ed=2").contains("seed is given 2 times"));
    }

    #[test]
    fn unknown_parameters_are_refused_with_the_allowed_list() {
        assert_eq!(err("sed=42"), r#"unknown parameter "sed"; allowed: seed, model"#);
        assert_eq!(err("seed=1&Seed=2"), r#"unknown parameter "Seed"; allowed: seed, model"#);
        assert!(err("seed=1&size=64").contains(r#""size""#));
    }

    #[test]
    fn empty_model_is_refused() {
        assert_eq!(err("model="), "model must be the name of a loaded model, got an empty value");
        assert_eq!(err("model"), "model must be the name of a loaded model, got an empty value");
    }

    #[test]
    fn malformed_strings_are_refused() {
        for q in ["seed=%", "seed=%4", "seed=%zz", "model=%FF", "=5", "%=1", "model=%C3"] {
            assert!(err(q).starts_with("malformed query string"), "{q}: {}", err(q));
        }
    }

    #[test]
    fn long_values_are_shortened_in_messages() {
        let long = "x".repeat(10_000);
        let e = err(&format!("seed={long}"));
        assert!(e.len() < 200 && e.ends_with('…'), "{e}");
        // Cutting never splits a multi-byte character.
        let e = err(&format!("{}=1", "é".repeat(100)));
        assert!(e.contains("unknown parameter"), "{e}");
    }
}
