//! The server side of one call: what a handler, an [`Authenticate`](crate::Authenticate)
//! or a [`Hook`](crate::Hook) sees of it, and the stream wrappers every message of a
//! streaming RPC passes through.
//!
//! [`Call`] is known when the call starts (the RPC, the peer, the deadline);
//! [`CallOutcome`] when it ends (the code, the counts, the [`PolicyKind`] that ended it,
//! if one did). [`Deadline::current`] gives a running handler its deadline. [`Inbound`]
//! wraps the request stream of a client-streaming or bidi handler, [`Outbound`] the
//! response stream of a server-streaming or bidi one.
//!
//! [`Server`] serves them: the library's own accept loop and HTTP/2 settings, with
//! defaults a security review can sign ([`serve`] has the table), each service behind its
//! [`Edge`], so that each call is owned from its request headers (see
//! [The edge](#the-edge)).
//!
//! # Health and reflection
//!
//! One line each on the [`Server`]: [`Server::with_health`] serves
//! `grpc.health.v1.Health`, `SERVING` for the whole server (the empty name) and for each
//! service you name, `NOT_FOUND` for any other name, and `NOT_SERVING` as soon as the
//! server drains. It needs no authentication and no limit refuses it: probes and load
//! balancers call it without credentials. [`Server::with_reflection`] serves reflection
//! v1 and v1alpha from the descriptor set that tonic-intercept-build writes, so `grpcurl`
//! and Postman discover the API. It too is outside auth, so it shows the whole schema to
//! whoever reaches the server: it is off unless you call it. Neither runs the call
//! lifecycle below: their calls are not in the `grpc_server_*` metrics.
//!
//! ```no_run
//! # tonic_intercept::__doc_server!();
//! # pub const FILE_DESCRIPTOR_SET: &[u8] = tonic_intercept::server::HEALTH_FILE_DESCRIPTOR_SET;
//! use pb::user_service_server::UserServiceServer;
//! use tonic_intercept::server::{HealthServices, Server};
//!
//! # async fn run(users: Users, listener: tokio::net::TcpListener) -> Result<(), Box<dyn std::error::Error>> {
//! Server::builder()
//!     .add_service(UserServiceServer::new(users))
//!     .with_health(HealthServices::new().serving::<pb::user_service_intercept::Service>())
//!     .with_reflection(&[FILE_DESCRIPTOR_SET])?
//!     .serve(listener)
//!     .await?;
//! # Ok(())
//! # }
//! ```
//!
//! With tonic's own `transport::Server`, the same blocks work by hand:
//! [`HealthServices::build`] returns the [`Health`] handle and tonic-health's service,
//! [`reflection`] the two reflection services.
//!
//! # The edge
//!
//! Without an [`Edge`], a call's policies begin where tonic hands the decoded request to
//! the handler: reading and decoding the request, and tonic's own limits, are outside
//! them and outside the metrics. `Edge::new(UserServiceServer::new(users))` takes over
//! from the request headers:
//!
//! | what arrives | answer | counted as `policy` |
//! | --- | --- | --- |
//! | a path that names no method of the service | tonic's `UNIMPLEMENTED` | `unknown_method` (method label `<unknown>`) |
//! | `grpc-timeout` that is not 1 to 8 digits and a unit (`-1S`, `abc`, `99999999999H`) | `INTERNAL` "malformed grpc-timeout: -1S" | `grpc_timeout` |
//! | a deadline already over (`grpc-timeout: 1n`) | `DEADLINE_EXCEEDED` | `deadline` |
//! | no complete request (or no handler's answer) by the deadline: the earlier of `grpc-timeout` and `timeout_ms`, from the headers | `DEADLINE_EXCEEDED` "GetUser: deadline exceeded" | `deadline` |
//! | a length prefix above `max_message_bytes` (4 MiB where the RPC sets none) | `RESOURCE_EXHAUSTED`, before any of the message is buffered | `limit` |
//! | a prefix above the generated server's own `max_decoding_message_size` | `RESOURCE_EXHAUSTED` (tonic says `OUT_OF_RANGE`) | `limit` |
//! | a compressed message that decompresses above that size | tonic's `RESOURCE_EXHAUSTED` | `limit` |
//! | malformed protobuf, unknown `grpc-encoding`, bad compressed flag | tonic's `INTERNAL` / `UNIMPLEMENTED` | `decode` |
//!
//! The handler's [`Call`] and [`Deadline`] are the edge's: one clock, started at the
//! headers. The server's deadline is 1 ms ahead of the client's `grpc-timeout`, so that
//! its `DEADLINE_EXCEEDED` goes out before tonic's own `grpc-timeout` timer (which would
//! answer `CANCELLED`) fires.
//!
//! With [`Edge::metrics`], the edge counts each call once: `grpc_server_started_total`
//! at the headers and `grpc_server_handled_total` with the status that went out (read
//! from the trailers), so every started call has its handled one, by code, also those
//! refused before a handler ran. The `#[intercept(metrics(..))]` hook then counts only
//! messages, bytes and the handler's own refusals.
//!
//! Inside, the folder holds the call's lifecycle, above the policies it runs: `guard` (a
//! call's policies from its start to its end), `stream` (the wrappers), `recover`
//! (panics), `edge` (the service in front of tonic's) and `expand` (what only the
//! `#[intercept]` expansion calls). The call
//! context itself (`src/call.rs`) sits below the policies, which all read it.

pub(crate) mod edge;
pub(crate) mod expand;
pub(crate) mod guard;
mod health;
pub(crate) mod recover;
mod reflection;
pub mod serve;
pub(crate) mod stream;

pub use crate::call::{Call, CallOutcome, Deadline, PolicyKind};
pub use edge::{DEFAULT_MAX_MESSAGE_BYTES, Edge, EdgeBody, EdgeFuture, EdgeResponseBody};
pub use health::{Health, HealthServices};
pub use reflection::{HEALTH_FILE_DESCRIPTOR_SET, reflection};
pub use serve::Server;
pub use stream::{Inbound, Outbound};
