//! Takes the `<service>_intercept` modules out of a generated package file, to compare the
//! rest with tonic-prost-build's output. Shared by `codegen/tests/same_as_tonic.rs` and
//! `tests/adoption/tests/same_as_tonic.rs` (through `#[path]`).

/// `text` without each top-level `pub mod <service>_intercept { .. }` and its doc comment,
/// and how many there were.
pub(crate) fn strip(text: &str) -> (String, usize) {
    let mut out = Vec::new();
    let mut modules = 0;
    let mut lines = text.lines();
    let mut docs: Vec<&str> = Vec::new();
    while let Some(line) = lines.next() {
        if line.starts_with("///") {
            docs.push(line);
            continue;
        }
        if line.starts_with("pub mod ") && line.ends_with("_intercept {") {
            modules += 1;
            docs.clear();
            // prettyplease closes a top-level item with `}` at column 0.
            for inner in lines.by_ref() {
                if inner == "}" {
                    break;
                }
            }
            continue;
        }
        out.append(&mut docs);
        out.push(line);
    }
    out.append(&mut docs);
    let mut text = out.join("\n");
    text.push('\n');
    (text, modules)
}
