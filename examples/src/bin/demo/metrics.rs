//! `metrics(self.metrics)`: the `grpc_server_*` series count what the demo did, by RPC,
//! code and refusing policy. Read in-process here: `Services::render_metrics` is the text
//! `GET /metrics` answers (`serve_metrics`; examples/tests/metrics_endpoint.rs checks the
//! endpoint itself).

use tonic::Code;
use tonic_intercept_examples::Services;

use crate::support::{Tally, ensure, labels, series};

pub(crate) fn metrics_after_run(
    server: &Services,
    tally: &Tally,
) -> Result<(String, Vec<String>), String> {
    let text = server.render_metrics();
    ensure!(
        text.ends_with("# EOF\n"),
        "/metrics does not end with # EOF"
    );
    let mut shown = Vec::new();
    let mut expect = |name: &str, labels: &str, expected: u64, show: bool| {
        let (line, value) = series(&text, name, labels)?;
        ensure!(value == expected, "{line}: expected {expected}");
        if show {
            shown.push(line.to_owned());
        }
        Ok::<_, String>(())
    };

    let orders = "coffee.v1.OrderService";
    let place = labels("unary", orders, "PlaceOrder");
    let calls = tally.calls("PlaceOrder");
    expect("grpc_server_started_total", &place, calls, true)?;
    expect("grpc_server_handling_seconds_count", &place, calls, false)?;
    // Every code, zeros included, as the demo saw them.
    for code in (0..=16).map(Code::from_i32) {
        let n = tally.count("PlaceOrder", code);
        let code_labels = format!(
            r#"{place},grpc_code="{}""#,
            tonic_intercept::metrics::grpc_code_label(code)
        );
        let show = matches!(code, Code::Ok | Code::ResourceExhausted);
        expect("grpc_server_handled_total", &code_labels, n, show)?;
    }
    for (policy, n) in [
        ("call_rate", 1),
        ("idempotency", 1),
        ("validation", 1),
        ("auth", 0),
    ] {
        let policy_labels = format!(r#"{place},policy="{policy}""#);
        expect(
            "grpc_server_rejected_total",
            &policy_labels,
            n,
            policy == "validation",
        )?;
    }
    expect("grpc_server_panics_total", &place, 1, true)?;

    let cancel = labels("unary", orders, "CancelOrder");
    for code in [Code::Ok, Code::PermissionDenied] {
        let code_labels = format!(
            r#"{cancel},grpc_code="{}""#,
            tonic_intercept::metrics::grpc_code_label(code)
        );
        let n = tally.count("CancelOrder", code);
        expect(
            "grpc_server_handled_total",
            &code_labels,
            n,
            code != Code::Ok,
        )?;
    }
    let roles = format!(r#"{cancel},policy="roles""#);
    expect("grpc_server_rejected_total", &roles, 1, false)?;
    let subscribe = format!(
        r#"{},policy="concurrency""#,
        labels("server_stream", orders, "Subscribe")
    );
    expect("grpc_server_rejected_total", &subscribe, 1, false)?;
    let chat = format!(
        r#"{},policy="idle_timeout""#,
        labels("bidi_stream", orders, "Chat")
    );
    expect("grpc_server_rejected_total", &chat, 1, false)?;

    // The user directory: refused lookups, the sign-ups, the oversized imports.
    let users = "users.v1.UserService";
    let get_user = labels("unary", users, "GetUser");
    let unauthenticated = format!(r#"{get_user},grpc_code="Unauthenticated""#);
    expect("grpc_server_handled_total", &unauthenticated, 2, true)?;
    let create_user = labels("unary", users, "CreateUser");
    // The public sign-up and the hook's refusal, then the sign-ups rated per address.
    for (code, n) in [
        (Code::Ok, 1 + tally.count("CreateUser", Code::Ok)),
        (Code::InvalidArgument, 1),
        (
            Code::ResourceExhausted,
            tally.count("CreateUser", Code::ResourceExhausted),
        ),
    ] {
        let code = tonic_intercept::metrics::grpc_code_label(code);
        let code_labels = format!(r#"{create_user},grpc_code="{code}""#);
        expect("grpc_server_handled_total", &code_labels, n, false)?;
    }
    let per_peer = format!(r#"{create_user},policy="call_rate""#);
    expect("grpc_server_rejected_total", &per_peer, 1, true)?;
    let import = format!(
        r#"{},policy="limit""#,
        labels("client_stream", users, "ImportUsers")
    );
    expect("grpc_server_rejected_total", &import, 2, false)?;
    // The generated client's scenarios: their injected failures happened on the way
    // (flaky.rs), so the server counted none of them, only the attempts that got through.
    for (method, n) in [(&get_user, 0), (&create_user, 0)] {
        let code_labels = format!(r#"{method},grpc_code="Unavailable""#);
        expect("grpc_server_handled_total", &code_labels, n, false)?;
    }

    Ok((
        format!(
            "/metrics after the run: {calls} PlaceOrder calls counted by code and refusing policy, 1 panic, the refusals of every other RPC; for instance:"
        ),
        shown,
    ))
}
