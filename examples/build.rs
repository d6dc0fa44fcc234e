fn main() -> Result<(), tonic_intercept_build::Error> {
    tonic_intercept_build::configure().compile_protos(
        &[
            "proto/users/v1/users.proto",
            "proto/coffee/v1/orders.proto",
            "proto/fleet/v1/checkout.proto",
        ],
        &["proto"],
    )
}
