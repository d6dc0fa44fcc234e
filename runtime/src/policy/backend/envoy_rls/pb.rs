//! The messages and client of `envoy.service.ratelimit.v3`, generated from the vendored
//! protos in `runtime/proto/envoy/` by `tonic-intercept-build` (client only, without the
//! `_intercept` modules) and checked in, so that no user's build runs a proto compiler.
//! `tests/tests/envoy_rls.rs` regenerates them and fails when they differ; after an
//! intended change: `UPDATE_SNAPSHOTS=1 cargo test -p tonic-intercept-tests --test envoy_rls`.
//! The module tree below mirrors the proto packages, which the generated code names by
//! relative paths (`super::super::...`).

#![allow(
    unreachable_pub,
    dead_code,
    missing_docs,
    missing_debug_implementations,
    clippy::all,
    clippy::pedantic,
    rustdoc::all
)]

pub(crate) mod envoy {
    pub mod config {
        pub mod core {
            pub mod v3 {
                include!("generated/envoy.config.core.v3.rs");
            }
        }
    }
    pub mod extensions {
        pub mod common {
            pub mod ratelimit {
                pub mod v3 {
                    include!("generated/envoy.extensions.common.ratelimit.v3.rs");
                }
            }
        }
    }
    pub mod service {
        pub mod ratelimit {
            pub mod v3 {
                include!("generated/envoy.service.ratelimit.v3.rs");
            }
        }
    }
    pub mod r#type {
        pub mod v3 {
            include!("generated/envoy.r#type.v3.rs");
        }
    }
}
