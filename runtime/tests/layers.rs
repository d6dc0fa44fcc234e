//! The runtime's modules form layers: each uses only the layers below it (and its own
//! folder), so there is no cycle and no upward import. This reads `src/` and checks
//! every `crate::` path outside tests and macro bodies.

use std::fs;
use std::path::Path;

/// Layer of a top-level module of the crate (`crate::<name>`), and the group whose
/// members may use each other.
fn layer(module: &str) -> Option<(u8, &'static str)> {
    Some(match module {
        "wire" | "util" => (0, "leaf"),
        // One layer: an RPC's span is made from a call (`Rpc::span`), and a call knows
        // its RPC (`Call::rpc`).
        "rpc" | "call" => (1, "model"),
        "policy" | "auth" | "idempotency" | "limits" | "validate" => (3, "policy"),
        "metrics" => (4, "metrics"),
        "trace" => (5, "trace"),
        "server" => (6, "server"),
        "client" => (6, "client"),
        // Test helpers (feature `testing`): serve a `server::Server` in memory, build the
        // `Call` a policy receives.
        "testing" => (7, "testing"),
        "__private" | "private" | "deprecated" | "lib" => (8, "door"),
        // Macros exported at the root (`crate::__doc_rpc!`): used by tests only.
        _ => return None,
    })
}

/// The top-level module a source file belongs to.
fn module_of(path: &Path, src: &Path) -> String {
    let relative = path.strip_prefix(src).unwrap();
    let first = relative
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn modules_use_only_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    files(&src, &mut paths);
    let mut violations = Vec::new();
    for path in &paths {
        let from = module_of(path, &src);
        let (from_layer, from_group) =
            layer(&from).unwrap_or_else(|| panic!("{from} has no layer"));
        let text = fs::read_to_string(path).unwrap();
        // Unit tests may reach anywhere; they end the file by convention.
        let code = text.split("#[cfg(test)]").next().unwrap();
        if path.parent().unwrap().file_name().unwrap() == "retry" {
            continue; // client/retry/*.rs are test modules
        }
        for (n, line) in code.lines().enumerate() {
            let line = line.trim_start();
            if line.starts_with("//") {
                continue;
            }
            for (i, _) in line.match_indices("crate::") {
                if line[..i].ends_with('$') {
                    continue; // a macro's output, not an import
                }
                let rest = &line[i + "crate::".len()..];
                let to: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if to.starts_with(|c: char| c.is_ascii_uppercase()) {
                    // `crate::Call`: a root re-export hides which module is used.
                    violations.push(format!(
                        "{}:{}: {from} uses crate::{to}",
                        path.display(),
                        n + 1
                    ));
                    continue;
                }
                let Some((to_layer, to_group)) = layer(&to) else {
                    continue;
                };
                if to_group != from_group && to_layer >= from_layer {
                    violations.push(format!("{}:{}: {from} uses {to}", path.display(), n + 1));
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "upward or sideways imports:\n{}",
        violations.join("\n")
    );
}
