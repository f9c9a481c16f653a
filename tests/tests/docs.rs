//! The documents point only at what exists. Every relative link or picture in README.md,
//! QUALITY.md, BENCHMARKS.md, RELIABILITY.md (ARCHITECTURE.md when there is one) and the
//! Markdown files under docs/, deploy/ and fuzz/ must name a file that exists, relative to the
//! document's folder, and a heading of it for a `#anchor` into Markdown; every repository path
//! they name in passing (`train/src/….rs`, `scripts/….sh`, `serve/tests/`, …) must exist,
//! relative to the repository's root. A document that outlives a file it cites fails here,
//! with the document and the line of every such reference at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The documents at the top of the repository; an absent one is skipped.
const TOP_DOCUMENTS: &[&str] = &["README.md", "QUALITY.md", "BENCHMARKS.md", "RELIABILITY.md", "ARCHITECTURE.md"];
/// Folders whose Markdown files are documents too, and whether their subfolders are searched.
const DOCUMENT_FOLDERS: &[(&str, bool)] = &[("docs", true), ("deploy", false), ("fuzz", false)];
/// A path named in passing is checked when it starts with one of these folders…
const SOURCE_FOLDERS: &[&str] = &["train", "serve", "shared", "scripts", "tests", "deploy", "fuzz", "docs"];
/// …and ends in one of these extensions (a file) or in `/` (a folder).
const SOURCE_EXTENSIONS: &[&str] =
    &["rs", "sh", "py", "toml", "yml", "yaml", "json", "html", "js", "css", "conf", "proto", "md", "png"];
/// The documents hold at least this many links and paths today: a checker that stopped finding
/// them (a parser broken by a change here) fails instead of passing on nothing.
const MIN_LINKS: usize = 25;
const MIN_PATHS: usize = 60;

#[derive(Debug, Default)]
struct Report {
    links: usize,
    paths: usize,
    failures: Vec<String>,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits inside the repository").to_path_buf()
}

fn documents(root: &Path) -> Vec<PathBuf> {
    let mut docs: Vec<PathBuf> = TOP_DOCUMENTS.iter().map(|d| root.join(d)).filter(|p| p.is_file()).collect();
    for &(folder, recursive) in DOCUMENT_FOLDERS {
        markdown_files(&root.join(folder), recursive, &mut docs);
    }
    docs
}

fn markdown_files(dir: &Path, recursive: bool, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut paths: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            if recursive {
                markdown_files(&p, true, out);
            }
        } else if p.extension().is_some_and(|e| e == "md") {
            out.push(p);
        }
    }
}

/// The anchors GitHub gives a document's headings: lower case, letters, digits, `-` and `_`
/// kept, each space a `-`, everything else dropped; a repeated heading gets `-1`, `-2`, ….
/// Lines inside fenced code blocks are not headings.
fn anchors(text: &str) -> Vec<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        let hashes = line.bytes().take_while(|&b| b == b'#').count();
        if fenced || hashes == 0 || hashes > 6 || !line[hashes..].starts_with(' ') {
            continue;
        }
        let slug: String = line[hashes..]
            .trim()
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .collect();
        let n = seen.entry(slug.clone()).or_insert(0);
        out.push(if *n == 0 { slug } else { format!("{slug}-{n}") });
        *n += 1;
    }
    out
}

/// The targets of a line's links and pictures (`](target)`, `](target "title")`, `](<target>)`).
fn link_targets(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("](") {
        rest = &rest[i + 2..];
        let Some(end) = rest.find(')') else { break };
        let target = rest[..end].split_whitespace().next().unwrap_or("");
        out.push(target.trim_start_matches('<').trim_end_matches('>'));
        rest = &rest[end + 1..];
    }
    out
}

fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/')
}

/// Repository paths a line names: runs of path characters that start with a source folder and
/// end in a known extension (a file) or in `/` (a folder). A sentence's full stop is not part of it.
fn named_paths(line: &str) -> Vec<&str> {
    line.split(|c: char| !is_path_char(c))
        .map(|t| t.strip_prefix("./").unwrap_or(t).trim_end_matches('.'))
        .filter(|t| {
            SOURCE_FOLDERS.iter().any(|f| t.len() > f.len() && t.starts_with(*f) && t.as_bytes()[f.len()] == b'/')
        })
        .filter(|t| {
            t.ends_with('/')
                || t.rsplit_once('.')
                    .is_some_and(|(stem, ext)| !stem.ends_with('/') && SOURCE_EXTENSIONS.contains(&ext))
        })
        .collect()
}

