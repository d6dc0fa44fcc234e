fn main() -> Result<(), tonic_intercept_build::Error> {
    tonic_intercept_build::configure().compile_protos(
        &[
            "proto/echo/v1/echo.proto",
            // Declares its policy with `tonic_intercept/v1/options.proto`.
            "proto/catalog/v1/catalog.proto",
            // The client tests' fault injector.
            "proto/flaky/v1/flaky.proto",
        ],
        &["proto"],
    )
}
