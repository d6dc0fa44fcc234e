//! The crate's generated prost and tonic code (in its `OUT_DIR`, from `build.rs` through
//! `tonic_intercept_build`) is byte for byte what tonic-prost-build emits for the same protos
//! and the same options, once the `<service>_intercept` modules are taken out: the switch
//! changes nothing of the code the service and its tests were written against.
//!
//! tonic-prost-build is given the descriptor set protox compiles, through `compile_protos`
//! with `skip_protoc_run` (its `build.rs` path, without a `protoc` on the test machine).

#[path = "../../../codegen/tests/support/intercept_modules.rs"]
mod intercept_modules;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const PROTOS: &[&str] = &[
    "proto/inventory/v1/inventory.proto",
    "proto/orders/v1/orders.proto",
];
const INCLUDES: &[&str] = &["proto", "common/proto"];

fn manifest(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The generated `.rs` files of `dir`, by name.
fn rust_files(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect()
}

#[test]
fn generated_code_is_tonic_prost_builds_apart_from_the_intercept_modules() {
    let out = std::env::temp_dir().join(format!("ti-adoption-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let protos: Vec<PathBuf> = PROTOS.iter().map(|p| manifest(p)).collect();
    let includes: Vec<PathBuf> = INCLUDES.iter().map(|p| manifest(p)).collect();
    let set = out.join("set.bin");
    let fds = protox::compile(&protos, &includes).unwrap();
    std::fs::write(&set, prost::Message::encode_to_vec(&fds)).unwrap();

    // build.rs's options, on tonic-prost-build.
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .type_attribute(".", "#[derive(serde::Serialize, serde::Deserialize)]")
        .extern_path(".common.v1", "::adoption_common::common::v1")
        .bytes(".")
        .btree_map(".inventory.v1.Item.attributes")
        .include_file("_includes.rs")
        .out_dir(&out)
        .file_descriptor_set_path(&set)
        .skip_protoc_run()
        .compile_protos(&protos, &includes)
        .unwrap();

    let tonic = rust_files(&out);
    std::fs::remove_dir_all(&out).unwrap();
    let mut ours = rust_files(Path::new(env!("OUT_DIR")));
    assert_eq!(
        tonic.keys().collect::<Vec<_>>(),
        ["_includes.rs", "inventory.v1.rs", "orders.v1.rs"]
    );
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        tonic.keys().collect::<Vec<_>>()
    );
    for (file, module) in [
        ("inventory.v1.rs", "inventory_service_intercept"),
        ("orders.v1.rs", "order_service_intercept"),
    ] {
        let text = ours.get_mut(file).unwrap();
        assert!(text.contains(&format!("pub mod {module} {{")), "{file}");
        let (rest, modules) = intercept_modules::strip(text);
        assert_eq!(modules, 1, "{file}");
        *text = rest;
    }
    for (name, text) in &tonic {
        assert!(
            ours[name] == *text,
            "{name} differs:\n--- tonic-prost-build\n{text}\n--- tonic-intercept-build\n{}",
            ours[name]
        );
    }
    // The options reached the code.
    let orders = &tonic["orders.v1.rs"];
    assert!(orders.contains("#[derive(serde::Serialize, serde::Deserialize)]"));
    assert!(orders.contains("::adoption_common::common::v1::Money"));
    assert!(orders.contains("pub note: ::prost::bytes::Bytes"));
}
