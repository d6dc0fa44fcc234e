#![doc = include_str!("../../docs/client.md")]

mod config;
mod credentials;
pub(crate) mod engine;
mod head;
mod metrics;
mod policy;
pub(crate) mod retry;
mod stream;

pub use config::{ClientConfig, ClientHook, ClientOutcome};
pub use credentials::{BearerToken, TokenProvider, TokenSource};
pub use engine::Transport;
pub use metrics::{ClientMetrics, ClientServiceMetrics};
pub use policy::{ClientPolicy, DEFAULT_REPLAY_BUFFER, IdempotentRpc};
pub use retry::{GiveUpReason, MAX_ATTEMPTS_CAP, RetryPolicy, RetryThrottle};
pub use stream::Responses;
