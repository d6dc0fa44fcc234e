//! Policy declared in the `.proto` (`tonic_intercept/v1/options.proto`), enforced by
//! `#[intercept]`, served by the hardened server in memory
//! (`tonic_intercept::testing::InMemory`); and roles.

use std::time::Duration;

use tokio_stream::StreamExt;
use tonic::{Code, Request, Response, Status, Streaming};
use tonic_intercept::server::Server;
use tonic_intercept::testing::InMemory;
use tonic_intercept::{StaticTokens, auth::Principal, intercept};
use tonic_intercept_tests::catalog_pb::catalog_service_client::CatalogServiceClient;
use tonic_intercept_tests::catalog_pb::catalog_service_server::CatalogServiceServer;
use tonic_intercept_tests::catalog_pb::{
    DeleteItemRequest, DeleteItemResponse, GetItemRequest, Item, ListItemsRequest,
};
use tonic_intercept_tests::with_token;

type Items = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<Item, Status>> + Send>>;

struct Catalog {
    tokens: StaticTokens<Principal>,
}

// The `.proto` says: GetItem is public, ListItems sends at most 3 items within 2 s,
// DeleteItem needs the `admin` role, WatchItems ends after 200 ms of silence, and every
// RPC has a 5 s timeout. The attribute adds only what the `.proto` cannot: who the
// verifier is, that DeleteItem's roles are enforced, and which RPCs are guarded.
#[intercept(
    auth(self.tokens),
    roles(DeleteItem),
    limit(GetItem, ListItems, DeleteItem, WatchItems),
)]
#[tonic::async_trait]
impl tonic_intercept_tests::catalog_pb::catalog_service_server::CatalogService for Catalog {
    async fn get_item(&self, request: Request<GetItemRequest>) -> Result<Response<Item>, Status> {
        let id = request.into_inner().id;
        Ok(Response::new(Item {
            name: format!("item {id}"),
            id,
        }))
    }

    type ListItemsStream = Items;

    async fn list_items(
        &self,
        request: Request<ListItemsRequest>,
    ) -> Result<Response<Self::ListItemsStream>, Status> {
        let count = request.into_inner().count;
        Ok(Response::new(Box::pin(tokio_stream::iter(1..=count).map(
            |i| {
                Ok(Item {
                    id: i.to_string(),
                    name: format!("item {i}"),
                })
            },
        ))))
    }

    async fn delete_item(
        &self,
        request: Request<DeleteItemRequest>,
    ) -> Result<Response<DeleteItemResponse>, Status> {
        let who = request
            .extensions()
            .get::<Principal>()
            .unwrap()
            .name
            .clone();
        assert_eq!(who, "root");
        Ok(Response::new(DeleteItemResponse {}))
    }

    type WatchItemsStream = Items;

    async fn watch_items(
        &self,
        request: Request<Streaming<Item>>,
    ) -> Result<Response<Self::WatchItemsStream>, Status> {
        Ok(Response::new(Box::pin(request.into_inner())))
    }
}

async fn catalog() -> CatalogServiceClient<tonic::transport::Channel> {
    let service = Catalog {
        tokens: StaticTokens::new([
            ("admin-token", Principal::new("root").with_roles(["admin"])),
            ("user-token", Principal::new("ada").with_roles(["reader"])),
        ]),
    };
    let server = Server::builder().add_service(CatalogServiceServer::new(service));
    // The server runs as long as the client's channel does.
    let server = InMemory::serve(server).await.unwrap();
    CatalogServiceClient::new(server.channel())
}

#[tokio::test]
async fn public_in_the_proto_needs_no_token() {
    let mut client = catalog().await;
    let item = client
        .get_item(GetItemRequest { id: "7".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(item.name, "item 7");
}

#[tokio::test]
async fn not_public_in_the_proto_needs_a_token() {
    let mut client = catalog().await;
    let status = client
        .list_items(ListItemsRequest { count: 1 })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn the_protos_stream_limit_cuts_the_fourth_item() {
    let mut client = catalog().await;
    let request = with_token(ListItemsRequest { count: 3 }, "user-token");
    let items: Vec<_> = client
        .list_items(request)
        .await
        .unwrap()
        .into_inner()
        .collect()
        .await;
    assert_eq!(items.len(), 3);
    assert!(items.iter().all(Result::is_ok));

    let request = with_token(ListItemsRequest { count: 5 }, "user-token");
    let items: Vec<_> = client
        .list_items(request)
        .await
        .unwrap()
        .into_inner()
        .collect()
        .await;
    assert_eq!(items.len(), 4);
    assert!(items[..3].iter().all(Result::is_ok));
    let status = items[3].as_ref().unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(
        status.message(),
        "ListItems: more than 3 response messages in one stream"
    );
}

#[tokio::test]
async fn the_protos_roles_answer_permission_denied() {
    let mut client = catalog().await;
    let delete = || DeleteItemRequest { id: "7".into() };

    let status = client.delete_item(delete()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);

    let status = client
        .delete_item(with_token(delete(), "user-token"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(status.message(), "DeleteItem requires the role `admin`");

    client
        .delete_item(with_token(delete(), "admin-token"))
        .await
        .unwrap();
}

#[tokio::test]
async fn the_protos_idle_timeout_ends_a_quiet_stream() {
    let mut client = catalog().await;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(Item {
        id: "1".into(),
        name: "one".into(),
    })
    .await
    .unwrap();
    let request = with_token(
        tokio_stream::wrappers::ReceiverStream::new(rx),
        "user-token",
    );
    let started = tokio::time::Instant::now();
    let mut items = client.watch_items(request).await.unwrap().into_inner();
    assert_eq!(items.message().await.unwrap().unwrap().id, "1");
    let status = items.message().await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert_eq!(
        status.message(),
        "WatchItems: no message for 200 ms (idle timeout)"
    );
    assert!(started.elapsed() >= Duration::from_millis(200));
    drop(tx);
}

#[test]
fn the_generated_types_carry_the_protos_policy() {
    use tonic_intercept::Rpc;
    use tonic_intercept_tests::catalog_pb::catalog_service_intercept::{DeleteItem, GetItem};
    const { assert!(GetItem::DESCRIPTOR.policy.public) };
    assert_eq!(DeleteItem::DESCRIPTOR.policy.roles, ["admin"]);
    assert_eq!(
        DeleteItem::DESCRIPTOR.policy.limits().get_timeout(),
        Some(std::time::Duration::from_millis(5_000))
    );
}
