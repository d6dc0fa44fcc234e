//! Call admission: `calls_per_second_per_peer` gives each address a bucket of the public
//! `CreateUser` calls; on the order desk, `calls_per_second_per_identity` gives each person
//! a bucket of `PlaceOrder` calls, `max_in_flight` caps the live `Subscribe` feeds; all
//! refuse with `RESOURCE_EXHAUSTED` and tell the client when to retry.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use tonic::Code;
use tonic::transport::Endpoint;
use tonic_intercept::wire::RETRY_PUSHBACK;
use tonic_intercept_examples::orders::{Feed, MAX_LIVE_FEEDS, PLACE_ORDER_PER_SECOND};
use tonic_intercept_examples::pb::user_service_client::UserServiceClient;
use tonic_intercept_examples::users::CREATE_USER_PER_PEER_PER_SECOND;
use tonic_intercept_examples::{ADA_TOKEN, BOB_TOKEN, Services};

use crate::support::{
    Orders, Tally, Users, code_name, ensure, ok, order, place, producers_stopped, pushback, record,
    subscribe_request,
};

/// A user client whose connection leaves from `source`, another loopback address than the
/// demo's own client: the server sees another peer.
async fn users_from(server: SocketAddr, source: Ipv4Addr) -> Result<Users, String> {
    let channel = Endpoint::from_shared(format!("http://{server}"))
        .map_err(|e| format!("endpoint: {e}"))?
        .local_address(Some(source.into()))
        .connect()
        .await
        .map_err(|e| format!("connect from {source}: {e}"))?;
    Ok(UserServiceClient::new(channel))
}

/// `calls_per_second_per_peer` on the public `CreateUser`: there is no identity to count
/// sign-ups per, so they are counted per address.
pub(crate) async fn sign_ups_per_address(
    server_addr: SocketAddr,
    server: &Services,
    tally: &mut Tally,
) -> Result<String, String> {
    const RATE: u32 = CREATE_USER_PER_PEER_PER_SECOND;
    let before = server.users.count();
    let flooder = Ipv4Addr::new(127, 0, 0, 2);
    let mut flood = users_from(server_addr, flooder).await?;
    let started = Instant::now();
    let mut admitted = 0;
    let refused = loop {
        ensure!(
            admitted <= 3 * RATE,
            "{admitted} sign-ups from {flooder} in a burst, none refused"
        );
        let email = format!("flood{admitted}@example.com");
        let result = flood.create_user(record("Flood", &email)).await;
        tally.record("CreateUser", &result);
        match result {
            Ok(_) => admitted += 1,
            Err(status) => break status,
        }
    };
    let who = format!("the sign-up burst from {flooder}");
    let wait = burst_refused(&who, RATE, &refused, admitted, started.elapsed())?;
    // Another address is served meanwhile.
    let neighbour = Ipv4Addr::new(127, 0, 0, 3);
    let mut other = users_from(server_addr, neighbour).await?;
    let result = other
        .create_user(record("Grace Hopper", "grace@example.com"))
        .await;
    tally.record("CreateUser", &result);
    ok("a sign-up from another address", result)?;
    let stored = server.users.count() - before;
    ensure!(
        stored == admitted as usize + 1,
        "the directory gained {stored} users, expected {}",
        admitted + 1
    );
    Ok(format!(
        "CreateUser (public) at {RATE}/s per address: {flooder} signed up {admitted}, the next got RESOURCE_EXHAUSTED with {RETRY_PUSHBACK}: {wait}; {neighbour} was served meanwhile"
    ))
}

