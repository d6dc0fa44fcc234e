//! `file:line:column` for our own errors, from the source code info protox keeps, in the
//! form protox prints its own (`users/v1/users.proto:12:5: ...`).

use std::collections::HashMap;
use std::path::PathBuf;

use prost_types::FileDescriptorProto;

/// The text of the files being compiled, read only when an error needs a column inside
/// an option's value.
#[derive(Debug, Default)]
pub(crate) struct Sources {
    /// File name (as imported) to its path on disk.
    paths: HashMap<String, PathBuf>,
    /// File name to text, for files served from memory.
    texts: HashMap<String, &'static str>,
}

impl Sources {
    pub(crate) fn on_disk(&mut self, name: &str, path: PathBuf) {
        self.paths.insert(name.to_owned(), path);
    }

    pub(crate) fn in_memory(&mut self, name: &str, text: &'static str) {
        self.texts.insert(name.to_owned(), text);
    }

    fn text(&self, name: &str) -> Option<String> {
        if let Some(text) = self.texts.get(name) {
            return Some((*text).to_owned());
        }
        std::fs::read_to_string(self.paths.get(name)?).ok()
    }
}

/// A 0-based position, as in `SourceCodeInfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Pos {
    line: usize,
    column: usize,
}

/// `file:line:column: message`, or `file: message` when the file has no source info.
pub(crate) fn message(
    file: &FileDescriptorProto,
    place: Option<(usize, usize)>,
    what: &str,
) -> String {
    match place {
        Some((line, column)) => format!("{}:{}:{}: {what}", file.name(), line + 1, column + 1),
        None => format!("{}: {what}", file.name()),
    }
}

/// Start of the element at `path`, e.g. `[6, 0, 2, 1, 1]` for the name of the second
/// RPC of the first service.
pub(crate) fn start(file: &FileDescriptorProto, path: &[i32]) -> Option<(usize, usize)> {
    locations(file)
        .find(|(p, _)| *p == path)
        .map(|(_, (s, _))| (s.line, s.column))
}

/// Where `key` of the option message at `option` (e.g. `[6, 0, 2, 1, 4, 51871]`) is set.
///
/// protox records `option (x).key = ..;` under `option + [key_number]`, and
/// `option (x) = { key: .. };` only as a whole; for the latter, the key is looked up in
/// the statement's text, so the error points at the key rather than at `option`.
pub(crate) fn option_key(
    file: &FileDescriptorProto,
    sources: &Sources,
    option: &[i32],
    key: &str,
    key_number: i32,
) -> Option<(usize, usize)> {
    let with_key = [option, &[key_number]].concat();
    if let Some((_, (s, _))) = locations(file).find(|(p, _)| p.starts_with(&with_key)) {
        return Some((s.line, s.column));
    }
    let statements: Vec<(Pos, Pos)> = locations(file)
        .filter(|(p, _)| *p == option)
        .map(|(_, span)| span)
        .collect();
    if let Some(text) = sources.text(file.name()) {
        for &(from, to) in &statements {
            if let Some(pos) = find_key(&text, from, to, key) {
                return Some((pos.line, pos.column));
            }
        }
    }
    statements
        .first()
        .map(|(s, _)| (s.line, s.column))
        .or_else(|| {
            // The option may be known only by an enclosing element.
            (1..option.len())
                .rev()
                .find_map(|n| start(file, &option[..n]))
        })
}

fn locations(file: &FileDescriptorProto) -> impl Iterator<Item = (&[i32], (Pos, Pos))> {
    file.source_code_info
        .iter()
        .flat_map(|info| &info.location)
        .filter_map(|l| {
            let span = |i: usize| l.span.get(i).map(|&v| usize::try_from(v).unwrap_or(0));
            let start = Pos {
                line: span(0)?,
                column: span(1)?,
            };
            let end = match l.span.len() {
                3 => Pos {
                    line: start.line,
                    column: span(2)?,
                },
                _ => Pos {
                    line: span(2)?,
                    column: span(3)?,
                },
            };
            Some((l.path.as_slice(), (start, end)))
        })
}

/// The first identifier `key` between `from` and `to` in `text`, outside comments and
/// string literals. Columns are byte offsets, as protox counts them.
fn find_key(text: &str, from: Pos, to: Pos, key: &str) -> Option<Pos> {
    let mut line_starts = vec![0];
    line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
    let offset = |p: Pos| line_starts.get(p.line).map(|s| s + p.column);
    let (start, end) = (offset(from)?, offset(to)?.min(text.len()));
    let bytes = text.as_bytes();
    let mut i = start;
    while i < end {
        let c = bytes[i];
        if text[i..].starts_with("//") {
            i += text[i..].find('\n').unwrap_or(end - i);
        } else if text[i..].starts_with("/*") {
            i += text[i + 2..].find("*/").map_or(end - i, |n| n + 4);
        } else if c == b'"' || c == b'\'' {
            i += 1;
            while i < end && bytes[i] != c {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let word_end = text[i..end]
                .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
                .map_or(end, |n| i + n);
            if &text[i..word_end] == key {
                let line = line_starts.partition_point(|&s| s <= i) - 1;
                return Some(Pos {
                    line,
                    column: i - line_starts[line],
                });
            }
            i = word_end;
        } else {
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_outside_comments_and_strings() {
        let text = "  option (x.rpc) = {\n    // timeout_ms: 1\n    roles: [\"timeout_ms\"],\n    timeout_ms: 0\n  };\n";
        let from = Pos { line: 0, column: 2 };
        let to = Pos { line: 4, column: 4 };
        assert_eq!(
            find_key(text, from, to, "timeout_ms"),
            Some(Pos { line: 3, column: 4 })
        );
        assert_eq!(
            find_key(text, from, to, "roles"),
            Some(Pos { line: 2, column: 4 })
        );
        assert_eq!(find_key(text, from, to, "public"), None);
    }
}
