//! One parameter's value → a typed value, or an error naming the parameter and
//! what it accepts. Every parser works in bounded time and memory whatever it is
//! given (the query string is already capped in length).

use super::QueryError;
use crate::encode::Format;
use crate::limits::MAX_IMAGES;

/// Plain decimal digits only: `u64::from_str` would also take `+7`.
pub fn seed(param: &'static str, value: &str) -> Result<u64, QueryError> {
    let bad = || QueryError::Seed { param, got: value.to_string() };
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    value.parse().map_err(|_| bad())
}

/// A decimal integer in `min..=max`.
pub fn int(param: &'static str, value: &str, min: u64, max: u64) -> Result<u64, QueryError> {
    let bad = || QueryError::Invalid { param, expected: format!("an integer from {min} to {max}"), got: value.into() };
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match value.parse::<u64>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(bad()),
    }
}

/// `1,2,3`, `100-163` or a mix (`1,5,10-20`), in order, repeats allowed; at most
/// [`MAX_IMAGES`] seeds, counted before any range is expanded.
pub fn seeds(value: &str) -> Result<Vec<u64>, QueryError> {
    const PARAM: &str = "seeds";
    let mut out = Vec::new();
    for item in value.split(',') {
        let (lo, hi) = match item.split_once('-') {
            Some((a, b)) => (seed(PARAM, a)?, seed(PARAM, b)?),
            None => {
                let s = seed(PARAM, item)?;
                (s, s)
            }
        };
        if hi < lo {
            return Err(QueryError::Invalid {
                param: PARAM,
                expected: "a list of seeds and ranges that go up, like 1,2,3 or 100-163".into(),
                got: item.into(),
            });
        }
        // u128: the range 0-18446744073709551615 has 2^64 seeds.
        let total = out.len() as u128 + u128::from(hi - lo) + 1;
        if total > MAX_IMAGES as u128 {
            return Err(QueryError::Limit(format!(
                "seeds names {}{total} seeds; at most {MAX_IMAGES} per request",
                if out.is_empty() { "" } else { "at least " }
            )));
        }
        out.extend(lo..=hi);
    }
    Ok(out)
}

