//! The real `protoc-gen-tonic-intercept` binary, fed `CodeGeneratorRequest`s built with
//! protox (and once by a real protoc when one is installed), against what
//! `tonic_intercept_build::configure().compile_protos(..)` writes for the same protos.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use prost::Message;

const BIN: &str = env!("CARGO_BIN_EXE_protoc-gen-tonic-intercept");

/// `CodeGeneratorRequest`, its files as raw bytes so that their custom options survive.
#[derive(Clone, PartialEq, Message)]
struct Request {
    #[prost(string, repeated, tag = "1")]
    file_to_generate: Vec<String>,
    #[prost(string, optional, tag = "2")]
    parameter: Option<String>,
    #[prost(bytes = "vec", repeated, tag = "15")]
    proto_file: Vec<Vec<u8>>,
}

/// `FileDescriptorSet`, its files as raw bytes.
#[derive(Clone, PartialEq, Message)]
struct RawSet {
    #[prost(bytes = "vec", repeated, tag = "1")]
    file: Vec<Vec<u8>>,
}

/// `CodeGeneratorResponse`, `File.content` as bytes (the descriptor set is binary).
#[derive(Clone, PartialEq, Message)]
struct Response {
    #[prost(string, optional, tag = "1")]
    error: Option<String>,
    #[prost(uint64, optional, tag = "2")]
    supported_features: Option<u64>,
    #[prost(message, repeated, tag = "15")]
    file: Vec<ResponseFile>,
}

#[derive(Clone, PartialEq, Message)]
struct ResponseFile {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
    #[prost(string, optional, tag = "2")]
    insertion_point: Option<String>,
    #[prost(bytes = "vec", optional, tag = "15")]
    content: Option<Vec<u8>>,
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// A fresh scratch directory, with `tonic_intercept/v1/options.proto` written under
/// `opts/` as a buf or protoc user has it.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "protoc-gen-tonic-intercept-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let opts = dir.join("opts/tonic_intercept/v1");
    std::fs::create_dir_all(&opts).unwrap();
    std::fs::write(
        opts.join("options.proto"),
        tonic_intercept_build::OPTIONS_PROTO,
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("out")).unwrap();
    dir
}

/// The repository's protos with policy options and every RPC kind: the catalog (server
/// streaming, bidi, service default), the coffee bar (client streaming, bidi,
/// idempotency levels) and echo (no options).
fn repo_protos() -> (Vec<&'static str>, Vec<PathBuf>) {
    (
        vec![
            "catalog/v1/catalog.proto",
            "coffee/v1/orders.proto",
            "echo/v1/echo.proto",
        ],
        vec![repo().join("tests/proto"), repo().join("examples/proto")],
    )
}

/// A request for `files` (names relative to `includes`), compiled by protox with source
/// info, its files encoded with their options, as protoc sends them.
fn request(files: &[&str], includes: &[PathBuf], parameter: Option<&str>) -> Request {
    let mut compiler = protox::Compiler::new(includes).unwrap();
    compiler
        .include_imports(true)
        .include_source_info(true)
        .open_files(files)
        .unwrap();
    let set = RawSet::decode(compiler.encode_file_descriptor_set().as_slice()).unwrap();
    Request {
        file_to_generate: files.iter().map(|f| (*f).to_owned()).collect(),
        parameter: parameter.map(str::to_owned),
        proto_file: set.file,
    }
}

/// Runs the binary with `input` on stdin; protoc plugins exit 0 whatever the request.
fn run(input: &[u8]) -> Response {
    let mut child = Command::new(BIN)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{:?}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Response::decode(output.stdout.as_slice()).unwrap()
}

fn files_of(response: &Response) -> BTreeMap<String, Vec<u8>> {
    assert_eq!(response.error, None);
    assert_eq!(
        response.supported_features,
        Some(1),
        "FEATURE_PROTO3_OPTIONAL"
    );
    response
        .file
        .iter()
        .map(|f| {
            assert_eq!(f.insertion_point, None);
            (f.name.clone().unwrap(), f.content.clone().unwrap())
        })
        .collect()
}

