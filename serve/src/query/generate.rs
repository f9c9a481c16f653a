//! `GET /generate`: `seed` | `seeds` | `n` | `latent`, `class`, `model`, `format`, `size`, `truncation`.

use super::{values, Params, QueryError};
use crate::encode::Format;
use crate::limits::{MAX_IMAGES, MAX_SIZE, MIN_SIZE};

pub const GENERATE_PARAMS: &[&str] =
    &["seed", "seeds", "n", "latent", "class", "model", "format", "size", "truncation"];

/// Which class a conditional model's pictures are of (`class=`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClassChoice {
    /// A class by name or index, resolved against the model.
    Named(String),
    /// `class=all`: an `n=` grid with one row of `n` per class.
    All,
}

/// Which seeds to draw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seeds {
    /// `n` consecutive seeds from a random start (no `seed`/`seeds` given).
    Random { n: usize },
    /// Named by `seed` (with `n`: `n` consecutive from it) or `seeds`.
    Given(Vec<u64>),
    /// One latent vector, as `latent=` gives it (read against the model's length later).
    Latent(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct GenerateQuery {
    pub seeds: Seeds,
    pub model: Option<String>,
    pub format: Format,
    /// Side of each picture in pixels; `None`: the model's own size.
    pub size: Option<u32>,
    /// ψ; 1 leaves `z` as drawn.
    pub truncation: f32,
    /// None: each seed's own class on a conditional model.
    pub class: Option<ClassChoice>,
}

impl Default for GenerateQuery {
    fn default() -> Self {
        GenerateQuery {
            seeds: Seeds::Random { n: 1 },
            model: None,
            format: Format::Png,
            size: None,
            truncation: 1.0,
            class: None,
        }
    }
}

/// Parses `seed=42&model=demo&format=webp` (without the `?`).
pub fn parse_generate(query: &str) -> Result<GenerateQuery, QueryError> {
    let p = Params::parse(query, GENERATE_PARAMS)?;
    let seed = p.get("seed").map(|v| values::seed("seed", v)).transpose()?;
    let list = p.get("seeds").map(values::seeds).transpose()?;
    let n = p.get("n").map(|v| values::int("n", v, 1, MAX_IMAGES as u64)).transpose()?;
    if let Some(latent) = p.get("latent") {
        if p.get("seed").is_some() || p.get("seeds").is_some() || p.get("n").is_some() {
            return Err(QueryError::Conflict("latent names one picture: give it without seed, seeds or n".into()));
        }
        let q = GenerateQuery { seeds: Seeds::Latent(latent.to_string()), ..rest(&p)? };
        if q.class == Some(ClassChoice::All) {
            return Err(QueryError::Conflict("latent names one picture: give it with one class, not all".into()));
        }
        return Ok(q);
    }
    let seeds = match (seed, list, n) {
        (Some(_), Some(_), _) => return Err(QueryError::Conflict("give either seed or seeds, not both".into())),
        (_, Some(_), Some(_)) => {
            return Err(QueryError::Conflict("n counts up from seed; with seeds, list every seed instead".into()))
        }
        (_, Some(list), None) => Seeds::Given(list),
        (Some(seed), None, n) => Seeds::Given(run_from(seed, n.unwrap_or(1))?),
        (None, None, n) => Seeds::Random { n: n.unwrap_or(1) as usize },
    };
    let q = GenerateQuery { seeds, ..rest(&p)? };
    if q.class == Some(ClassChoice::All) && (n.is_none() || p.get("seeds").is_some()) {
        return Err(QueryError::Conflict("class=all makes a row of n pictures per class: give it with n".into()));
    }
    Ok(q)
}

/// Everything but the pictures' latents.
fn rest(p: &Params) -> Result<GenerateQuery, QueryError> {
    Ok(GenerateQuery {
        seeds: Seeds::Random { n: 1 },
        model: p.get("model").map(values::model).transpose()?,
        format: p.get("format").map(|v| values::format(v, &Format::STILL)).transpose()?.unwrap_or(Format::Png),
        size: p.get("size").map(|v| values::int("size", v, MIN_SIZE.into(), MAX_SIZE.into())).transpose()?.map(
            // Bounded by MAX_SIZE just above.
            |s| s as u32,
        ),
        truncation: p.get("truncation").map(values::truncation).transpose()?.unwrap_or(1.0),
        class: p.get("class").map(|v| values::class("class", v)).transpose()?,
    })
}

/// `n` consecutive seeds from `seed`, which must not run past the last seed.
fn run_from(seed: u64, n: u64) -> Result<Vec<u64>, QueryError> {
    let last = seed
        .checked_add(n - 1)
        .ok_or_else(|| QueryError::Conflict(format!("seed={seed} with n={n} runs past the last seed, {}", u64::MAX)))?;
    Ok((seed..=last).collect())
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

    fn given(v: &[u64]) -> Seeds {
        Seeds::Given(v.to_vec())
    }

    #[test]
    fn accepts_good_queries() {
        assert_eq!(ok(""), GenerateQuery::default());
        assert_eq!(ok("seed=42").seeds, given(&[42]));
        assert_eq!(ok("seed=%34%32").seeds, given(&[42]));
        assert_eq!(ok("seed=18446744073709551615").seeds, given(&[u64::MAX]));
        let q = ok("model=demo&seed=1");
        assert_eq!((q.seeds, q.model.as_deref()), (given(&[1]), Some("demo")));
        assert_eq!(ok("&seed=3&&").seeds, given(&[3]));
        assert_eq!(ok("seed=10&n=3").seeds, given(&[10, 11, 12]));
        assert_eq!(ok("n=5").seeds, Seeds::Random { n: 5 });
        assert_eq!(ok("seeds=4,2,100-101").seeds, given(&[4, 2, 100, 101]));
        assert_eq!(ok("seeds=4%2C2").seeds, given(&[4, 2]));
        let q = ok("seed=1&format=jpeg&size=256&truncation=0.7");
        assert_eq!((q.format, q.size, q.truncation), (Format::Jpeg, Some(256), 0.7));
        assert_eq!(ok("format=webp").format, Format::Webp);
        let q = ok("latent=AAAA%2B&size=8");
        assert_eq!((q.seeds, q.size), (Seeds::Latent("AAAA+".into()), Some(8)));
    }

    #[test]
    fn conflicts_and_limits_are_refused() {
        assert_eq!(err("seed=1&seeds=2"), "give either seed or seeds, not both");
        assert!(err("seeds=1,2&n=2").contains("list every seed"));
        assert!(err("latent=AAAA&seed=1").starts_with("latent names one picture"));
        assert!(err("latent=AAAA&n=2").starts_with("latent names one picture"));
        assert!(err("seed=18446744073709551615&n=2").contains("runs past the last seed"));
        assert!(err("n=65").starts_with("n must be an integer from 1 to 64"));
        assert!(err("n=0").starts_with("n must be an integer from 1 to 64"));
        assert!(err("seeds=1-65").contains("at most 64"));
        assert!(err("size=1025").starts_with("size must be an integer from 1 to 1024"));
        assert!(err("size=0").starts_with("size must be an integer from 1 to 1024"));
        assert!(err("format=gif").starts_with("format must be one of png, jpeg, webp"));
        assert!(err("truncation=0").starts_with("truncation must be"));
        assert_eq!(err("model="), "model must be the name of a loaded model, got an empty value");
        assert_eq!(err("model"), "model must be the name of a loaded model, got an empty value");
        assert_eq!(
            err("sed=42"),
            r#"unknown parameter "sed"; allowed: seed, seeds, n, latent, class, model, format, size, truncation"#
        );
        assert!(err("class=").starts_with("class must be a class's name or index"));
        assert!(err("class=all&seed=1").contains("give it with n"));
        assert!(err("class=all&seeds=1,2&n=2").contains("list every seed"));
        assert!(err("class=all&latent=AAAA").contains("not all"));
        assert_eq!(ok("seed=1&class=duck").class, Some(ClassChoice::Named("duck".into())));
        assert_eq!(ok("n=4&class=all").class, Some(ClassChoice::All));
        assert_eq!(ok("seed=2&n=4&class=3").class, Some(ClassChoice::Named("3".into())));
        assert_eq!(err("seed=1&seed=2"), "parameter seed is given 2 times; give it at most once");
        assert!(err("seed=abc").starts_with("seed must be an integer from 0 to 18446744073709551615"));
    }
}
