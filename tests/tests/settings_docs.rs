//! The settings' two references agree with the code: README's settings table and
//! `canard-train --help` name the same flags, and the default either states for each
//! architecture (and fastgan on grey pictures) is what the settings resolve to: only the
//! `[default: …]` of `--help`, and of either only the part that applies ("64; fastgan 16":
//! 16 for fastgan, 64 for the others). README's table states each setting's declared range.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use canard_e2e::{cargo_bin, workspace_root};
use canard_train::{Arch, Settings};

/// `--help` of the trainer: each flag with its whole description.
fn help() -> BTreeMap<String, String> {
    let out = Command::new(cargo_bin("canard-train", "canard-train")).arg("--help").output().expect("--help runs");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let mut flags = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("--") && line.starts_with("      --") {
            let flag = trimmed.split([' ', '<', '[', '=']).next().unwrap().to_string();
            current = Some(flag.clone());
            flags.insert(flag, String::new());
        } else if let Some(f) = &current {
            flags.get_mut(f).unwrap().push_str(trimmed);
            flags.get_mut(f).unwrap().push(' ');
        }
    }
    flags.remove("--help");
    flags.remove("--version");
    flags
}

/// README's settings table: each flag with its default cell (a row may name several flags).
fn readme() -> BTreeMap<String, String> {
    readme_column(1)
}

/// README's settings table: each flag with its cell in `column` (0 is the flag's).
fn readme_column(column: usize) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let section = text.split("### Settings").nth(1).expect("README has a Settings section");
    let section = section.split("\n#").next().unwrap();
    let mut flags = BTreeMap::new();
    for row in section.lines().filter(|l| l.starts_with("| `--")) {
        let cells: Vec<&str> = row.split(" | ").collect();
        for flag in cells[0].split('`').filter(|t| t.starts_with("--")) {
            flags.insert(flag.to_string(), cells[column].to_string());
        }
    }
    flags
}

/// `--help`'s `[default: …]` of a flag's text, if it states one.
fn stated_default(text: &str) -> Option<&str> {
    let start = text.find("[default: ")? + "[default: ".len();
    let mut depth = 1;
    for (i, c) in text[start..].char_indices() {
        match c {
            '[' => depth += 1,
            ']' if depth == 1 => return Some(&text[start..start + i]),
            ']' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// The architectures a clause names, as words ("wgan" is not "wgan-gp").
fn archs_named(clause: &str) -> Vec<&str> {
    let words: Vec<&str> = clause.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-')).collect();
    ["fastgan", "dcgan", "wgan", "wgan-gp"].into_iter().filter(|a| words.contains(a)).collect()
}

/// The part of a default's text that applies to `arch` (on grey pictures when `grey`): the
/// clause naming grey pictures, or the architecture (or the first after it with a number:
/// "fastgan, dcgan 2e-4"), else the first naming no architecture.
fn for_arch<'t>(text: &'t str, arch: &str, grey: bool) -> &'t str {
    let clauses: Vec<&str> = text.split([';', '(', ')']).flat_map(|c| c.split(", ")).map(str::trim).collect();
    let is_grey = |c: &str| c.contains("grey");
    if grey {
        if let Some(c) = clauses.iter().find(|c| is_grey(c) && archs_named(c).iter().all(|a| *a == arch)) {
            return c;
        }
    }
    let plain: Vec<&str> = clauses.into_iter().filter(|c| !is_grey(c)).collect();
    if let Some(i) = plain.iter().position(|c| archs_named(c).contains(&arch)) {
        if let Some(c) = plain[i..].iter().find(|c| !numbers(c).is_empty()) {
            return c;
        }
    }
    plain.iter().find(|c| archs_named(c).is_empty() && !numbers(c).is_empty()).copied().unwrap_or(text)
}

/// Every number written in `text` ("2e-4", "0.999", "16", "128,000").
fn numbers(text: &str) -> Vec<f64> {
    let mut found = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_ascii_digit() && (i == 0 || !chars[i - 1].is_alphanumeric()) {
            let mut j = i;
            while j < chars.len()
                && (chars[j].is_ascii_digit()
                    || chars[j] == '.'
                    || (chars[j] == ',' && chars.get(j + 1).is_some_and(char::is_ascii_digit))
                    || (chars[j] == 'e' && chars.get(j + 1).is_some_and(|c| *c == '-' || c.is_ascii_digit()))
                    || (chars[j] == '-' && j > 0 && chars[j - 1] == 'e'))
            {
                j += 1;
            }
            let token: String = chars[i..j].iter().filter(|c| **c != ',').collect();
            if let Ok(v) = token.trim_end_matches('.').parse() {
                found.push(v);
            }
            i = j;
        } else {
            i += 1;
        }
    }
    found
}

