// The attribute may repeat what the .proto declares, as long as it agrees: the same roles,
// the same limit values, and `auth(..)` naming only RPCs the .proto leaves non-public.

use catalog_pb::catalog_service_server::CatalogServiceServer;
use catalog_pb::{DeleteItemRequest, DeleteItemResponse, GetItemRequest, Item, ListItemsRequest};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tonic_intercept::{auth::Principal, StaticTokens};
use tonic_intercept_tests::catalog_pb;

struct Catalog {
    tokens: StaticTokens<Principal>,
}

#[tonic_intercept::intercept(
    auth(self.tokens, ListItems, DeleteItem, WatchItems),
    roles("admin", DeleteItem),
    limit(GetItem, DeleteItem),
    limit(ListItems, max_messages_out = 3, timeout_ms = 2_000),
    limit(WatchItems, idle_timeout_ms = 200),
)]
#[tonic::async_trait]
impl catalog_pb::catalog_service_server::CatalogService for Catalog {
    async fn get_item(&self, _request: Request<GetItemRequest>) -> Result<Response<Item>, Status> {
        Err(Status::unimplemented("get_item"))
    }

    type ListItemsStream = ReceiverStream<Result<Item, Status>>;

    async fn list_items(
        &self,
        _request: Request<ListItemsRequest>,
    ) -> Result<Response<Self::ListItemsStream>, Status> {
        Err(Status::unimplemented("list_items"))
    }

    async fn delete_item(
        &self,
        _request: Request<DeleteItemRequest>,
    ) -> Result<Response<DeleteItemResponse>, Status> {
        Err(Status::unimplemented("delete_item"))
    }

    type WatchItemsStream = ReceiverStream<Result<Item, Status>>;

    async fn watch_items(
        &self,
        _request: Request<Streaming<Item>>,
    ) -> Result<Response<Self::WatchItemsStream>, Status> {
        Err(Status::unimplemented("watch_items"))
    }
}

fn main() {
    let _server = CatalogServiceServer::new(Catalog {
        tokens: StaticTokens::new([("admin-token", Principal::new("root").with_roles(["admin"]))]),
    });
}
