//! Bad input gets a clear error: `file:line:column` and what is wrong, nothing written.

use std::path::PathBuf;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tonic-intercept-build-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("out")).unwrap();
    dir
}

#[test]
fn undefined_type_reports_file_line_column() {
    let dir = scratch("undefined");
    std::fs::write(
        dir.join("bad.proto"),
        "syntax = \"proto3\";\npackage bad.v1;\n\nservice S {\n  rpc Get(Missing) returns (Missing);\n}\n",
    )
    .unwrap();
    let error = tonic_intercept_build::configure()
        .out_dir(dir.join("out"))
        .emit_rerun_if_changed(false)
        .compile_protos(&[dir.join("bad.proto")], &[&dir])
        .unwrap_err();
    let message = format!("{error:?}");
    assert!(
        message.starts_with("tonic-intercept-build: cannot compile proto: "),
        "{message}"
    );
    assert!(message.contains("bad.proto:5:11"), "{message}");
    assert!(message.contains("Missing"), "{message}");
    assert_eq!(std::fs::read_dir(dir.join("out")).unwrap().count(), 0);
}

#[test]
fn syntax_error_reports_file_line_column() {
    let dir = scratch("syntax");
    std::fs::write(
        dir.join("bad.proto"),
        "syntax = \"proto3\";\nmessage M { int32 x = ; }\n",
    )
    .unwrap();
    let error = tonic_intercept_build::configure()
        .out_dir(dir.join("out"))
        .emit_rerun_if_changed(false)
        .compile_protos(&[dir.join("bad.proto")], &[&dir])
        .unwrap_err();
    let message = error.to_string();
    assert!(message.contains("bad.proto:2:"), "{message}");
}

#[test]
fn missing_file_says_which() {
    let dir = scratch("missing");
    let error = tonic_intercept_build::configure()
        .out_dir(dir.join("out"))
        .emit_rerun_if_changed(false)
        .compile_protos(&[dir.join("nope.proto")], &[&dir])
        .unwrap_err();
    assert!(error.to_string().contains("nope.proto"), "{error}");
}
