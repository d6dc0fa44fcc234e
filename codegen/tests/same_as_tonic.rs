//! The prost and tonic code we emit is tonic-prost-build's, byte for byte, for the same
//! `.proto` files and the same options: with `intercept_types(false)` the whole output, with
//! it on the output once the `<service>_intercept` modules are taken out. tonic-prost-build
//! gets the descriptor set protox compiles (no `protoc` on the test machine): through
//! `compile_fds`, and through `compile_protos` with `skip_protoc_run`, which is its
//! `compile_with_config` path, the one a `build.rs` takes.

#[path = "support/intercept_modules.rs"]
mod intercept_modules;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const SHARED: &str = r#"syntax = "proto3";
package shared.v1;

// An amount of money.
message Money {
  string currency = 1;
  int64 units = 2;
}
"#;

const SHOP: &str = r#"syntax = "proto3";
package shop.v1;

import "google/protobuf/empty.proto";
import "shared/v1/money.proto";

// An item on sale.
message Item {
  string sku = 1;
  shared.v1.Money price = 2;
  bytes thumbnail = 3;
  map<string, string> labels = 4;
  Kind kind = 5;
  oneof stock {
    uint32 count = 6;
    bool unlimited = 7;
  }
  Item parent = 8;
}

enum Kind {
  KIND_UNSPECIFIED = 0;
  KIND_BOOK = 1;
}

message GetItemRequest { string sku = 1; }
message ListItemsRequest { uint32 page_size = 1; }
message Chunk { bytes data = 1; }

// Sells things.
service Shop {
  // One item.
  rpc GetItem(GetItemRequest) returns (Item);
  // Every item, streamed.
  rpc ListItems(ListItemsRequest) returns (stream Item);
  rpc Upload(stream Chunk) returns (google.protobuf.Empty);
  rpc Sync(stream Item) returns (stream Item);
}
"#;

/// A fresh directory with the protos under `proto/`, `ours/` and `tonic/` for the output.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tonic-intercept-build-same-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    for sub in ["proto/shared/v1", "proto/shop/v1", "ours", "tonic"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    std::fs::write(dir.join("proto/shared/v1/money.proto"), SHARED).unwrap();
    std::fs::write(dir.join("proto/shop/v1/shop.proto"), SHOP).unwrap();
    dir
}

const PROTOS: &[&str] = &["shop/v1/shop.proto"];

fn protos(dir: &Path) -> Vec<PathBuf> {
    PROTOS.iter().map(|p| dir.join("proto").join(p)).collect()
}

/// What protox compiles, imports and source info included (what `protoc
/// --include_imports --include_source_info` gives prost-build).
fn descriptor_set(dir: &Path) -> prost_types::FileDescriptorSet {
    protox::compile(PROTOS, [dir.join("proto")]).unwrap()
}

/// Every file of `dir`, by name.
fn files(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&path).unwrap(),
            )
        })
        .collect()
}

/// The same options, on either builder: what real `build.rs` files set.
macro_rules! options {
    ($builder:expr) => {
        $builder
            .type_attribute(".", "#[derive(serde::Serialize, serde::Deserialize)]")
            .message_attribute(".shop.v1.Item", "#[non_exhaustive]")
            .enum_attribute("Kind", "#[allow(missing_docs)]")
            .field_attribute("Item.sku", "#[serde(rename = \"id\")]")
            .extern_path(".shared.v1", "::shared::v1")
            .bytes(".shop.v1.Chunk")
            .bytes(".shop.v1.Item.thumbnail")
            .btree_map(".")
            .boxed("Item.parent")
            .skip_debug(["GetItemRequest"])
            .include_file("_includes.rs")
            .server_mod_attribute(".", "#[cfg(not(feature = \"no-server\"))]")
            .server_attribute("Shop", "#[derive(Debug)]")
            .client_mod_attribute("shop.v1", "#[allow(unused)]")
            .client_attribute("Shop", "#[derive(Debug)]")
            .trait_attribute("Shop", "#[allow(unused)]")
            .disable_comments(["shop.v1.Shop.GetItem"])
            .generate_default_stubs(true)
            .emit_rerun_if_changed(false)
    };
}