/// Every file of `dir`, by name.
fn read_dir(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().into_string().unwrap(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

/// Asserts equality file by file, with the first differing line of a Rust file.
fn assert_same(plugin: &BTreeMap<String, Vec<u8>>, build: &BTreeMap<String, Vec<u8>>) {
    assert_eq!(
        plugin.keys().collect::<Vec<_>>(),
        build.keys().collect::<Vec<_>>()
    );
    for (name, content) in plugin {
        if content != &build[name] {
            let (a, b) = (
                String::from_utf8_lossy(content),
                String::from_utf8_lossy(&build[name]),
            );
            let line = a.lines().zip(b.lines()).position(|(x, y)| x != y);
            panic!(
                "{name} differs (lengths {} and {}), first at line {line:?}: {:?} vs {:?}",
                content.len(),
                build[name].len(),
                line.and_then(|l| a.lines().nth(l)),
                line.and_then(|l| b.lines().nth(l)),
            );
        }
    }
}

/// What the `build.rs` path writes for `files`, configured by `configure`.
fn build_rs(
    dir: &Path,
    files: &[&str],
    includes: &[PathBuf],
    configure: impl FnOnce(tonic_intercept_build::Builder) -> tonic_intercept_build::Builder,
) -> BTreeMap<String, Vec<u8>> {
    let out = dir.join("build-rs");
    std::fs::create_dir_all(&out).unwrap();
    let paths: Vec<PathBuf> = files
        .iter()
        .map(|f| {
            includes
                .iter()
                .map(|i| i.join(f))
                .find(|p| p.exists())
                .unwrap()
        })
        .collect();
    configure(
        tonic_intercept_build::configure()
            .out_dir(&out)
            .emit_rerun_if_changed(false),
    )
    .compile_protos(&paths, includes)
    .unwrap();
    read_dir(&out)
}

#[test]
fn writes_what_build_rs_writes_byte_for_byte() {
    let dir = scratch("same");
    let (protos, mut includes) = repo_protos();
    includes.push(dir.join("opts"));
    let build = build_rs(&dir, &protos, &includes, |b| b);
    assert_eq!(
        build.keys().collect::<Vec<_>>(),
        [
            "catalog.v1.rs",
            "coffee.v1.rs",
            "echo.v1.rs",
            "file_descriptor_set.bin"
        ]
    );
    let response = run(&request(&protos, &includes, Some("file_descriptor_set")).encode_to_vec());
    let plugin = files_of(&response);
    assert_same(&plugin, &build);
    // The policy of the options reached the descriptors, as the build.rs path puts it.
    let catalog = String::from_utf8(plugin["catalog.v1.rs"].clone()).unwrap();
    assert!(catalog.contains("pub mod catalog_service_intercept"));
    assert!(
        catalog.contains("Policy from the `.proto`: `{ max_messages_out: 3, timeout_ms: 2000 }`"),
        "{catalog}"
    );
    assert!(catalog.contains(".max_messages_out(3)"), "{catalog}");
}

#[test]
fn parameters_select_what_is_generated() {
    let dir = scratch("parameters");
    let (protos, mut includes) = repo_protos();
    includes.push(dir.join("opts"));
    let build = build_rs(&dir, &protos, &includes, |b| {
        b.build_client(false).intercept_types(false)
    });
    let response = run(&request(
        &protos,
        &includes,
        Some("build_client=false, intercept_types=false,include_file=mod.rs"),
    )
    .encode_to_vec());
    let mut plugin = files_of(&response);
    let include = plugin.remove("mod.rs").expect("the include file");
    let mut build = build;
    build.remove("file_descriptor_set.bin");
    assert_same(&plugin, &build);
    let catalog = String::from_utf8(plugin["catalog.v1.rs"].clone()).unwrap();
    assert!(!catalog.contains("catalog_service_client"));
    assert!(!catalog.contains("tonic_intercept"));
    assert!(catalog.contains("pub mod catalog_service_server"));
    assert_eq!(
        String::from_utf8(include).unwrap(),
        "// This file is @generated by protoc-gen-tonic-intercept.\n\
         pub mod catalog {\n    pub mod v1 {\n        include!(\"catalog.v1.rs\");\n    }\n}\n\
         pub mod coffee {\n    pub mod v1 {\n        include!(\"coffee.v1.rs\");\n    }\n}\n\
         pub mod echo {\n    pub mod v1 {\n        include!(\"echo.v1.rs\");\n    }\n}\n"
    );

    let build = build_rs(&dir, &protos, &includes, |b| b.build_server(false));
    let mut build = build;
    build.remove("file_descriptor_set.bin");
    let plugin = files_of(&run(&request(
        &protos,
        &includes,
        Some("build_server=false,file_descriptor_set=false"),
    )
    .encode_to_vec()));
    assert_same(&plugin, &build);

    // prost's and tonic's code options, by the builder's names (a comma inside a value
    // escaped as `\,`), give what the same builder calls give in build.rs.
    let mut build = build_rs(&dir, &protos, &includes, |b| {
        b.type_attribute(
            ".catalog",
            "#[derive(serde::Serialize, serde::Deserialize)]",
        )
        .bytes(".")
        .btree_map(".")
        .server_mod_attribute("catalog.v1", "#[allow(missing_docs)]")
    });
    build.remove("file_descriptor_set.bin");
    let plugin = files_of(&run(&request(
        &protos,
        &includes,
        Some(
            "type_attribute=.catalog=#[derive(serde::Serialize\\, serde::Deserialize)],bytes=.,\
             btree_map=.,server_mod_attribute=catalog.v1=#[allow(missing_docs)]",
        ),
    )
    .encode_to_vec()));
    assert_same(&plugin, &build);
    let catalog = String::from_utf8(plugin["catalog.v1.rs"].clone()).unwrap();
    assert!(catalog.contains("#[derive(serde::Serialize, serde::Deserialize)]"));
}

#[test]
fn only_the_files_to_generate_and_never_the_options_file() {
    let dir = scratch("subset");
    let (_, mut includes) = repo_protos();
    includes.push(dir.join("opts"));
    let mut request = request(
        &["catalog/v1/catalog.proto", "echo/v1/echo.proto"],
        &includes,
        None,
    );
    // As buf sends it when options.proto lives in the module.
    request.file_to_generate = vec![
        "tonic_intercept/v1/options.proto".into(),
        "catalog/v1/catalog.proto".into(),
    ];
    let plugin = files_of(&run(&request.encode_to_vec()));
    assert_eq!(plugin.keys().collect::<Vec<_>>(), ["catalog.v1.rs"]);
    let build = build_rs(&dir, &["catalog/v1/catalog.proto"], &includes, |b| b);
    assert_eq!(plugin["catalog.v1.rs"], build["catalog.v1.rs"]);

    // buf's request for the directory of options.proto alone (`strategy: directory`):
    // nothing, not even the include file or the descriptor set.
    request.file_to_generate = vec!["tonic_intercept/v1/options.proto".into()];
    request.parameter = Some("include_file=mod.rs,file_descriptor_set".into());
    assert!(files_of(&run(&request.encode_to_vec())).is_empty());
}

/// A package importing another package, and a file without a package: the packages of the
/// files to generate are written (`_.rs` for none), each as build.rs writes it; an
/// imported package is not (protoc's and buf's convention; buf's `include_imports: true`
/// asks for it), where build.rs, compiling the import too, writes it as well.
#[test]
fn imported_packages_are_used_but_not_written() {
    let dir = scratch("imports");
    let proto = dir.join("proto");
    std::fs::create_dir_all(proto.join("a/v1")).unwrap();
    std::fs::create_dir_all(proto.join("b")).unwrap();
    std::fs::write(
        proto.join("b/b.proto"),
        "syntax = \"proto3\";\npackage b;\nmessage Money { int64 units = 1; double rate = 2; }\n",
    )
    .unwrap();
    std::fs::write(
        proto.join("a/v1/a.proto"),
        "syntax = \"proto3\";\npackage a.v1;\nimport \"b/b.proto\";\n\
         import \"tonic_intercept/v1/options.proto\";\n\
         message Quote { b.Money price = 1; optional string note = 2; }\n\
         service Quotes {\n  rpc Watch(Quote) returns (stream Quote) {\n\
         \x20   option (tonic_intercept.v1.rpc) = { max_messages_out: 9 };\n  }\n}\n",
    )
    .unwrap();
    std::fs::write(
        proto.join("bare.proto"),
        "syntax = \"proto3\";\nmessage Bare { string x = 1; }\nservice Plain { rpc Get(Bare) returns (Bare); }\n",
    )
    .unwrap();
    let includes = [proto, dir.join("opts")];
    let files = ["a/v1/a.proto", "bare.proto"];
    let build = build_rs(&dir, &files, &includes, |b| b);
    assert_eq!(
        build.keys().collect::<Vec<_>>(),
        ["_.rs", "a.v1.rs", "b.rs", "file_descriptor_set.bin"]
    );
    let plugin = files_of(&run(&request(&files, &includes, None).encode_to_vec()));
    assert_eq!(plugin.keys().collect::<Vec<_>>(), ["_.rs", "a.v1.rs"]);
    assert_eq!(plugin["_.rs"], build["_.rs"]);
    assert_eq!(plugin["a.v1.rs"], build["a.v1.rs"]);
    let a = String::from_utf8(plugin["a.v1.rs"].clone()).unwrap();
    assert!(a.contains("super::super::b::Money"), "{a}");
}

#[test]
fn a_bad_policy_option_is_an_error_with_file_line_column() {
    let dir = scratch("bad-option");
    std::fs::create_dir_all(dir.join("proto/shop/v1")).unwrap();
    std::fs::write(
        dir.join("proto/shop/v1/shop.proto"),
        "syntax = \"proto3\";\n\
         package shop.v1;\n\
         import \"tonic_intercept/v1/options.proto\";\n\
         message M {}\n\
         service S {\n\
         \x20 rpc Get(M) returns (M) {\n\
         \x20   option (tonic_intercept.v1.rpc) = { max_messages_in: 5 };\n\
         \x20 }\n\
         \x20 rpc Put(M) returns (M) {\n\
         \x20   option (tonic_intercept.v1.rpc).timeout_ms = 0;\n\
         \x20 }\n\
         }\n",
    )
    .unwrap();
    let includes = [dir.join("proto"), dir.join("opts")];
    let response = run(&request(&["shop/v1/shop.proto"], &includes, None).encode_to_vec());
    assert!(response.file.is_empty());
    // Located at the `option` statement: a request has no source text to find a key of
    // `{ .. }` in, and neither protox nor protoc records a location per key (buf does).
    assert_eq!(
        response.error.as_deref(),
        Some(
            "shop/v1/shop.proto:7:5: `max_messages_in` limits a stream of requests, but `shop.v1.S/Get` is unary: \
             neither side streams; use `max_message_bytes` or `timeout_ms`\n\
             shop/v1/shop.proto:10:5: `timeout_ms: 0` on `shop.v1.S/Put`: a limit must be at least 1, \
             since zero would refuse everything; to leave it unlimited, remove the key"
        )
    );
    let build = tonic_intercept_build::configure()
        .out_dir(dir.join("out"))
        .emit_rerun_if_changed(false)
        .compile_protos(&[dir.join("proto/shop/v1/shop.proto")], &includes)
        .unwrap_err()
        .to_string();
    // build.rs reads the text: the same places, but the key inside `{ .. }`.
    assert!(
        build.contains("shop/v1/shop.proto:7:41: `max_messages_in` limits"),
        "{build}"
    );
    assert!(
        build.contains("shop/v1/shop.proto:10:5: `timeout_ms: 0`"),
        "{build}"
    );
}

/// A user's copy of options.proto with a key this plugin does not know: refused, since the
/// policy written with it would be lost.
#[test]
fn an_options_proto_copy_with_unknown_keys_is_refused() {
    let dir = scratch("newer-options");
    let newer = tonic_intercept_build::OPTIONS_PROTO.replacen(
        "message RpcPolicy {",
        "message RpcPolicy {\n  optional uint32 max_widgets = 99;",
        1,
    );
    assert_ne!(newer, tonic_intercept_build::OPTIONS_PROTO);
    std::fs::write(dir.join("opts/tonic_intercept/v1/options.proto"), newer).unwrap();
    let (protos, mut includes) = repo_protos();
    includes.push(dir.join("opts"));
    let response = run(&request(&protos, &includes, None).encode_to_vec());
    assert!(response.file.is_empty());
    assert_eq!(
        response.error.as_deref(),
        Some(concat!(
            "tonic_intercept/v1/options.proto: this copy declares `RpcPolicy.max_widgets` (field 99), which \
             protoc-gen-tonic-intercept ",
            env!("CARGO_PKG_VERSION"),
            " does not know, so policy written with it would be ignored; use the copy that \
             `protoc-gen-tonic-intercept --print-options-proto` prints, or a newer plugin"
        ))
    );
}

#[test]
fn bad_parameters_and_malformed_requests_are_errors_in_the_response() {
    let dir = scratch("bad-input");
    let (protos, mut includes) = repo_protos();
    includes.push(dir.join("opts"));
    let response =
        run(&request(&protos, &includes, Some("bogus=.,build_client=maybe")).encode_to_vec());
    assert!(response.file.is_empty());
    let error = response.error.unwrap();
    let lines: Vec<_> = error.lines().collect();
    assert_eq!(lines.len(), 2, "{error}");
    assert!(
        lines[0].starts_with(
            "unknown parameter `bogus=.`; protoc-gen-tonic-intercept knows build_client, build_server, build_transport, intercept_types,"
        ),
        "{error}"
    );
    assert_eq!(
        lines[1],
        "parameter `build_client=maybe`: `build_client` is `true` or `false`, not `maybe`"
    );

    let response = run(b"\xff\xff\xff");
    assert!(response.file.is_empty());
    let error = response.error.unwrap();
    assert!(
        error.starts_with("the input is not a CodeGeneratorRequest ("),
        "{error}"
    );

    // A file to generate that the request does not describe.
    let mut request = request(&["echo/v1/echo.proto"], &includes, None);
    request.file_to_generate.push("nope.proto".into());
    let response = run(&request.encode_to_vec());
    assert_eq!(
        response.error.as_deref(),
        Some("`nope.proto` is to be generated but the request has no descriptor for it")
    );
}

#[test]
fn prints_the_options_proto() {
    let output = Command::new(BIN)
        .arg("--print-options-proto")
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        tonic_intercept_build::OPTIONS_PROTO
    );
    let output = Command::new(BIN).arg("--bogus").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
}

/// A real protoc: `$PROTOC`, `protoc` on `PATH`, or grpcio-tools' bundled one in the
/// Python venv CI makes (`<target>/py-venv`), whichever is found first.
fn protoc() -> Option<(Command, String)> {
    if let Some(path) = std::env::var_os("PROTOC") {
        let what = format!("$PROTOC ({})", path.to_string_lossy());
        return Some((Command::new(path), what));
    }
    let on_path = Command::new("protoc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if on_path {
        return Some((Command::new("protoc"), "protoc on PATH".into()));
    }
    // BIN is <target>/<profile>/protoc-gen-tonic-intercept.
    let target = Path::new(BIN).parent()?.parent()?;
    let python = target.join("py-venv/bin/python");
    let has_tools = Command::new(&python)
        .args(["-c", "import grpc_tools.protoc"])
        .output()
        .is_ok_and(|o| o.status.success());
    if has_tools {
        let mut command = Command::new(&python);
        command.args(["-m", "grpc_tools.protoc"]);
        return Some((
            command,
            format!("{} -m grpc_tools.protoc", python.display()),
        ));
    }
    None
}

#[test]
fn through_real_protoc_writes_what_build_rs_writes() {
    let Some((mut protoc, what)) = protoc() else {
        if std::env::var("TONIC_INTERCEPT_REQUIRE_PROTOC").as_deref() == Ok("1") {
            panic!("no protoc found and TONIC_INTERCEPT_REQUIRE_PROTOC=1");
        }
        eprintln!(
            "through_real_protoc_writes_what_build_rs_writes: skipped: no protoc ($PROTOC, `protoc` on \
             PATH, or grpcio-tools in <target>/py-venv); apt-get install protobuf-compiler, or set \
             TONIC_INTERCEPT_REQUIRE_PROTOC=1 to make this a failure"
        );
        return;
    };
    let dir = scratch("protoc");
    let (protos, mut includes) = repo_protos();
    includes.push(dir.join("opts"));
    let out = dir.join("out");
    protoc
        .arg(format!("--plugin=protoc-gen-tonic-intercept={BIN}"))
        .arg(format!("--tonic-intercept_out={}", out.display()))
        .arg("--tonic-intercept_opt=file_descriptor_set,include_file=mod.rs");
    for include in &includes {
        protoc.arg(format!("-I{}", include.display()));
    }
    let output = protoc.args(&protos).output().unwrap();
    assert!(
        output.status.success(),
        "{what}: {:?}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let mut plugin = read_dir(&out);
    assert!(plugin.remove("mod.rs").is_some());
    let mut build = build_rs(&dir, &protos, &includes, |b| b);
    // protoc's descriptors differ from protox's where no code depends on them (source info
    // only for the files to generate, `json_name`): the set is checked by its files.
    let set = prost_types::FileDescriptorSet::decode(
        plugin.remove("file_descriptor_set.bin").unwrap().as_slice(),
    )
    .unwrap();
    let names: Vec<&str> = set.file.iter().map(|f| f.name()).collect();
    assert_eq!(
        names,
        [
            "google/protobuf/descriptor.proto",
            "tonic_intercept/v1/options.proto",
            "catalog/v1/catalog.proto",
            "coffee/v1/orders.proto",
            "echo/v1/echo.proto"
        ],
        "{what}"
    );
    build.remove("file_descriptor_set.bin");
    assert_same(&plugin, &build);
    eprintln!(
        "through {what}: {} files identical to build.rs's",
        plugin.len()
    );

    // proto3 `optional`: protoc refuses it unless the plugin declares the feature.
    std::fs::create_dir_all(dir.join("opt/note")).unwrap();
    std::fs::write(
        dir.join("opt/note/note.proto"),
        "syntax = \"proto3\";\npackage note;\nmessage Note { optional string text = 1; }\n",
    )
    .unwrap();
    let (mut protoc, _) = self::protoc().unwrap();
    let output = protoc
        .arg(format!("--plugin=protoc-gen-tonic-intercept={BIN}"))
        .arg(format!("--tonic-intercept_out={}", out.display()))
        .arg(format!("-I{}", dir.join("opt").display()))
        .arg("note/note.proto")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let note = std::fs::read_to_string(out.join("note.rs")).unwrap();
    assert!(
        note.contains("pub text: ::core::option::Option<::prost::alloc::string::String>"),
        "{note}"
    );

    // An error through protoc: its message names the plugin and carries file:line:column.
    std::fs::create_dir_all(dir.join("bad/shop")).unwrap();
    std::fs::write(
        dir.join("bad/shop/shop.proto"),
        "syntax = \"proto3\";\npackage shop;\nimport \"tonic_intercept/v1/options.proto\";\n\
         message M {}\nservice S {\n  rpc Get(M) returns (M) { option (tonic_intercept.v1.rpc).timeout_ms = 0; }\n}\n",
    )
    .unwrap();
    let (mut protoc, _) = self::protoc().unwrap();
    let output = protoc
        .arg(format!("--plugin=protoc-gen-tonic-intercept={BIN}"))
        .arg(format!("--tonic-intercept_out={}", out.display()))
        .arg(format!("-I{}", dir.join("bad").display()))
        .arg(format!("-I{}", dir.join("opts").display()))
        .arg("shop/shop.proto")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "--tonic-intercept_out: shop/shop.proto:6:28: `timeout_ms: 0` on `shop.S/Get`"
        ),
        "{stderr}"
    );
}
