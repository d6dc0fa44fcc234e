//! The public `CreateUser`: rated per peer address, and the directory it fills bounded.
//! Each test connects from its own loopback address (`CreateUser`'s buckets are shared
//! by every server of this test binary).

mod common;

use std::net::{Ipv4Addr, SocketAddr};

use tonic::Code;
use tonic::transport::{Channel, Endpoint};
use tonic_intercept::wire::RETRY_PUSHBACK;
use tonic_intercept_examples::pb::CreateUserRequest;
use tonic_intercept_examples::pb::user_service_client::UserServiceClient;
use tonic_intercept_examples::users::CREATE_USER_PER_PEER_PER_SECOND;
use tonic_intercept_examples::{ADA_TOKEN, with_token};

use common::Served;

/// A user client whose connection leaves from `source`.
async fn users_from(server: SocketAddr, source: [u8; 4]) -> UserServiceClient<Channel> {
    let channel = Endpoint::from_shared(format!("http://{server}"))
        .unwrap()
        .local_address(Some(Ipv4Addr::from(source).into()))
        .connect()
        .await
        .unwrap();
    UserServiceClient::new(channel)
}

fn record(i: usize) -> CreateUserRequest {
    CreateUserRequest {
        name: format!("user {i}"),
        email: format!("user{i}@example.com"),
    }
}

fn pushback_ms(status: &tonic::Status) -> u64 {
    status
        .metadata()
        .get(RETRY_PUSHBACK)
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

// Paused time: nothing sleeps, so the clock stands still and the pushback is exact.
#[tokio::test(start_paused = true)]
async fn create_user_is_rated_per_peer_address() {
    let served = Served::start().await;
    let rate = CREATE_USER_PER_PEER_PER_SECOND as usize;
    let mut first = users_from(served.addr, [127, 0, 0, 3]).await;
    for i in 0..rate {
        first.create_user(record(i)).await.unwrap();
    }
    let status = first.create_user(record(rate)).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    let per_token = 1_000 / u64::from(CREATE_USER_PER_PEER_PER_SECOND);
    assert_eq!(pushback_ms(&status), per_token);
    assert_eq!(
        status.message(),
        format!(
            "CreateUser: more than {rate} calls per second per peer address \
             (calls_per_second_per_peer); retry in {per_token} ms"
        )
    );
    // Another address signs up meanwhile.
    let mut second = users_from(served.addr, [127, 0, 0, 4]).await;
    second.create_user(record(100)).await.unwrap();
    assert_eq!(served.services.users.count(), rate + 1);
    served.shutdown().await;
}

#[tokio::test]
async fn the_directory_is_bounded() {
    let served = Served::start().await;
    served.services.users.set_max_users(3);
    let mut users = users_from(served.addr, [127, 0, 0, 2]).await;
    for i in 0..3 {
        users.create_user(record(i)).await.unwrap();
    }
    let status = users.create_user(record(3)).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(
        status.message(),
        "the user directory is full: it holds at most 3 users"
    );
    // A batch that does not fit stores nothing.
    served.services.users.set_max_users(4);
    let batch = tokio_stream::iter([record(4), record(5)]);
    let status = users
        .import_users(with_token(batch, ADA_TOKEN))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(
        status.message(),
        "the user directory is full: it holds 3 of at most 4 users, 2 more do not fit; \
         nothing was stored"
    );
    assert_eq!(served.services.users.count(), 3);
    // One more fits.
    let one = tokio_stream::iter([record(6)]);
    let summary = users
        .import_users(with_token(one, ADA_TOKEN))
        .await
        .unwrap();
    assert_eq!(summary.into_inner().accepted, 1);
    assert_eq!(served.services.users.count(), 4);
    served.shutdown().await;
}
