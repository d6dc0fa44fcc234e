//! Protos and servers shared by the integration and compile-fail tests.

pub mod pb {
    tonic::include_proto!("echo.v1");
}
