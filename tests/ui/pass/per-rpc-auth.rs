// Two verifiers, each covering its own RPCs, with different identity types.

use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};
use tonic_intercept::{Authenticate, Call, StaticTokens, auth::bearer_token};
use tonic_intercept_tests::pb;

use pb::{EchoReply, EchoRequest, StreamRequest, Summary};

#[derive(Clone)]
struct Admin {
    name: String,
}

struct Admins;

impl Authenticate for Admins {
    type Identity = Admin;

    async fn authenticate(&self, _call: &Call, metadata: &MetadataMap) -> Result<Admin, Status> {
        match bearer_token(metadata)? {
            "root" => Ok(Admin {
                name: "root".into(),
            }),
            _ => Err(Status::permission_denied("admins only")),
        }
    }
}

struct Echo {
    users: StaticTokens<String>,
    admins: Admins,
}

#[tonic_intercept::intercept(
    public(Unary),
    auth(self.users, ServerStream, ClientStream),
    auth(self.admins, Bidi),
)]
#[tonic::async_trait]
impl pb::echo_service_server::EchoService for Echo {
    async fn unary(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        Ok(Response::new(EchoReply {
            text: request.into_inner().text,
            seq: 0,
        }))
    }

    type ServerStreamStream = ReceiverStream<Result<EchoReply, Status>>;

    async fn server_stream(
        &self,
        request: Request<StreamRequest>,
    ) -> Result<Response<Self::ServerStreamStream>, Status> {
        let user = request.extensions().get::<String>().cloned();
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let _ = tx.try_send(Ok(EchoReply {
            text: user.unwrap_or_default(),
            seq: 1,
        }));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn client_stream(
        &self,
        _request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<Summary>, Status> {
        Ok(Response::new(Summary::default()))
    }

    type BidiStream = ReceiverStream<Result<EchoReply, Status>>;

    async fn bidi(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<Self::BidiStream>, Status> {
        let admin = request.extensions().get::<Admin>().map(|a| a.name.clone());
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let _ = tx.try_send(Ok(EchoReply {
            text: admin.unwrap_or_default(),
            seq: 1,
        }));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

fn main() {
    let _server = pb::echo_service_server::EchoServiceServer::new(Echo {
        users: StaticTokens::new([("s3cret", "ada".to_string())]),
        admins: Admins,
    });
}
