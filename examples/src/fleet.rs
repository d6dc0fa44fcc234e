//! One service run as several replicas: `fleet.v1.Checkout`, whose call rates live in
//! Redis where every replica sees them, next to one whose rate each replica keeps alone.
//!
//! | RPC | limit | where it lives | when Redis fails |
//! |---|---|---|---|
//! | `Pay` | 5 calls a minute per caller | Redis (`self.payments`) | refused `UNAVAILABLE` (fail closed) |
//! | `Quote` | 5 calls a minute per caller | Redis (`self.quotes`) | admitted, counted (fail open, Envoy's default) |
//! | `Browse` | 5 calls a minute per caller | each replica's own bucket | — |
//!
//! `Pay` also takes an `idempotency-key`, kept in Redis too (`self.receipts`): a retry
//! that reaches another replica gets the first payment's receipt instead of paying
//! twice; when Redis is down, a keyed payment is refused `UNAVAILABLE` (fail closed).
//!
//! So behind three replicas a caller gets 5 `Pay`s and 5 `Quote`s a minute, and 15
//! `Browse`s. `max_in_flight` would stay local too: it guards a replica's own slots. The
//! `replicas` binary starts three replicas and a Redis and shows it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tonic::{Request, Response, Status};
use tonic_intercept::backend::RedisGcra;
use tonic_intercept::idempotency::RedisIdempotency;
use tonic_intercept::metrics::ServiceMetrics;
use tonic_intercept::prometheus_client::registry::Registry;
use tonic_intercept::{ServerMetrics, StaticTokens, intercept};

use crate::Caller;
use crate::checkout::{
    BrowseRequest, Catalogue, PayRequest, Price, QuoteRequest, Receipt, ReplicaStats, StatsRequest,
};

/// One replica of `fleet.v1.Checkout`.
#[derive(Debug, Clone)]
pub struct Replica {
    name: Arc<str>,
    tokens: StaticTokens<Caller>,
    /// `Pay`'s rate: fail closed (a payment is not taken unchecked).
    payments: Arc<RedisGcra>,
    /// `Quote`'s rate: fail open.
    quotes: Arc<RedisGcra>,
    /// `Pay`'s idempotency keys and receipts.
    receipts: RedisIdempotency<crate::checkout::checkout_intercept::Pay>,
    taken: Arc<AtomicU64>,
    metrics: ServiceMetrics<crate::checkout::checkout_intercept::Service>,
    registry: Arc<Registry>,
}

impl Replica {
    /// A replica named `name`, its shared rates in `payments` (fail closed) and `quotes`
    /// (fail open), `Pay`'s idempotency keys in `receipts`: each replica builds its own,
    /// pointed at the same Redis.
    pub fn new(
        name: &str,
        tokens: StaticTokens<Caller>,
        payments: RedisGcra,
        quotes: RedisGcra,
        receipts: RedisIdempotency<crate::checkout::checkout_intercept::Pay>,
    ) -> Self {
        let mut registry = Registry::default();
        let metrics = ServerMetrics::register(&mut registry).service();
        Self {
            name: name.into(),
            tokens,
            payments: Arc::new(payments),
            quotes: Arc::new(quotes),
            receipts,
            taken: Arc::new(AtomicU64::new(0)),
            metrics,
            registry: Arc::new(registry),
        }
    }

    /// The replica's metrics as OpenMetrics text (`grpc_server_*`, with
    /// `grpc_server_limit_backend_errors_total` once Redis has failed it).
    pub fn render_metrics(&self) -> String {
        tonic_intercept::metrics::render_metrics(&self.registry)
    }
}

#[intercept(
    public(Stats),
    auth(self.tokens),
    limit(Pay, calls_per_minute_per_identity = 5, shared = self.payments),
    limit(Quote, calls_per_minute_per_identity = 5, shared = self.quotes),
    limit(Browse, calls_per_minute_per_identity = 5),
    idempotency(self.receipts, Pay),
    metrics(self.metrics),
)]
#[tonic::async_trait]
impl crate::checkout::checkout_server::Checkout for Replica {
    async fn pay(&self, request: Request<PayRequest>) -> Result<Response<Receipt>, Status> {
        let request = request.into_inner();
        let n = self.taken.fetch_add(1, Ordering::Relaxed) + 1;
        Ok(Response::new(Receipt {
            id: format!("{}-{n}", self.name),
            replica: self.name.to_string(),
            cents: request.cents,
        }))
    }

    async fn quote(&self, request: Request<QuoteRequest>) -> Result<Response<Price>, Status> {
        let cents = 100 * request.into_inner().basket.len() as u64;
        Ok(Response::new(Price { cents }))
    }

    async fn browse(&self, _: Request<BrowseRequest>) -> Result<Response<Catalogue>, Status> {
        Ok(Response::new(Catalogue {
            items: vec!["espresso".into(), "flat white".into()],
        }))
    }

    async fn stats(&self, _: Request<StatsRequest>) -> Result<Response<ReplicaStats>, Status> {
        Ok(Response::new(ReplicaStats {
            replica: self.name.to_string(),
            payments: self.taken.load(Ordering::Relaxed),
            metrics: self.render_metrics(),
        }))
    }
}