#[test]
fn readme_and_help_name_the_same_flags_with_the_resolved_defaults() {
    let (help, readme) = (help(), readme());
    let named = |m: &BTreeMap<String, String>| m.keys().cloned().collect::<BTreeSet<_>>();
    assert!(help.len() >= 38, "--help lists {} flags: the parser missed some", help.len());
    assert_eq!(named(&help), named(&readme), "--help and README's settings table name different flags");

    let mut checked = 0;
    for (arch, grey) in [
        (Arch::Fastgan, false),
        (Arch::Fastgan, true),
        (Arch::Dcgan, false),
        (Arch::Wgan, false),
        (Arch::WganGp, false),
    ] {
        let settings = Settings {
            data: Some("d".into()),
            name: Some("n".into()),
            arch: Some(arch),
            channels: grey.then_some(1),
            ..Settings::default()
        };
        let serde_json::Value::Object(resolved) = serde_json::to_value(settings.resolve().unwrap()).unwrap() else {
            panic!("settings are a table")
        };
        for (key, value) in resolved {
            // Given here, not defaulted.
            if key == "channels" {
                continue;
            }
            let Some(value) = value.as_f64().filter(|_| value.is_number()) else { continue };
            let flag = format!("--{key}");
            let name = &arch.name();
            for (what, table) in [("README", &readme), ("--help", &help)] {
                let default = |flag: &str| match what {
                    "--help" => stated_default(&table[flag]).unwrap_or(""),
                    _ => table[flag].as_str(),
                };
                let cell = default(&flag);
                // "as `--lr-g`": that flag's default.
                let same_as =
                    cell.split("as ").nth(1).and_then(|r| r.trim_start_matches('`').split(['`', ']', ' ']).next());
                let stated = match same_as.filter(|f| f.starts_with("--") && table.contains_key(*f)) {
                    Some(other) => numbers(for_arch(default(other), name, grey)),
                    None => numbers(for_arch(cell, name, grey)),
                };
                // A setting with no number in its text (a flag read by one architecture, say) states none.
                if stated.is_empty() && what == "--help" {
                    continue;
                }
                let close = stated.iter().any(|s| (s - value).abs() <= 1e-12 * value.abs().max(1.0));
                assert!(close, "{what} gives {flag} as {cell:?}, but {arch:?} (grey: {grey}) resolves it to {value}");
                checked += 1;
            }
        }
    }
    assert!(checked > 150, "only {checked} defaults compared");
}

/// Each finite end of a setting's declared range is a number its README row states
/// ("1–4096", "> 0", "[0, 1)"), and the range refuses what lies just past its ends.
#[test]
fn readme_states_each_declared_range() {
    let what = readme_column(2);
    assert!(canard_train::config::RANGES.len() >= 20, "only {} ranges declared", canard_train::config::RANGES.len());
    for (field, range) in canard_train::config::RANGES {
        let flag = format!("--{}", field.replace('_', "-"));
        let cell = what.get(&flag).unwrap_or_else(|| panic!("README has no row for {flag}"));
        let stated = numbers(cell);
        for end in [range.low, range.high].into_iter().filter(|e| e.is_finite()) {
            assert!(
                stated.contains(&end),
                "README's {flag} row ({cell:?}) does not state its range's end {end}: {range}"
            );
        }
    }
}

#[test]
fn each_architecture_reads_its_own_part_of_a_default() {
    let text = "64; fastgan 16 (or 8 on grey pictures)";
    assert_eq!(numbers(for_arch(text, "dcgan", false)), [64.0]);
    assert_eq!(numbers(for_arch(text, "fastgan", false)), [16.0]);
    assert_eq!(numbers(for_arch(text, "fastgan", true)), [8.0]);
    let lr = "fastgan, dcgan 2e-4; wgan 5e-5; wgan-gp 1e-4";
    assert_eq!(numbers(for_arch(lr, "fastgan", false)), [2e-4]);
    assert_eq!(numbers(for_arch(lr, "wgan", false)), [5e-5]);
    assert_eq!(numbers(for_arch(lr, "wgan-gp", false)), [1e-4]);
    assert_eq!(numbers(for_arch(lr, "dcgan", false)), [2e-4]);
    assert_eq!(stated_default("Width, at most 134,217,728 [default: 64; fastgan 16]"), Some("64; fastgan 16"));
    assert_eq!(stated_default("No default here, 5 to 10"), None);
}

#[test]
fn numbers_are_read_as_written() {
    assert_eq!(
        numbers("fastgan 2e-4, wgan 5e-5; 0.999 and 128,000 (x2) [default: 16]"),
        [2e-4, 5e-5, 0.999, 128000.0, 16.0]
    );
}
