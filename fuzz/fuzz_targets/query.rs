//! `/generate` and `/interpolate` query strings: every input goes through both
//! parsers, as the handlers call them (`parse_generate(req.query_string())`).
//!
//! Asserts, beyond "never panics":
//! - an error renders to a short message (values are echoed cut short), and as the
//!   400 `{"error": …}` body the client sees, which parses back to that message;
//! - an accepted query respects every bound of `serve/src/limits.rs` (image count,
//!   steps, size, ψ, the query length), so nothing after parsing can be asked for
//!   more than the limits allow;
//! - an accepted query, written back in canonical form, parses to the same value
//!   (the parser neither loses nor invents anything).
#![no_main]

use actix_web::ResponseError;
use canard_serve::encode::Format;
use canard_serve::error::{ApiError, ErrorBody};
use canard_serve::limits::{MAX_IMAGES, MAX_QUERY_BYTES, MAX_SIZE, MAX_STEPS, MIN_SIZE, MIN_STEPS};
use canard_serve::query::{
    parse_generate, parse_interpolate, ClassChoice, GenerateQuery, InterpolateQuery, QueryError, Seeds, Start,
};
use libfuzzer_sys::fuzz_target;

/// Longest message any error may have. The longest legitimate one is an echoed
/// value (64 characters, each at most `\u{10ffff}` once escaped) plus the text.
const MAX_MESSAGE: usize = 64 * 10 + 256;

fuzz_target!(|data: &[u8]| {
    // actix hands the handlers a &str; bytes that are not UTF-8 are tried as Latin-1
    // (every byte a char) so that mutations of escapes and multi-byte text still count.
    let query = match std::str::from_utf8(data) {
        Ok(s) => s.to_string(),
        Err(_) => data.iter().map(|&b| b as char).collect(),
    };
    match parse_generate(&query) {
        Ok(q) => check_generate(&query, &q),
        Err(e) => check_error(&query, e),
    }
    match parse_interpolate(&query) {
        Ok(q) => check_interpolate(&query, &q),
        Err(e) => check_error(&query, e),
    }
});

fn check_error(query: &str, e: QueryError) {
    if query.len() > MAX_QUERY_BYTES {
        assert_eq!(e, QueryError::TooLong(query.len()));
    }
    let message = e.to_string();
    assert!(!message.is_empty());
    assert!(message.len() <= MAX_MESSAGE, "{} bytes of message for {} bytes of query", message.len(), query.len());
    let api = ApiError::from(e);
    assert_eq!(api.status_code(), actix_web::http::StatusCode::BAD_REQUEST);
    assert_eq!(api.to_string(), message);
    let body = serde_json::to_string(&ErrorBody { error: message.clone(), classes: None }).unwrap();
    let back: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(back["error"].as_str(), Some(message.as_str()));
}

fn check_common(query: &str, model: &Option<String>, size: Option<u32>, truncation: f32) {
    assert!(query.len() <= MAX_QUERY_BYTES);
    assert!(model.as_ref().is_none_or(|m| !m.is_empty()));
    assert!(size.is_none_or(|s| (MIN_SIZE..=MAX_SIZE).contains(&s)), "size {size:?}");
    assert!(truncation > 0.0 && truncation <= 1.0 && truncation.is_finite(), "truncation {truncation}");
}

fn check_generate(query: &str, q: &GenerateQuery) {
    check_common(query, &q.model, q.size, q.truncation);
    assert!(Format::STILL.contains(&q.format), "{:?}", q.format);
    match &q.seeds {
        Seeds::Random { n } => assert!((1..=MAX_IMAGES).contains(n), "n {n}"),
        Seeds::Given(seeds) => assert!((1..=MAX_IMAGES).contains(&seeds.len()), "{} seeds", seeds.len()),
        Seeds::Latent(latent) => assert!(q.class != Some(ClassChoice::All), "latent {latent:?} with class=all"),
    }
    let mut canonical = match &q.seeds {
        Seeds::Random { n } => vec![format!("n={n}")],
        Seeds::Given(seeds) => {
            vec![format!("seeds={}", seeds.iter().map(u64::to_string).collect::<Vec<_>>().join(","))]
        }
        Seeds::Latent(latent) => vec![format!("latent={}", escape(latent))],
    };
    match &q.class {
        Some(ClassChoice::Named(c)) => canonical.push(format!("class={}", escape(c))),
        Some(ClassChoice::All) => canonical.push("class=all".into()),
        None => {}
    }
    canonical.extend(common_params(&q.model, q.format, q.size, q.truncation));
    let canonical = canonical.join("&");
    // The canonical form can be longer than the limit (64 twenty-digit seeds given
    // as ranges, a long model name escaped byte by byte): only shorter ones are re-parsed.
    if canonical.len() <= MAX_QUERY_BYTES {
        let again = parse_generate(&canonical).unwrap_or_else(|e| panic!("{canonical:?} (from {query:?}): {e}"));
        assert_eq!(&again, q, "{canonical:?} (from {query:?})");
    }
}

fn check_interpolate(query: &str, q: &InterpolateQuery) {
    check_common(query, &q.model, q.size, q.truncation);
    assert!((MIN_STEPS..=MAX_STEPS).contains(&q.steps), "steps {}", q.steps);
    let from = match &q.from {
        Start::Seed(s) => format!("from={s}"),
        Start::Latent(latent) => format!("latent={}", escape(latent)),
    };
    let mut canonical = vec![from, format!("to={}", q.to), format!("steps={}", q.steps)];
    for (param, class) in [("from_class", &q.from_class), ("to_class", &q.to_class)] {
        canonical.extend(class.as_ref().map(|c| format!("{param}={}", escape(c))));
    }
    canonical.extend(common_params(&q.model, q.format, q.size, q.truncation));
    let canonical = canonical.join("&");
    if canonical.len() <= MAX_QUERY_BYTES {
        let again = parse_interpolate(&canonical).unwrap_or_else(|e| panic!("{canonical:?} (from {query:?}): {e}"));
        assert_eq!(&again, q, "{canonical:?} (from {query:?})");
    }
}

fn common_params(model: &Option<String>, format: Format, size: Option<u32>, truncation: f32) -> Vec<String> {
    let mut out = vec![format!("format={}", format.name()), format!("truncation={}", plain(truncation))];
    if let Some(m) = model {
        out.push(format!("model={}", escape(m)));
    }
    if let Some(s) = size {
        out.push(format!("size={s}"));
    }
    out
}

/// ψ in its shortest accepted spelling: the parser caps the written value at 32
/// characters, so `.` followed by 30 digits is accepted and `0.` followed by the
/// same 30 digits is not (found by this target; left as it is, see
/// seeds/query/truncation-tiny): the optional leading zero is dropped.
fn plain(psi: f32) -> String {
    let s = psi.to_string();
    match s.strip_prefix("0.") {
        Some(frac) => format!(".{frac}"),
        None => s,
    }
}

/// Every byte as `%XX`: always a valid encoding of the value.
fn escape(value: &str) -> String {
    value.bytes().map(|b| format!("%{b:02X}")).collect()
}