/// ψ in (0, 1], written as a plain decimal (`0.7`, `1`, `.5`).
pub fn truncation(value: &str) -> Result<f32, QueryError> {
    let bad = || QueryError::Invalid {
        param: "truncation",
        expected: "a number greater than 0 and at most 1, like 0.7".into(),
        got: value.into(),
    };
    let (int, frac) = value.split_once('.').unwrap_or((value, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let well_formed = value.len() <= 32
        && digits(int)
        && digits(frac)
        && !(int.is_empty() && frac.is_empty())
        && !(value.contains('.') && frac.is_empty());
    if !well_formed {
        return Err(bad());
    }
    match value.parse::<f32>() {
        Ok(psi) if psi > 0.0 && psi <= 1.0 => Ok(psi),
        _ => Err(bad()),
    }
}

/// One of `allowed`, by its exact name.
pub fn format(value: &str, allowed: &[Format]) -> Result<Format, QueryError> {
    allowed.iter().copied().find(|f| f.name() == value).ok_or_else(|| QueryError::Invalid {
        param: "format",
        expected: format!("one of {}", allowed.iter().map(|f| f.name()).collect::<Vec<_>>().join(", ")),
        got: value.into(),
    })
}

/// `class=`: a class's name or index, or `all` (resolved against the model later).
pub fn class(param: &'static str, value: &str) -> Result<super::generate::ClassChoice, QueryError> {
    use super::generate::ClassChoice;
    let max = canard_shared::manifest::MAX_CLASS_NAME;
    if value.is_empty() || value.len() > max {
        return Err(QueryError::Invalid {
            param,
            expected: format!("a class's name or index (1 to {max} bytes), or all"),
            got: value.to_string(),
        });
    }
    Ok(if value == "all" { ClassChoice::All } else { ClassChoice::Named(value.to_string()) })
}

pub fn model(value: &str) -> Result<String, QueryError> {
    if value.is_empty() {
        return Err(QueryError::EmptyModel);
    }
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_errors_name_the_parameter_the_range_and_the_value() {
        assert_eq!(seed("seed", "007"), Ok(7));
        assert_eq!(seed("seed", "18446744073709551615"), Ok(u64::MAX));
        let range = "seed must be an integer from 0 to 18446744073709551615";
        for (v, got) in [
            ("abc", r#"got "abc""#),
            ("-1", r#"got "-1""#),
            ("18446744073709551616", r#"got "18446744073709551616""#),
            ("", r#"got """#),
            ("+5", r#"got "+5""#),
            (" 5", r#"got " 5""#),
            ("1.5", r#"got "1.5""#),
            ("0x10", r#"got "0x10""#),
            ("١٢", r#"got "١٢""#),
        ] {
            let e = seed("seed", v).unwrap_err().to_string();
            assert!(e.starts_with(range) && e.ends_with(got), "{v}: {e}");
        }
        assert!(seed("from", "x").unwrap_err().to_string().starts_with("from must be"));
    }

    #[test]
    fn integers_are_bounded() {
        assert_eq!(int("n", "64", 1, 64), Ok(64));
        for v in ["0", "65", "", "-1", "1e2", "99999999999999999999999"] {
            let e = int("n", v, 1, 64).unwrap_err().to_string();
            assert!(e.starts_with("n must be an integer from 1 to 64"), "{v}: {e}");
        }
    }

    #[test]
    fn seed_lists_and_ranges_are_bounded_before_expansion() {
        assert_eq!(seeds("3,1,2"), Ok(vec![3, 1, 2]));
        assert_eq!(seeds("100-103"), Ok(vec![100, 101, 102, 103]));
        assert_eq!(seeds("1,5-6,5"), Ok(vec![1, 5, 6, 5]));
        assert_eq!(seeds("7-7"), Ok(vec![7]));
        assert_eq!(seeds("100-163").map(|v| v.len()), Ok(64));
        assert_eq!(seeds("18446744073709551614-18446744073709551615").map(|v| v.len()), Ok(2));
        let e = seeds("0-18446744073709551615").unwrap_err().to_string();
        assert_eq!(e, "seeds names 18446744073709551616 seeds; at most 64 per request");
        assert!(seeds("1-64,2").unwrap_err().to_string().contains("at least 65"));
        assert!(seeds("5-1").unwrap_err().to_string().contains("go up"));
        for bad in ["", "1,", ",1", "1,,2", "1-", "-1", "1-2-3", "a", "1;2"] {
            assert!(seeds(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn truncation_is_a_plain_decimal_in_the_unit_interval() {
        assert_eq!(truncation("0.7"), Ok(0.7));
        assert_eq!(truncation("1"), Ok(1.0));
        assert_eq!(truncation("1.000"), Ok(1.0));
        assert_eq!(truncation(".5"), Ok(0.5));
        for bad in ["0", "0.0", "1.01", "2", "-0.5", "", ".", "1.", "1e-1", "nan", "inf", "0,5", " 0.5"] {
            let e = truncation(bad).unwrap_err().to_string();
            assert!(e.starts_with("truncation must be a number greater than 0 and at most 1"), "{bad}: {e}");
        }
        assert!(truncation(&format!("0.{}", "1".repeat(40))).is_err(), "too long");
    }

    #[test]
    fn formats_and_models() {
        assert_eq!(format("webp", &Format::STILL), Ok(Format::Webp));
        let e = format("gif", &Format::STILL).unwrap_err().to_string();
        assert_eq!(e, r#"format must be one of png, jpeg, webp, got "gif""#);
        assert!(format("PNG", &Format::STILL).is_err());
        assert_eq!(model(""), Err(QueryError::EmptyModel));
    }
}