fn assert_same(ours: &BTreeMap<String, String>, tonic: &BTreeMap<String, String>) {
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        tonic.keys().collect::<Vec<_>>(),
        "the same files"
    );
    for (name, text) in tonic {
        assert!(
            ours[name] == *text,
            "{name} differs:\n--- tonic-prost-build\n{text}\n--- tonic-intercept-build\n{}",
            ours[name]
        );
    }
}

#[test]
fn compile_fds_emits_tonic_prost_builds_bytes() {
    let dir = scratch("fds");
    options!(tonic_prost_build::configure().out_dir(dir.join("tonic")))
        .compile_fds(descriptor_set(&dir))
        .unwrap();
    options!(tonic_intercept_build::configure().out_dir(dir.join("ours")))
        .intercept_types(false)
        .file_descriptor_set_path(dir.join("ours.bin"))
        .compile_fds(descriptor_set(&dir))
        .unwrap();
    let tonic = files(&dir.join("tonic"));
    assert_eq!(
        tonic.keys().collect::<Vec<_>>(),
        ["_includes.rs", "shop.v1.rs"]
    );
    assert_same(&files(&dir.join("ours")), &tonic);
    // The options reached the code (a sample of them).
    let shop = &tonic["shop.v1.rs"];
    assert!(shop.contains("#[derive(serde::Serialize, serde::Deserialize)]"));
    assert!(shop.contains("::shared::v1::Money"));
    assert!(shop.contains("::prost::bytes::Bytes"));
    assert!(shop.contains("::prost::alloc::collections::BTreeMap"));
    assert!(!shop.contains("#[allow(clippy::all)]"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn compile_protos_emits_tonic_prost_builds_bytes() {
    let dir = scratch("protos");
    let set = dir.join("set.bin");
    std::fs::write(&set, prost::Message::encode_to_vec(&descriptor_set(&dir))).unwrap();
    options!(tonic_prost_build::configure().out_dir(dir.join("tonic")))
        .file_descriptor_set_path(&set)
        .skip_protoc_run()
        .compile_protos(&protos(&dir), &[dir.join("proto")])
        .unwrap();
    options!(tonic_intercept_build::configure().out_dir(dir.join("ours")))
        .intercept_types(false)
        .protoc_arg("--experimental_allow_proto3_optional")
        .file_descriptor_set_path(dir.join("ours.bin"))
        .compile_protos(&protos(&dir), &[dir.join("proto")])
        .unwrap();
    let tonic = files(&dir.join("tonic"));
    assert!(tonic["shop.v1.rs"].contains("#[allow(clippy::all)]"));
    assert_same(&files(&dir.join("ours")), &tonic);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn with_intercept_types_the_rest_is_tonic_prost_builds_bytes() {
    let dir = scratch("intercept");
    let set = dir.join("set.bin");
    std::fs::write(&set, prost::Message::encode_to_vec(&descriptor_set(&dir))).unwrap();
    options!(tonic_prost_build::configure().out_dir(dir.join("tonic")))
        .file_descriptor_set_path(&set)
        .skip_protoc_run()
        .compile_protos(&protos(&dir), &[dir.join("proto")])
        .unwrap();
    options!(tonic_intercept_build::configure().out_dir(dir.join("ours")))
        .file_descriptor_set_path(dir.join("ours.bin"))
        .compile_protos(&protos(&dir), &[dir.join("proto")])
        .unwrap();
    let mut ours = files(&dir.join("ours"));
    let shop = ours.get_mut("shop.v1.rs").unwrap();
    assert!(shop.contains("pub struct Client<T, H = ()>"));
    assert!(
        shop.contains("::tonic_intercept::__private::Edged for super::shop_server::ShopServer<T>")
    );
    // The modules' attributes reach what names them: a `#[cfg]` on tonic's server module
    // holds for our `Edged` impl, the client module's for our `Client`.
    assert!(shop.contains(
        "    #[cfg(not(feature = \"no-server\"))]\n    impl<T> ::tonic_intercept::__private::Edged"
    ));
    assert!(shop.contains("    #[allow(unused)]\n    pub struct Client<T, H = ()>"));
    assert_eq!(shop.matches("#[allow(unused)]\n    impl<").count(), 4);
    // `disable_comments` reaches our module too: `GetItem`'s docs are gone, `ListItems`' not.
    assert!(!shop.contains("One item."));
    assert!(shop.contains("Every item, streamed."));
    let (stripped, modules) = intercept_modules::strip(shop);
    assert_eq!(modules, 1);
    *shop = stripped;
    assert_same(&ours, &files(&dir.join("tonic")));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn build_client_false_emits_no_client_of_ours_either() {
    let dir = scratch("server-only");
    options!(tonic_prost_build::configure().out_dir(dir.join("tonic")))
        .build_client(false)
        .compile_fds(descriptor_set(&dir))
        .unwrap();
    options!(tonic_intercept_build::configure().out_dir(dir.join("ours")))
        .build_client(false)
        .file_descriptor_set_path(dir.join("ours.bin"))
        .compile_fds(descriptor_set(&dir))
        .unwrap();
    let mut ours = files(&dir.join("ours"));
    let shop = ours.get_mut("shop.v1.rs").unwrap();
    assert!(shop.contains("pub mod shop_intercept {"));
    assert!(!shop.contains("shop_client"), "no client of tonic's");
    assert!(!shop.contains("pub struct Client"), "no client of ours");
    assert!(!shop.contains("ClientCore"), "no client of ours");
    assert!(shop.contains("impl<T> ::tonic_intercept::__private::Edged"));
    let (stripped, modules) = intercept_modules::strip(shop);
    assert_eq!(modules, 1);
    *shop = stripped;
    assert_same(&ours, &files(&dir.join("tonic")));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn build_server_false_emits_no_edged_impl() {
    let dir = scratch("client-only");
    tonic_intercept_build::configure()
        .build_server(false)
        .emit_rerun_if_changed(false)
        .out_dir(dir.join("ours"))
        .file_descriptor_set_path(dir.join("ours.bin"))
        .compile_fds(descriptor_set(&dir))
        .unwrap();
    let shop = &files(&dir.join("ours"))["shop.v1.rs"];
    assert!(shop.contains("pub mod shop_intercept {"));
    assert!(shop.contains("pub struct Client<T, H = ()>"));
    assert!(!shop.contains("Edged"));
    assert!(!shop.contains("shop_server"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn another_codec_keeps_tonics_client_and_drops_ours() {
    let dir = scratch("codec");
    tonic_intercept_build::configure()
        .codec_path("crate::JsonCodec")
        .proto_path("crate::pb")
        .emit_rerun_if_changed(false)
        .out_dir(dir.join("ours"))
        .file_descriptor_set_path(dir.join("ours.bin"))
        .compile_fds(descriptor_set(&dir))
        .unwrap();
    let shop = &files(&dir.join("ours"))["shop.v1.rs"];
    assert!(shop.contains("pub struct ShopClient<T>"));
    assert!(shop.contains("crate::JsonCodec"));
    assert!(!shop.contains("pub struct Client<T, H = ()>"));
    // `proto_path` moves the messages for tonic's modules and ours alike.
    assert!(shop.contains("type Request = crate::pb::GetItemRequest;"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn skip_protoc_run_reads_the_set_and_needs_its_path() {
    let dir = scratch("skip");
    let set = dir.join("set.bin");
    std::fs::write(&set, prost::Message::encode_to_vec(&descriptor_set(&dir))).unwrap();
    tonic_intercept_build::configure()
        .emit_rerun_if_changed(false)
        .out_dir(dir.join("ours"))
        .file_descriptor_set_path(&set)
        .skip_protoc_run()
        .compile_protos(&["unused.proto"], &["unused"])
        .unwrap();
    assert!(files(&dir.join("ours"))["shop.v1.rs"].contains("pub mod shop_intercept {"));
    let error = tonic_intercept_build::configure()
        .out_dir(dir.join("ours"))
        .skip_protoc_run()
        .compile_protos(&["unused.proto"], &["unused"])
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "tonic-intercept-build: `skip_protoc_run` reads the set at `file_descriptor_set_path`: set it"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn errors_convert_for_a_build_rs_returning_io_result() {
    fn main_like() -> std::io::Result<()> {
        tonic_intercept_build::compile_protos("/nonexistent/dir/x.proto")?;
        Ok(())
    }
    let error = main_like().unwrap_err();
    assert!(error.to_string().contains("x.proto"), "{error}");
}

#[test]
fn extended_rust_types_reach_tonics_code_and_ours() {
    let dir = scratch("extended");
    std::fs::write(
        dir.join("proto/shop/v1/flags.proto"),
        "syntax = \"proto3\";\npackage flags.v1;\nimport \"google/protobuf/wrappers.proto\";\n\
         service Flags {\n  rpc Enabled(google.protobuf.StringValue) returns (google.protobuf.BoolValue);\n}\n",
    )
    .unwrap();
    let protos = [dir.join("proto/shop/v1/flags.proto")];
    let set = dir.join("set.bin");
    let fds = protox::compile(&protos, [dir.join("proto")]).unwrap();
    std::fs::write(&set, prost::Message::encode_to_vec(&fds)).unwrap();
    tonic_prost_build::configure()
        .with_extended_rust_types(true)
        .out_dir(dir.join("tonic"))
        .file_descriptor_set_path(&set)
        .skip_protoc_run()
        .compile_protos(&protos, &[dir.join("proto")])
        .unwrap();
    tonic_intercept_build::configure()
        .with_extended_rust_types(true)
        .emit_rerun_if_changed(false)
        .out_dir(dir.join("ours"))
        .file_descriptor_set_path(dir.join("ours.bin"))
        .compile_protos(&protos, &[dir.join("proto")])
        .unwrap();
    let mut ours = files(&dir.join("ours"));
    let flags = ours.get_mut("flags.v1.rs").unwrap();
    assert!(flags.contains("type Request = ::prost::alloc::string::String;"));
    assert!(flags.contains("type Response = bool;"));
    let (stripped, modules) = intercept_modules::strip(flags);
    assert_eq!(modules, 1);
    *flags = stripped;
    let tonic = files(&dir.join("tonic"));
    assert!(tonic["flags.v1.rs"].contains("tonic::Response<bool>"));
    assert_same(&ours, &tonic);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_prost_config_of_the_users_applies_as_in_tonic_prost_build() {
    let dir = scratch("config");
    let set = dir.join("set.bin");
    std::fs::write(&set, prost::Message::encode_to_vec(&descriptor_set(&dir))).unwrap();
    let config = || {
        let mut config = tonic_intercept_build::Config::new();
        config
            .retain_enum_prefix()
            .enable_type_names()
            .disable_comments(["."]);
        config
    };
    options!(tonic_prost_build::configure().out_dir(dir.join("tonic")))
        .file_descriptor_set_path(&set)
        .skip_protoc_run()
        .compile_with_config(config(), &protos(&dir), &[dir.join("proto")])
        .unwrap();
    options!(tonic_intercept_build::configure().out_dir(dir.join("ours")))
        .intercept_types(false)
        .file_descriptor_set_path(dir.join("ours.bin"))
        .compile_with_config(config(), &protos(&dir), &[dir.join("proto")])
        .unwrap();
    let tonic = files(&dir.join("tonic"));
    let shop = &tonic["shop.v1.rs"];
    assert!(shop.contains("KindBook = 1"), "retain_enum_prefix");
    assert!(
        shop.contains("impl ::prost::Name for Item"),
        "enable_type_names"
    );
    assert!(
        !shop.contains("An item on sale."),
        "disable_comments of messages"
    );
    assert_same(&files(&dir.join("ours")), &tonic);
    std::fs::remove_dir_all(&dir).unwrap();
}
