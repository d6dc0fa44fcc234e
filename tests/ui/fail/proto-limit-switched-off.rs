// `max_messages_out = none` for `ListItems`, whose .proto declares `max_messages_out: 3`.

use catalog_pb::{DeleteItemRequest, DeleteItemResponse, GetItemRequest, Item, ListItemsRequest};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tonic_intercept::{auth::Principal, StaticTokens};
use tonic_intercept_tests::catalog_pb;

struct Catalog {
    tokens: StaticTokens<Principal>,
}

#[tonic_intercept::intercept(
    auth(self.tokens),
    roles(DeleteItem),
    limit(GetItem, DeleteItem, WatchItems),
    limit(ListItems, max_messages_out = none),
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

fn main() {}
