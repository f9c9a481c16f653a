//! `GET /interpolate`: `from` | `latent`, `to`, `steps`, `class` | `from_class`, `to_class`,
//! `model`, `format`, `size`, `truncation`.

use super::{values, Params, QueryError};
use crate::encode::Format;
use crate::limits::{DEFAULT_STEPS, MAX_SIZE, MAX_STEPS, MIN_SIZE, MIN_STEPS};

pub const INTERPOLATE_PARAMS: &[&str] =
    &["from", "latent", "to", "steps", "class", "from_class", "to_class", "model", "format", "size", "truncation"];

/// Where the walk starts: a seed (`from`), or a latent vector (`latent=`, read against the
/// model's length later).
#[derive(Debug, Clone, PartialEq)]
pub enum Start {
    Seed(u64),
    Latent(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct InterpolateQuery {
    pub from: Start,
    pub to: u64,
    /// Pictures from `from` to `to`, both included.
    pub steps: usize,
    pub model: Option<String>,
    /// A still format gives a strip; `gif` an animation there and back.
    pub format: Format,
    pub size: Option<u32>,
    pub truncation: f32,
    /// A conditional model's class at the start and at the end (`class=` sets both); None:
    /// the start's own (the `from` seed's), the end's the start's.
    pub from_class: Option<String>,
    pub to_class: Option<String>,
}

pub fn parse_interpolate(query: &str) -> Result<InterpolateQuery, QueryError> {
    let p = Params::parse(query, INTERPOLATE_PARAMS)?;
    let from = match (p.get("from"), p.get("latent")) {
        (Some(_), Some(_)) => {
            return Err(QueryError::Conflict("the walk starts at from or at latent, not both".into()))
        }
        (Some(seed), None) => Start::Seed(values::seed("from", seed)?),
        (None, Some(latent)) => Start::Latent(latent.to_string()),
        (None, None) => return Err(QueryError::Missing("from")),
    };
    let to = values::seed("to", p.get("to").ok_or(QueryError::Missing("to"))?)?;
    let class = |name: &'static str| -> Result<Option<String>, QueryError> {
        match p.get(name).map(|v| values::class(name, v)).transpose()? {
            Some(super::ClassChoice::Named(c)) => Ok(Some(c)),
            Some(super::ClassChoice::All) => {
                Err(QueryError::Conflict(format!("{name}=all: a walk is of one class, or from one to another")))
            }
            None => Ok(None),
        }
    };
    let (from_class, to_class) = match (class("class")?, class("from_class")?, class("to_class")?) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err(QueryError::Conflict("give class (the whole walk) or from_class and to_class, not both".into()))
        }
        (Some(c), None, None) => (Some(c.clone()), Some(c)),
        (None, from, to) => (from, to),
    };
    Ok(InterpolateQuery {
        from_class,
        to_class,
        from,
        to,
        steps: p
            .get("steps")
            .map(|v| values::int("steps", v, MIN_STEPS as u64, MAX_STEPS as u64))
            .transpose()?
            // Bounded by MAX_STEPS just above.
            .map_or(DEFAULT_STEPS, |s| s as usize),
        model: p.get("model").map(values::model).transpose()?,
        format: p.get("format").map(|v| values::format(v, &Format::ALL)).transpose()?.unwrap_or(Format::Png),
        size: p.get("size").map(|v| values::int("size", v, MIN_SIZE.into(), MAX_SIZE.into())).transpose()?.map(
            // Bounded by MAX_SIZE just above.
            |s| s as u32,
        ),
        truncation: p.get("truncation").map(values::truncation).transpose()?.unwrap_or(1.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_defaults() {
        let q = parse_interpolate("from=1&to=2").unwrap();
        assert_eq!(
            (q.from, q.to, q.steps, q.format, q.size, q.truncation),
            (Start::Seed(1), 2, 8, Format::Png, None, 1.0)
        );
        let q = parse_interpolate("to=9&from=9&steps=64&format=gif&size=64&truncation=.5&model=m").unwrap();
        assert_eq!((q.from, q.to, q.steps, q.format), (Start::Seed(9), 9, 64, Format::Gif));
        assert_eq!(parse_interpolate("latent=AAAA&to=2").unwrap().from, Start::Latent("AAAA".into()));
        assert_eq!((q.size, q.truncation, q.model.as_deref()), (Some(64), 0.5, Some("m")));
    }

    #[test]
    fn refuses_missing_endpoints_and_bad_steps() {
        let err = |q: &str| parse_interpolate(q).unwrap_err().to_string();
        assert_eq!(err("to=2"), "parameter from is required");
        assert_eq!(err("from=1"), "parameter to is required");
        assert_eq!(err("from=1&latent=AAAA&to=2"), "the walk starts at from or at latent, not both");
        assert!(err("from=1&to=2&steps=1").starts_with("steps must be an integer from 2 to 64"));
        assert!(err("from=1&to=2&steps=65").starts_with("steps must be an integer from 2 to 64"));
        assert!(err("from=x&to=2").starts_with("from must be an integer from 0"));
        assert!(err("from=1&to=2&format=bmp").starts_with("format must be one of png, jpeg, webp, gif"));
        assert!(err("from=1&to=2&seed=3").contains("unknown parameter \"seed\""));
        assert!(err("from=1&to=2&class=a&to_class=b").contains("not both"));
        assert!(err("from=1&to=2&class=all").contains("one class"));
    }

    #[test]
    fn a_walk_is_of_one_class_or_from_one_to_another() {
        let q = parse_interpolate("from=1&to=2&class=duck").unwrap();
        assert_eq!((q.from_class.as_deref(), q.to_class.as_deref()), (Some("duck"), Some("duck")));
        let q = parse_interpolate("from=1&to=2&from_class=duck&to_class=1").unwrap();
        assert_eq!((q.from_class.as_deref(), q.to_class.as_deref()), (Some("duck"), Some("1")));
        let q = parse_interpolate("from=1&to=2").unwrap();
        assert_eq!((q.from_class, q.to_class), (None, None));
    }
}