/// Checks one document's text; `dir` is its folder (where its relative links start).
fn check_document(name: &str, dir: &Path, root: &Path, text: &str, report: &mut Report) {
    let shown = |p: &Path| p.strip_prefix(root).unwrap_or(p).display().to_string();
    for (n, line) in text.lines().enumerate() {
        let at = format!("{name}:{}", n + 1);
        for target in link_targets(line) {
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            report.links += 1;
            let (path, anchor) = target.split_once('#').unwrap_or((target, ""));
            let path = path.split('?').next().unwrap_or("").replace("%20", " ");
            let file = match path.as_str() {
                "" => None,
                p => Some(match p.strip_prefix('/') {
                    Some(from_root) => root.join(from_root),
                    None => dir.join(p),
                }),
            };
            if let Some(f) = &file {
                if !f.exists() {
                    report.failures.push(format!("{at}: links to {target}, but {} does not exist", shown(f.as_path())));
                    continue;
                }
            }
            if anchor.is_empty() {
                continue;
            }
            let headings = match &file {
                None => anchors(text),
                Some(f) if f.extension().is_some_and(|e| e == "md") => match std::fs::read_to_string(f) {
                    Ok(t) => anchors(&t),
                    Err(e) => {
                        report
                            .failures
                            .push(format!("{at}: links to {target}, but {} cannot be read: {e}", shown(f.as_path())));
                        continue;
                    }
                },
                Some(_) => continue,
            };
            if !headings.iter().any(|h| h.eq_ignore_ascii_case(anchor)) {
                report.failures.push(format!("{at}: links to {target}, but there is no heading #{anchor}"));
            }
        }
        for path in named_paths(line) {
            report.paths += 1;
            let p = root.join(path.trim_end_matches('/'));
            let ok = if path.ends_with('/') { p.is_dir() } else { p.is_file() };
            if !ok {
                report.failures.push(format!("{at}: names {path}, which is not in the repository"));
            }
        }
    }
}

/// The checker on a text with one good and three broken references of each kind it knows,
/// so that the documents' test cannot pass by finding nothing.
fn self_check(root: &Path) {
    let text = "# A heading\n\
                See [the readme](README.md), [gone](no/such/picture.png), [here](#a-heading) and [there](#nowhere).\n\
                `train/src/no_such_file.rs` is gone, `tests/Cargo.toml` is not; [the web](https://example.com) is skipped.\n\
                ```sh\n\
                # not a heading\n\
                scripts/no-such-script.sh --flag\n\
                ```\n";
    let mut report = Report::default();
    check_document("example.md", root, root, text, &mut report);
    assert_eq!(report.links, 4, "links counted in the self-check: {report:#?}");
    assert_eq!(report.paths, 3, "paths counted in the self-check: {report:#?}");
    let expected = [
        "example.md:2: links to no/such/picture.png",
        "example.md:2: links to #nowhere",
        "example.md:3: names train/src/no_such_file.rs",
        "example.md:6: names scripts/no-such-script.sh",
    ];
    assert_eq!(report.failures.len(), expected.len(), "the self-check's failures: {:#?}", report.failures);
    for (failure, start) in report.failures.iter().zip(expected) {
        assert!(failure.starts_with(start), "expected a failure starting {start:?}, got {failure:?}");
    }
    assert_eq!(
        anchors("# Twemoji food (131 pictures)\n## `eval`, again\n## `eval`, again\n"),
        ["twemoji-food-131-pictures", "eval-again", "eval-again-1"]
    );
}

#[test]
fn the_checker_catches_broken_links_anchors_and_gone_files() {
    self_check(&repo_root());
}

#[test]
fn documents_link_and_name_only_files_that_exist() {
    let root = repo_root();
    self_check(&root);
    let docs = documents(&root);
    assert!(docs.len() >= 4, "expected README.md and the other documents, found {docs:?}");
    let mut report = Report::default();
    for doc in &docs {
        let text = std::fs::read_to_string(doc).unwrap_or_else(|e| panic!("{}: {e}", doc.display()));
        let name = doc.strip_prefix(&root).unwrap_or(doc).display().to_string();
        check_document(&name, doc.parent().unwrap_or(&root), &root, &text, &mut report);
    }
    assert!(
        report.failures.is_empty(),
        "{} reference(s) in the documents point at nothing:\n{}",
        report.failures.len(),
        report.failures.join("\n")
    );
    assert!(
        report.links >= MIN_LINKS && report.paths >= MIN_PATHS,
        "only {} links and {} paths found in {} documents (expected at least {MIN_LINKS} and {MIN_PATHS}): \
         is the checker still reading them?",
        report.links,
        report.paths,
        docs.len()
    );
}
