//! The encoded `FileDescriptorSet` that reflection serves: written next to the code by
//! default, or where `file_descriptor_set_path` says, with every import and the options.

use std::path::PathBuf;

use prost::Message;
use prost_types::FileDescriptorSet;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tonic-intercept-build-fds-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("out")).unwrap();
    std::fs::write(
        dir.join("shop.proto"),
        "syntax = \"proto3\";\npackage shop.v1;\nimport \"tonic_intercept/v1/options.proto\";\n\
         message M {}\nservice S {\n  rpc Get(M) returns (M) { option (tonic_intercept.v1.rpc) = { timeout_ms: 100 }; }\n}\n",
    )
    .unwrap();
    dir
}

fn names(bytes: &[u8]) -> Vec<String> {
    let set = FileDescriptorSet::decode(bytes).unwrap();
    set.file.iter().map(|f| f.name().to_owned()).collect()
}

#[test]
fn written_to_the_output_directory_by_default() {
    let dir = scratch("default");
    tonic_intercept_build::configure()
        .out_dir(dir.join("out"))
        .emit_rerun_if_changed(false)
        .compile_protos(&[dir.join("shop.proto")], std::slice::from_ref(&dir))
        .unwrap();
    let bytes = std::fs::read(
        dir.join("out")
            .join(tonic_intercept_build::FILE_DESCRIPTOR_SET_NAME),
    )
    .unwrap();
    // Imports first, so that a reflection client can resolve every dependency.
    assert_eq!(
        names(&bytes),
        [
            "google/protobuf/descriptor.proto",
            "tonic_intercept/v1/options.proto",
            "shop.proto"
        ]
    );
    // The `(tonic_intercept.v1.rpc)` option is kept: prost-types drops it on decoding,
    // so the re-encoded set is shorter.
    let reencoded = FileDescriptorSet::decode(&bytes[..])
        .unwrap()
        .encode_to_vec();
    assert!(reencoded.len() < bytes.len());
}

#[test]
fn written_where_file_descriptor_set_path_says() {
    let dir = scratch("path");
    let path = dir.join("shop.bin");
    tonic_intercept_build::configure()
        .out_dir(dir.join("out"))
        .emit_rerun_if_changed(false)
        .file_descriptor_set_path(&path)
        .compile_protos(&[dir.join("shop.proto")], std::slice::from_ref(&dir))
        .unwrap();
    assert_eq!(
        names(&std::fs::read(&path).unwrap()).last().unwrap(),
        "shop.proto"
    );
    assert!(
        !dir.join("out")
            .join(tonic_intercept_build::FILE_DESCRIPTOR_SET_NAME)
            .exists()
    );
}

#[test]
fn compile_fds_writes_the_set_it_was_given() {
    let dir = scratch("fds");
    let set = FileDescriptorSet {
        file: vec![prost_types::FileDescriptorProto {
            name: Some("plain.proto".into()),
            package: Some("plain.v1".into()),
            syntax: Some("proto3".into()),
            ..Default::default()
        }],
    };
    tonic_intercept_build::configure()
        .out_dir(dir.join("out"))
        .emit_rerun_if_changed(false)
        .compile_fds(set.clone())
        .unwrap();
    let bytes = std::fs::read(
        dir.join("out")
            .join(tonic_intercept_build::FILE_DESCRIPTOR_SET_NAME),
    )
    .unwrap();
    assert_eq!(FileDescriptorSet::decode(&bytes[..]).unwrap(), set);
}
