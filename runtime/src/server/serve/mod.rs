//! A hardened server: [`Server`], tonic's routing and services behind the library's own
//! accept loop and hyper HTTP/2 connections, with defaults a security review can sign.
//!
//! tonic 0.14's `transport::Server` has no handshake timeout, no bound on open
//! connections, retries a failing `accept` at once (at the file-descriptor limit it
//! spins), advertises no `SETTINGS_MAX_CONCURRENT_STREAMS` unless told and switches h2's
//! limit on locally reset streams off unless told. [`Server`] accepts itself and serves
//! each connection with hyper's HTTP/2 server and tonic's [`Routes`](tonic::service::Routes),
//! inserting into each request what tonic's server inserts, so `Request::remote_addr`,
//! `local_addr` and `peer_certs` keep working (and the per-peer call rate with them).
//!
//! It speaks HTTP/2 only, as gRPC does: a connection that does not open with the HTTP/2
//! preface (an HTTP/1.1 client, gRPC-Web) is closed.
//!
//! # Defaults
//!
//! Each is a `DEFAULT_*` constant on [`Server`] and has a method to change it.
//!
//! | setting | default | where it comes from |
//! |---|---|---|
//! | [`max_concurrent_streams`](Server::max_concurrent_streams) | 128 per connection | nginx `http2_max_concurrent_streams` 128 (hyper 200, grpc-go and Envoy unlimited) |
//! | [`handshake_timeout`](Server::handshake_timeout) (TLS + HTTP/2 preface + first `SETTINGS`) | 10 s | grpc-go `ConnectionTimeout` is 120 s; ours is tighter, a real client needs one round trip or two |
//! | [`max_connections`](Server::max_connections) | 10,000 | ours (grpc-go, tonic: unlimited); past it the server stops accepting |
//! | [`accept_backoff`](Server::accept_backoff) on `EMFILE`/`ENFILE`/`ENOMEM`/`ENOBUFS` | 5 ms doubling to 1 s | grpc-go `Server.Serve` |
//! | [`max_header_list_size`](Server::max_header_list_size) | 16 KiB | hyper's default (also bounds a `CONTINUATION` flood: h2 allows 5 frames past it) |
//! | [`http2_keepalive`](Server::http2_keepalive) interval | 2 h | grpc-go `keepalive.ServerParameters.Time` |
//! | [`http2_keepalive`](Server::http2_keepalive) timeout | 20 s | grpc-go `keepalive.ServerParameters.Timeout` |
//! | [`max_connection_idle`](Server::max_connection_idle) (no open stream) | 1 h | Envoy `idle_timeout` (grpc-go `MaxConnectionIdle`: infinite) |
//! | [`max_connection_age`](Server::max_connection_age) | none | grpc-go `MaxConnectionAge`: infinite; set it behind L4 load balancers |
//! | [`max_connection_age_grace`](Server::max_connection_age_grace) | 30 s | ours, the drain timeout (grpc-go `MaxConnectionAgeGrace`: infinite) |
//! | [`max_pending_accept_reset_streams`](Server::max_pending_accept_reset_streams) (rapid reset, CVE-2023-44487) | 20 | h2's default, set explicitly |
//! | [`max_local_error_reset_streams`](Server::max_local_error_reset_streams) ("MadeYouReset") | 1,024 | h2's and hyper's default; tonic's `Server` passes `None` (off) unless told |
//! | [`tcp_nodelay`](Server::tcp_nodelay) | on | grpc-go (Go's `net` sets it) |
//! | [`tcp_keepalive`](Server::tcp_keepalive) | 15 s | Go's `net` default, which grpc-go's listeners use |
//! | [`drain_timeout`](Server::drain_timeout) | 30 s | Kubernetes' default `terminationGracePeriodSeconds` |
//!
//! # Shutdown
//!
//! [`serve_with_shutdown`](Server::serve_with_shutdown): when the signal completes the
//! listener is closed, health turns `NOT_SERVING`, every connection is sent GOAWAY
//! (HTTP/2 graceful shutdown: calls already started finish, new streams are refused),
//! and after the drain timeout the connections left are closed.
//!
//! # Health and reflection
//!
//! [`with_health`](Server::with_health) serves `grpc.health.v1.Health` outside every
//! policy; [`with_reflection`](Server::with_reflection) serves reflection v1 and v1alpha.
//! Reflection shows the whole schema to anyone who reaches the server: it is off unless
//! you call it.
//!
//! # In memory
//!
//! With the `testing` feature, `tonic_intercept::testing::InMemory` serves a [`Server`]
//! over in-memory pipes instead of a listener, for tests: the same accept loop (the
//! connection cap, the preface check and handshake timeout), connections, edges and
//! policies; no TCP options and no TLS, and handlers find an `InMemoryConnectInfo`
//! (no address) instead of the TCP connect info.
//!
//! # TLS
//!
//! With the `tls` feature, `Server::tls` takes a `rustls::ServerConfig` (rustls with
//! ring, re-exported as `tonic_intercept::server::serve::rustls`); give it a client
//! certificate verifier for mutual TLS. Handlers then see the client's certificates with
//! `Request::peer_certs`.

mod accept;
mod builder;
mod connection;

#[cfg(feature = "testing")]
pub(crate) use accept::MemoryConnection;
pub use builder::Server;
#[cfg(feature = "testing")]
pub use connection::InMemoryConnectInfo;
/// rustls, as [`Server::tls`] takes it (the version tonic's `tls-ring` uses).
#[cfg(feature = "tls")]
pub use tokio_rustls::rustls;