pub(crate) async fn order_rate_per_identity(
    orders: &mut Orders,
    server: &Services,
    tally: &mut Tally,
) -> Result<String, String> {
    const RATE: u32 = PLACE_ORDER_PER_SECOND;
    let before = server.orders.placed_count();
    // Ada's first orders: her bucket is full, RATE orders pass back to back.
    let started = Instant::now();
    let mut admitted = 0;
    let refused = loop {
        ensure!(
            admitted <= 3 * RATE,
            "{admitted} orders in a burst, none refused"
        );
        match place(orders, tally, order("espresso", 1, ADA_TOKEN)).await {
            Ok(_) => admitted += 1,
            Err(status) => break status,
        }
    };
    let wait = burst_refused("ada's burst", RATE, &refused, admitted, started.elapsed())?;
    // Bob has a bucket of his own.
    let bob = place(orders, tally, order("cortado", 1, BOB_TOKEN)).await;
    ok("bob's order during ada's refusal", bob)?;
    tokio::time::sleep(Duration::from_millis(wait + 5)).await;
    let again = place(orders, tally, order("espresso", 1, ADA_TOKEN)).await;
    ok("ada's order after the pushback", again)?;
    let placed = server.orders.placed_count() - before;
    ensure!(
        placed == admitted as usize + 2,
        "the desk took {placed} orders, expected {}",
        admitted + 2
    );
    Ok(format!(
        "PlaceOrder at {RATE}/s per person: ada's burst placed {admitted}, the next got RESOURCE_EXHAUSTED with {RETRY_PUSHBACK}: {wait}; bob was served meanwhile, ada again after {wait} ms"
    ))
}

pub(crate) async fn live_feeds_in_flight(
    orders: &mut Orders,
    feed: &Feed,
) -> Result<String, String> {
    producers_stopped(feed).await?;
    let mut screens = Vec::new();
    for i in 1..=MAX_LIVE_FEEDS {
        let request = subscribe_request(&format!("screen {i}"));
        screens.push(ok("Subscribe", orders.subscribe(request).await)?.into_inner());
    }
    let refused = match orders
        .subscribe(subscribe_request("one screen too many"))
        .await
    {
        Ok(_) => return Err(format!("a feed beyond max_in_flight = {MAX_LIVE_FEEDS}")),
        Err(status) => status,
    };
    ensure!(
        refused.code() == Code::ResourceExhausted,
        "Subscribe beyond max_in_flight answered {}: {}",
        code_name(refused.code()),
        refused.message()
    );
    let wait = pushback(&refused)?;
    // One screen hangs up: its producer stops, and its slot is free.
    drop(screens.pop());
    let freed = async {
        while feed.running() >= MAX_LIVE_FEEDS as usize {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(2), freed)
        .await
        .map_err(|_| "a dropped feed's producer kept running".to_owned())?;
    let again = orders.subscribe(subscribe_request("screen 4 again")).await;
    screens.push(ok("Subscribe after a screen hung up", again)?.into_inner());
    drop(screens);
    producers_stopped(feed).await?;
    Ok(format!(
        "Subscribe with {MAX_LIVE_FEEDS} feeds live (max_in_flight = {MAX_LIVE_FEEDS}): the next RESOURCE_EXHAUSTED ({RETRY_PUSHBACK}: {wait}); once one hung up, admitted"
    ))
}

/// What a burst against a call rate of `rate` per second must show: it ended with
/// `RESOURCE_EXHAUSTED`, whose pushback is at most the time one token takes to come back,
/// after `rate` calls (a full bucket) plus the tokens the burst earned while it ran.
/// Returns the pushback in milliseconds.
fn burst_refused(
    who: &str,
    rate: u32,
    refused: &tonic::Status,
    admitted: u32,
    burst: Duration,
) -> Result<u64, String> {
    ensure!(
        refused.code() == Code::ResourceExhausted,
        "{who} ended with {}: {}",
        code_name(refused.code()),
        refused.message()
    );
    let wait = pushback(refused)?;
    ensure!(
        (1..=1_000 / u64::from(rate)).contains(&wait),
        "pushback of {wait} ms for a rate of {rate}/s"
    );
    let earned = (burst.as_secs_f64() * f64::from(rate)).ceil() as u32;
    ensure!(
        (rate..=rate + earned).contains(&admitted),
        "{who}: {admitted} calls admitted in {burst:?} at {rate}/s"
    );
    Ok(wait)
}
