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
        .compile_protos(&[dir.join("bad.proto")], std::slice::from_ref(&dir))
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
        .compile_protos(&[dir.join("bad.proto")], std::slice::from_ref(&dir))
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
        .compile_protos(&[dir.join("nope.proto")], std::slice::from_ref(&dir))
        .unwrap_err();
    assert!(error.to_string().contains("nope.proto"), "{error}");
}

/// Compiles `shop.proto` made of a fixed head (5 lines: syntax, package, the options import,
/// `message M {}`, `service S {`), then `body`, then `}`, with no options file on disk.
fn compile_shop(name: &str, body: &str) -> Result<String, String> {
    let dir = scratch(name);
    let text = format!(
        "syntax = \"proto3\";\npackage shop.v1;\nimport \"tonic_intercept/v1/options.proto\";\nmessage M {{}}\nservice S {{\n{body}}}\n"
    );
    std::fs::write(dir.join("shop.proto"), text).unwrap();
    let result = tonic_intercept_build::configure()
        .out_dir(dir.join("out"))
        .emit_rerun_if_changed(false)
        .compile_protos(&[dir.join("shop.proto")], std::slice::from_ref(&dir));
    let result = match result {
        Ok(()) => Ok(std::fs::read_to_string(dir.join("out/shop.v1.rs")).unwrap()),
        Err(error) => {
            assert_eq!(
                std::fs::read_dir(dir.join("out")).unwrap().count(),
                0,
                "nothing is written on error"
            );
            Err(error.to_string())
        }
    };
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn misuse(name: &str, body: &str) -> String {
    let message = compile_shop(name, body).expect_err("the proto is refused");
    assert!(
        message.starts_with("tonic-intercept-build: cannot compile proto: shop.proto:"),
        "{message}"
    );
    message
}

const PREFIX: &str = "tonic-intercept-build: cannot compile proto: ";

#[test]
fn request_stream_limit_on_a_unary_rpc() {
    let message = misuse(
        "in-on-unary",
        "  rpc Get(M) returns (M) {\n    option (tonic_intercept.v1.rpc) = { timeout_ms: 10, max_messages_in: 5 };\n  }\n",
    );
    assert_eq!(
        message,
        format!(
            "{PREFIX}shop.proto:7:57: `max_messages_in` limits a stream of requests, but `shop.v1.S/Get` is unary: neither side streams; use `max_message_bytes` or `timeout_ms`"
        )
    );
}

#[test]
fn response_stream_limit_on_a_client_streaming_rpc() {
    let message = misuse(
        "out-on-client",
        "  rpc Up(stream M) returns (M) {\n    option (tonic_intercept.v1.rpc) = {\n      max_messages_out: 5\n    };\n  }\n",
    );
    assert_eq!(
        message,
        format!(
            "{PREFIX}shop.proto:8:7: `max_messages_out` limits a stream of responses, but `shop.v1.S/Up` is client-streaming: its responses do not stream; did you mean `max_messages_in`? (`max_message_bytes` limits single messages)"
        )
    );
}

#[test]
fn request_rate_on_a_server_streaming_rpc_written_as_a_field_option() {
    let message = misuse(
        "rate-in-on-server",
        "  rpc Down(M) returns (stream M) {\n    option (tonic_intercept.v1.rpc).messages_per_second_in = 5;\n  }\n",
    );
    assert_eq!(
        message,
        format!(
            "{PREFIX}shop.proto:7:5: `messages_per_second_in` limits a stream of requests, but `shop.v1.S/Down` is server-streaming: its requests do not stream; did you mean `messages_per_second_out`? (`max_message_bytes` limits single messages)"
        )
    );
}

#[test]
fn streaming_rate_on_a_unary_rpc() {
    let message = misuse(
        "rate-on-unary",
        "  rpc Get(M) returns (M) { option (tonic_intercept.v1.rpc) = { messages_per_second: 50 }; }\n",
    );
    assert_eq!(
        message,
        format!(
            "{PREFIX}shop.proto:6:64: `messages_per_second` limits messages on the streaming side(s), but `shop.v1.S/Get` is unary: neither side streams; use `max_message_bytes` or `timeout_ms`"
        )
    );
}

#[test]
fn zero_limits_on_an_rpc_and_on_a_service() {
    let message = misuse(
        "zero",
        "  option (tonic_intercept.v1.service) = { max_message_bytes: 0 };\n  rpc Get(M) returns (M) { option (tonic_intercept.v1.rpc) = { timeout_ms: 0 }; }\n",
    );
    // Every misuse at once, one per line.
    assert_eq!(
        message,
        format!(
            "{PREFIX}shop.proto:6:43: `max_message_bytes: 0` on service `shop.v1.S`: a limit must be at least 1, since zero would refuse everything; to leave it unlimited, remove the key\n\
             shop.proto:7:64: `timeout_ms: 0` on `shop.v1.S/Get`: a limit must be at least 1, since zero would refuse everything; to leave it unlimited, remove the key"
        )
    );
}

#[test]
fn public_with_roles() {
    let message = misuse(
        "public-roles",
        "  rpc Get(M) returns (M) {\n    option (tonic_intercept.v1.rpc) = { roles: [\"admin\"], public: true };\n  }\n",
    );
    assert_eq!(
        message,
        format!(
            "{PREFIX}shop.proto:7:59: `public: true` and `roles` on `shop.v1.S/Get` contradict each other: a public RPC is callable without authentication, so it cannot require a role; remove `public` or `roles`"
        )
    );
}

#[test]
fn empty_role() {
    let message = misuse(
        "empty-role",
        "  option (tonic_intercept.v1.service) = { roles: [\"reader\", \"\"] };\n  rpc Get(M) returns (M);\n",
    );
    assert_eq!(
        message,
        format!(
            "{PREFIX}shop.proto:6:43: `roles` on service `shop.v1.S` contains an empty role name, which no caller can hold; remove it or name the role"
        )
    );
}

#[test]
fn unknown_key_is_reported_by_the_compiler() {
    let message = misuse(
        "unknown-key",
        "  rpc Get(M) returns (M) { option (tonic_intercept.v1.rpc) = { max_mesages_out: 3 }; }\n",
    );
    // protox's message, with the cause it keeps in its diagnostic.
    assert_eq!(
        message,
        format!(
            "{PREFIX}shop.proto:6:28: invalid value of type 'tonic_intercept.v1.RpcPolicy' for option '(tonic_intercept.v1.rpc)': field 'max_mesages_out' not found for message 'tonic_intercept.v1.RpcPolicy'"
        )
    );
}

#[test]
fn rpc_named_service_collides_with_the_service_type() {
    let message = misuse("rpc-service", "  rpc Service(M) returns (M);\n");
    assert_eq!(
        message,
        format!(
            "{PREFIX}shop.proto:6:7: `rpc Service` of `shop.v1.S` would generate the type `s_intercept::Service`, which `s_intercept` already declares for the service itself; rename the RPC"
        )
    );
}

#[test]
fn stream_alias_colliding_with_an_rpc() {
    let message = misuse(
        "alias",
        "  rpc Watch(stream M) returns (M);\n  rpc WatchRequests(M) returns (M);\n",
    );
    assert_eq!(
        message,
        format!(
            "{PREFIX}shop.proto:7:7: `rpc WatchRequests` of `shop.v1.S` would generate the type `s_intercept::WatchRequests`, which `s_intercept` already declares for the request stream of `rpc Watch`; rename one of the RPCs"
        )
    );
}

#[test]
fn options_import_resolves_from_memory_and_policy_is_merged() {
    let generated = compile_shop(
        "merged",
        concat!(
            "  option (tonic_intercept.v1.service) = {\n",
            "    timeout_ms: 5000, roles: [\"user\"], max_messages_out: 100, messages_per_second: 20\n",
            "  };\n",
            "  rpc Get(M) returns (M) { option (tonic_intercept.v1.rpc) = { public: true }; }\n",
            "  rpc List(M) returns (stream M) {\n",
            "    option (tonic_intercept.v1.rpc) = { max_messages_out: 10000, messages_per_second: 500, timeout_ms: 2000, roles: [\"admin\"] };\n",
            "  }\n",
            "  rpc Put(stream M) returns (M);\n",
            "  rpc Plain(M) returns (M) { option (tonic_intercept.v1.rpc) = { public: false }; }\n",
        ),
    )
    .unwrap();
    // Whitespace and prettyplease's trailing commas aside.
    let flat: String = generated.split_whitespace().collect();
    let flat = flat.replace(",)", ")");
    // `public` replaces the service's roles; the service's stream keys do not fit a unary RPC.
    assert!(
        flat.contains(&policy(".public()", &format!(".timeout({})", ms(5000)))),
        "{generated}"
    );
    // The RPC's keys win; `messages_per_second` is the response side here.
    assert!(
        flat.contains(&policy(
            ".roles(&[\"admin\"])",
            &format!(
                ".max_messages_out(10000).messages_per_second_out(500,1,{DELAY}).timeout({})",
                ms(2000)
            )
        )),
        "{generated}"
    );
    // Inherits the default, with its rate on the streaming (request) side.
    assert!(
        flat.contains(&policy(
            ".roles(&[\"user\"])",
            &format!(
                ".messages_per_second_in(20,1,{DELAY}).timeout({})",
                ms(5000)
            )
        )),
        "{generated}"
    );
    // `public: false` opts out of the service's roles, keeps its timeout.
    assert!(
        flat.contains(&policy("", &format!(".timeout({})", ms(5000)))),
        "{generated}"
    );
    assert!(
        generated.contains("/// Policy from the `.proto`: `{ public: true, timeout_ms: 5000 }`."),
        "{generated}"
    );
}

#[test]
fn without_options_nothing_is_declared() {
    let generated = compile_shop("plain", "  rpc Get(M) returns (M);\n").unwrap();
    assert!(!generated.contains("with_policy"), "{generated}");
    assert!(generated.contains("const INDEX: usize = 0;"), "{generated}");
    assert!(
        generated.contains("__private::rpc_span!(\"shop.v1.S/Get\", call)"),
        "{generated}"
    );
}

#[test]
fn options_proto_is_exported() {
    assert!(
        tonic_intercept_build::OPTIONS_PROTO.contains("package tonic_intercept.v1;"),
        "{}",
        tonic_intercept_build::OPTIONS_PROTO
    );
    assert!(tonic_intercept_build::OPTIONS_PROTO.contains("RpcPolicy rpc = 51871;"));
    assert!(tonic_intercept_build::OPTIONS_PROTO.contains("RpcPolicy service = 51871;"));
    assert_eq!(
        tonic_intercept_build::OPTIONS_PROTO_NAME,
        "tonic_intercept/v1/options.proto"
    );
}

#[test]
fn compile_fds_refuses_sets_that_lost_their_policy() {
    let dir = scratch("fds");
    std::fs::write(
        dir.join("shop.proto"),
        "syntax = \"proto3\";\npackage shop.v1;\nimport \"tonic_intercept/v1/options.proto\";\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("tonic_intercept/v1")).unwrap();
    std::fs::write(
        dir.join("tonic_intercept/v1/options.proto"),
        tonic_intercept_build::OPTIONS_PROTO,
    )
    .unwrap();
    let fds = protox::compile([dir.join("shop.proto")], [&dir]).unwrap();
    let error = tonic_intercept_build::configure()
        .out_dir(dir.join("out"))
        .compile_fds(fds)
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("`shop.proto` imports `tonic_intercept/v1/options.proto`"),
        "{error}"
    );
}

// `max_total_bytes_in`, the key added through `tonic_intercept_spec::LIMIT_KEYS`: read
// from the `.proto`, checked like the other request-stream keys, put on the descriptor.

#[test]
fn total_bytes_in_on_a_unary_rpc_written_as_a_field_option() {
    let message = misuse(
        "total-on-unary",
        "  rpc Get(M) returns (M) {\n    option (tonic_intercept.v1.rpc).max_total_bytes_in = 4096;\n  }\n",
    );
    // The column of a field option comes from the field's number in the descriptor.
    assert_eq!(
        message,
        format!(
            "{PREFIX}shop.proto:7:5: `max_total_bytes_in` limits a stream of requests, but `shop.v1.S/Get` is unary: neither side streams; use `max_message_bytes` or `timeout_ms`"
        )
    );
}

#[test]
fn total_bytes_in_on_a_server_streaming_rpc_has_no_counterpart_to_suggest() {
    let message = misuse(
        "total-on-server",
        "  rpc Down(M) returns (stream M) {\n    option (tonic_intercept.v1.rpc) = { max_total_bytes_in: 4096 };\n  }\n",
    );
    assert_eq!(
        message,
        format!(
            "{PREFIX}shop.proto:7:41: `max_total_bytes_in` limits a stream of requests, but `shop.v1.S/Down` is server-streaming: its requests do not stream (`max_message_bytes` limits single messages)"
        )
    );
}

#[test]
fn total_bytes_in_of_zero() {
    let message = misuse(
        "total-zero",
        "  rpc Up(stream M) returns (M) { option (tonic_intercept.v1.rpc) = { max_total_bytes_in: 0 }; }\n",
    );
    assert_eq!(
        message,
        format!(
            "{PREFIX}shop.proto:6:70: `max_total_bytes_in: 0` on `shop.v1.S/Up`: a limit must be at least 1, since zero would refuse everything; to leave it unlimited, remove the key"
        )
    );
}

#[test]
fn total_bytes_in_is_read_and_a_service_default_applies_where_requests_stream() {
    let generated = compile_shop(
        "total-merged",
        concat!(
            "  option (tonic_intercept.v1.service) = { max_total_bytes_in: 1048576, timeout_ms: 5000 };\n",
            "  rpc Get(M) returns (M);\n",
            "  rpc Up(stream M) returns (M);\n",
            "  rpc Chat(stream M) returns (stream M) {\n",
            "    option (tonic_intercept.v1.rpc) = { max_total_bytes_in: 4096, max_message_bytes: 512 };\n",
            "  }\n",
        ),
    )
    .unwrap();
    let flat: String = generated.split_whitespace().collect();
    let flat = flat.replace(",)", ")");
    // Skipped on the unary RPC, whose requests do not stream.
    assert!(
        flat.contains(&policy("", &format!(".timeout({})", ms(5000)))),
        "{generated}"
    );
    assert!(
        flat.contains(&policy(
            "",
            &format!(".max_total_bytes_in(1048576).timeout({})", ms(5000))
        )),
        "{generated}"
    );
    // The RPC's own value wins; keys in `RpcPolicy` order.
    assert!(
        flat.contains(&policy(
            "",
            &format!(
                ".max_message_bytes(512).max_total_bytes_in(4096).timeout({})",
                ms(5000)
            )
        )),
        "{generated}"
    );
    assert!(
        generated.contains(
            "/// Policy from the `.proto`: `{ max_message_bytes: 512, max_total_bytes_in: 4096, timeout_ms: 5000 }`."
        ),
        "{generated}"
    );
}

#[test]
fn idle_timeout_on_a_unary_rpc() {
    // The macro refuses it too: a unary call has no stream to go quiet.
    let message = misuse(
        "idle-on-unary",
        "  rpc Get(M) returns (M) { option (tonic_intercept.v1.rpc) = { idle_timeout_ms: 50 }; }\n",
    );
    assert_eq!(
        message,
        format!(
            "{PREFIX}shop.proto:6:64: `idle_timeout_ms` limits messages on the streaming side(s), but `shop.v1.S/Get` is unary: neither side streams; use `max_message_bytes` or `timeout_ms`"
        )
    );
}

/// The generated `.with_policy(..)` of an RPC, whitespace removed: `access` is its
/// `.public()` / `.roles(..)`, `limits` its `Limits` builder calls (none: no `with_limits`).
fn policy(access: &str, limits: &str) -> String {
    let limits = if limits.is_empty() {
        String::new()
    } else {
        format!(".with_limits(::tonic_intercept::__private::Limits::new(){limits})")
    };
    format!(".with_policy(::tonic_intercept::__private::RpcPolicy::new(){access}{limits});")
}

/// `Duration::from_millis(n)`, through the one door.
fn ms(n: u64) -> String {
    format!("::tonic_intercept::__private::Duration::from_millis({n})")
}

/// A `.proto` rate's pacing: the `.proto` declares none, so the table's default.
const DELAY: &str = "::tonic_intercept::__private::OnRateExceeded::Delay";
