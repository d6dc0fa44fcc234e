//! `grpc.health.v1.Health` and server reflection (v1 and v1alpha), served by `serve` next
//! to the two services, asked by tonic-health's and tonic-reflection's own clients.

use std::time::Duration;

use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::Code;
use tonic::transport::Channel;
use tonic_intercept::tonic_health::pb::HealthCheckRequest;
use tonic_intercept::tonic_health::pb::health_check_response::ServingStatus;
use tonic_intercept::tonic_health::pb::health_client::HealthClient;
use tonic_intercept_examples::{Services, demo_tokens, serve_with_health};

const USERS: &str = "users.v1.UserService";
const ORDERS: &str = "coffee.v1.OrderService";

/// Serves the example on loopback; returns the channel, the health handle and the stop.
async fn start() -> (
    Channel,
    tonic_intercept::server::Health,
    watch::Sender<bool>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let services = Services::new(demo_tokens());
    let (health, health_service) = services.health().await;
    let (stop, mut stopping) = watch::channel(false);
    let server = tokio::spawn(serve_with_health(
        listener,
        services,
        (health.clone(), health_service),
        async move {
            let _ = stopping.wait_for(|&stop| stop).await;
        },
    ));
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    (channel, health, stop, server)
}

async fn stop(stop: watch::Sender<bool>, server: tokio::task::JoinHandle<std::io::Result<()>>) {
    stop.send_replace(true);
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the server did not shut down within 5s")
        .expect("server task")
        .expect("server");
}

async fn check(client: &mut HealthClient<Channel>, service: &str) -> Result<i32, tonic::Status> {
    let request = HealthCheckRequest {
        service: service.to_owned(),
    };
    Ok(client.check(request).await?.into_inner().status)
}

#[tokio::test]
async fn health_answers_per_service_and_flips_to_not_serving() {
    let (channel, health, stopper, server) = start().await;
    let mut client = HealthClient::new(channel);
    let serving = ServingStatus::Serving as i32;
    let not_serving = ServingStatus::NotServing as i32;

    assert_eq!(health.services(), [USERS, ORDERS]);
    for name in ["", USERS, ORDERS] {
        assert_eq!(check(&mut client, name).await.unwrap(), serving, "{name:?}");
    }
    // The health checking protocol: an unknown service is NOT_FOUND for `Check`.
    let unknown = check(&mut client, "users.v1.NoSuchService")
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    assert_eq!(unknown.message(), "service not registered");

    // Health needs no bearer token: the services behind `#[intercept]` do.
    let mut watch = client
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(watch.message().await.unwrap().unwrap().status, serving);

    health.set_not_serving().await;
    for name in ["", USERS, ORDERS] {
        assert_eq!(
            check(&mut client, name).await.unwrap(),
            not_serving,
            "{name:?}"
        );
    }
    assert_eq!(watch.message().await.unwrap().unwrap().status, not_serving);

    health.set_serving().await;
    health
        .set_status::<tonic_intercept_examples::pb::user_service_intercept::Service>(
            tonic_intercept::tonic_health::ServingStatus::NotServing,
        )
        .await;
    assert_eq!(check(&mut client, "").await.unwrap(), serving);
    assert_eq!(check(&mut client, USERS).await.unwrap(), not_serving);
    assert_eq!(check(&mut client, ORDERS).await.unwrap(), serving);

    // An open `Watch` is an in-flight call that graceful shutdown waits for.
    drop(watch);
    stop(stopper, server).await;
}

#[tokio::test]
async fn health_turns_not_serving_when_shutdown_starts() {
    let (channel, _health, stopper, server) = start().await;
    let mut client = HealthClient::new(channel);
    let mut watch = client
        .watch(HealthCheckRequest {
            service: USERS.to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        watch.message().await.unwrap().unwrap().status,
        ServingStatus::Serving as i32
    );
    stopper.send_replace(true);
    // The open `Watch` is an in-flight call: it sees the drain before the server stops.
    assert_eq!(
        watch.message().await.unwrap().unwrap().status,
        ServingStatus::NotServing as i32
    );
    drop(watch);
    drop(client);
    stop(stopper, server).await;
}

/// One test per reflection version: the same requests, their own generated types.
macro_rules! reflection_test {
    ($name:ident, $version:ident, $own:literal) => {
        #[tokio::test]
        async fn $name() {
            use tonic_intercept::tonic_reflection::pb::$version::server_reflection_client::ServerReflectionClient;
            use tonic_intercept::tonic_reflection::pb::$version::server_reflection_request::MessageRequest;
            use tonic_intercept::tonic_reflection::pb::$version::server_reflection_response::MessageResponse;
            use tonic_intercept::tonic_reflection::pb::$version::ServerReflectionRequest;

            let (channel, _health, stopper, server) = start().await;
            let mut client = ServerReflectionClient::new(channel);
            let requests = [
                MessageRequest::ListServices(String::new()),
                MessageRequest::FileContainingSymbol(ORDERS.to_owned()),
                MessageRequest::FileByFilename("tonic_intercept/v1/options.proto".to_owned()),
                MessageRequest::FileContainingSymbol("users.v1.GetUserRequest".to_owned()),
            ];
            let requests = requests.map(|message| ServerReflectionRequest {
                host: String::new(),
                message_request: Some(message),
            });
            let mut responses = client
                .server_reflection_info(tokio_stream::iter(requests))
                .await
                .unwrap()
                .into_inner();
            let mut next = async || {
                responses
                    .message()
                    .await
                    .unwrap()
                    .unwrap()
                    .message_response
                    .unwrap()
            };
            let file = |response| match response {
                MessageResponse::FileDescriptorResponse(files) => {
                    assert_eq!(files.file_descriptor_proto.len(), 1);
                    prost_types::FileDescriptorProto::decode(&files.file_descriptor_proto[0][..])
                        .unwrap()
                }
                other => panic!("not a file: {other:?}"),
            };

            let MessageResponse::ListServicesResponse(list) = next().await else {
                panic!("not a service list");
            };
            let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
            names.sort();
            // Only what this server serves: the descriptor set also describes
            // `fleet.v1.Checkout` (the replicas example's), which it does not.
            assert_eq!(names, [ORDERS, "grpc.health.v1.Health", $own, USERS]);

            let orders = file(next().await);
            assert_eq!(orders.name(), "coffee/v1/orders.proto");
            assert_eq!(orders.package(), "coffee.v1");
            assert_eq!(orders.dependency, ["tonic_intercept/v1/options.proto"]);
            assert_eq!(orders.service[0].name(), "OrderService");
            // Its import is there too, so clients can resolve the whole file.
            let options = file(next().await);
            assert_eq!(options.name(), "tonic_intercept/v1/options.proto");
            assert_eq!(options.package(), "tonic_intercept.v1");
            let users = file(next().await);
            assert_eq!(users.name(), "users/v1/users.proto");
            assert_eq!(users.service[0].name(), "UserService");
            drop(responses);

            stop(stopper, server).await;
        }
    };
}

reflection_test!(
    reflection_v1_lists_and_resolves,
    v1,
    "grpc.reflection.v1.ServerReflection"
);
reflection_test!(
    reflection_v1alpha_lists_and_resolves,
    v1alpha,
    "grpc.reflection.v1alpha.ServerReflection"
);
