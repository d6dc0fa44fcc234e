//! What every scenario shares: the checks that make the demo exit non-zero on a miss,
//! the requests it sends most, and what the server's log and metrics must show.

use std::collections::BTreeMap;
use std::time::Duration;

use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};
use tonic_intercept::wire::RETRY_PUSHBACK;
use tonic_intercept_examples::coffee::order_service_client::OrderServiceClient;
use tonic_intercept_examples::coffee::{Order, PlaceOrderRequest, SubscribeRequest};
use tonic_intercept_examples::orders::Feed;
use tonic_intercept_examples::pb::CreateUserRequest;
use tonic_intercept_examples::pb::user_service_client::UserServiceClient;
use tonic_intercept_examples::{ADA_TOKEN, with_token};

pub(crate) type Users = UserServiceClient<Channel>;
pub(crate) type Orders = OrderServiceClient<Channel>;

/// Fails the scenario with a message when `$cond` does not hold.
macro_rules! ensure {
    ($cond:expr, $($message:tt)+) => {
        if !$cond {
            return Err(format!($($message)+));
        }
    };
}
pub(crate) use ensure;

pub(crate) fn pass(line: String) {
    println!("✔ {line}");
}

/// `ResourceExhausted` -> `RESOURCE_EXHAUSTED`, as gRPC spells codes.
pub(crate) fn code_name(code: Code) -> String {
    let mut name = String::new();
    for (i, c) in format!("{code:?}").chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

pub(crate) fn expect_code<T>(
    what: &str,
    result: Result<T, Status>,
    expected: Code,
) -> Result<(), String> {
    match result {
        Err(status) if status.code() == expected => Ok(()),
        Err(status) => Err(format!(
            "{what}: expected {}, got {}: {}",
            code_name(expected),
            code_name(status.code()),
            status.message()
        )),
        Ok(_) => Err(format!("{what}: expected {}, got OK", code_name(expected))),
    }
}

pub(crate) fn ok<T>(what: &str, result: Result<T, Status>) -> Result<T, String> {
    result.map_err(|status| {
        format!(
            "{what}: expected OK, got {}: {}",
            code_name(status.code()),
            status.message()
        )
    })
}

pub(crate) fn record(name: &str, email: &str) -> CreateUserRequest {
    CreateUserRequest {
        name: name.into(),
        email: email.into(),
    }
}

pub(crate) fn order(drink: &str, quantity: u32, token: &str) -> Request<PlaceOrderRequest> {
    let order = PlaceOrderRequest {
        shop: "soho".into(),
        drink: drink.into(),
        quantity,
    };
    with_token(order, token)
}

/// Places an order and tallies how the call ended.
pub(crate) async fn place(
    orders: &mut Orders,
    tally: &mut Tally,
    request: Request<PlaceOrderRequest>,
) -> Result<Response<Order>, Status> {
    let result = orders.place_order(request).await;
    tally.record("PlaceOrder", &result);
    result
}

pub(crate) fn subscribe_request(shop: &str) -> Request<SubscribeRequest> {
    with_token(SubscribeRequest { shop: shop.into() }, ADA_TOKEN)
}

/// Waits (briefly) for every `Subscribe` producer task to end.
pub(crate) async fn producers_stopped(feed: &Feed) -> Result<(), String> {
    tokio::time::timeout(Duration::from_secs(2), feed.all_stopped())
        .await
        .map_err(|_| {
            format!(
                "{} Subscribe producer(s) still running after 2s",
                feed.running()
            )
        })
}

/// The `grpc-retry-pushback-ms` trailer of a refusal, in milliseconds.
pub(crate) fn pushback(status: &Status) -> Result<u64, String> {
    status
        .metadata()
        .get(RETRY_PUSHBACK)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no {RETRY_PUSHBACK} on {status:?}"))
}

/// The labels of one RPC's metric series.
pub(crate) fn labels(kind: &str, service: &str, method: &str) -> String {
    format!(r#"grpc_type="{kind}",grpc_service="{service}",grpc_method="{method}""#)
}

/// The line of one series, `name{labels} value`, and its value.
pub(crate) fn series<'a>(
    text: &'a str,
    name: &str,
    labels: &str,
) -> Result<(&'a str, u64), String> {
    let prefix = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|line| {
            let value = line.strip_prefix(&prefix)?.parse().ok()?;
            Some((line, value))
        })
        .ok_or_else(|| format!("/metrics has no series `{name}{{{labels}}}`"))
}

/// What the demo's calls of `PlaceOrder` and `CancelOrder` ended with, by method and
/// code: what the server's log and metrics must show.
#[derive(Debug, Default)]
pub(crate) struct Tally(BTreeMap<(&'static str, i32), u64>);

impl Tally {
    pub(crate) fn record<T>(&mut self, method: &'static str, result: &Result<T, Status>) {
        let code = result.as_ref().map_or_else(Status::code, |_| Code::Ok);
        *self.0.entry((method, code as i32)).or_default() += 1;
    }

    pub(crate) fn count(&self, method: &str, code: Code) -> u64 {
        self.0
            .iter()
            .filter(|((m, c), _)| *m == method && *c == code as i32)
            .map(|(_, n)| n)
            .sum()
    }

    pub(crate) fn calls(&self, method: &str) -> u64 {
        self.0
            .iter()
            .filter(|((m, _), _)| *m == method)
            .map(|(_, n)| n)
            .sum()
    }
}
