//! Test helpers (feature `testing`): what a service's own tests would otherwise write.
//!
//! - [`InMemory`] serves a [`Server`](crate::server::Server) (or a tonic router) in
//!   memory and hands out connected tonic `Channel`s: no port, the way grpc-go tests use
//!   `bufconn`, with every limit, edge protection, policy and metric of the server.
//! - [`CallBuilder`] builds the [`Call`](crate::Call) and metadata that an
//!   [`Authenticate`](crate::Authenticate) verifier, a [`Hook`](crate::Hook) or a
//!   [`Validate`](crate::Validate) check receive, and runs them as the server does, to
//!   unit-test them without a server.
//!
//! Add the feature where tests use it, in `[dev-dependencies]`, so that release builds
//! do not compile the helpers nor the server's in-memory transport:
//!
//! ```toml
//! [dependencies]
//! tonic-intercept = "0.1"
//!
//! [dev-dependencies]
//! tonic-intercept = { version = "0.1", features = ["testing"] }
//! ```

mod call;
mod memory;

pub use crate::server::serve::InMemoryConnectInfo;
pub use call::{CallBuilder, TestCall};
pub use memory::{Connector, InMemory, PIPE_CAPACITY};
