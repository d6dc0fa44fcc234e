//! Keeps ARCHITECTURE.md honest: every repository path it names in backticks exists, and
//! every crate of the workspace is named in it.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .to_path_buf()
}

fn read(relative: &str) -> String {
    let path = root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The text between backticks, outside fenced blocks.
fn code_spans(markdown: &str) -> Vec<String> {
    let mut spans = Vec::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut parts = line.split('`');
        parts.next();
        while let (Some(inside), Some(_)) = (parts.next(), parts.next()) {
            spans.push(inside.to_string());
        }
    }
    spans
}

/// A code span that names a file or folder of the repository: it starts with one of the
/// workspace's top-level folders and has no spaces or Rust path separators.
fn is_repo_path(span: &str) -> bool {
    const TOP: &[&str] = &[
        "spec/",
        "macros/",
        "codegen/",
        "runtime/",
        "examples/",
        "tests/",
        "bench/",
    ];
    TOP.iter().any(|top| span.starts_with(top))
        && !span.contains(' ')
        && !span.contains("::")
        && !span.contains('*')
}

#[test]
fn every_path_named_in_architecture_md_exists() {
    let text = read("ARCHITECTURE.md");
    let paths: Vec<_> = code_spans(&text)
        .into_iter()
        .filter(|s| is_repo_path(s))
        .collect();
    assert!(
        paths.len() >= 20,
        "ARCHITECTURE.md names only {} paths; the test found too few to be reading it right",
        paths.len()
    );
    let missing: Vec<_> = paths.iter().filter(|p| !root().join(p).exists()).collect();
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names paths that do not exist: {missing:?}"
    );
}

#[test]
fn every_workspace_crate_is_named_in_architecture_md() {
    let text = read("ARCHITECTURE.md");
    let manifest = read("Cargo.toml");
    let members = manifest
        .split("members")
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .expect("the workspace manifest lists its members");
    for member in members.split('"').skip(1).step_by(2) {
        let package = read(&format!("{member}/Cargo.toml"));
        let name = package
            .lines()
            .find_map(|l| l.trim().strip_prefix("name = \""))
            .and_then(|rest| rest.strip_suffix('"'))
            .unwrap_or_else(|| panic!("{member}/Cargo.toml has no package name"));
        assert!(
            text.contains(&format!("{member}/")) && text.contains(name),
            "ARCHITECTURE.md does not name the crate `{name}` in `{member}/`"
        );
    }
}

#[test]
fn architecture_md_stays_short() {
    let lines = read("ARCHITECTURE.md").lines().count();
    assert!(
        lines <= 130,
        "ARCHITECTURE.md has {lines} lines: a map, not a manual"
    );
}
