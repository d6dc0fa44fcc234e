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
    )?;
    // Envoy's rate limit service, server side, for the test RLS server (tests/common_rls):
    // the runtime's vendored protos, plain prost + tonic (no `_intercept` types).
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    tonic_intercept_build::configure()
        .build_client(false)
        .intercept_types(false)
        .file_descriptor_set_path(out.join("envoy_rls.bin"))
        .compile_protos(
            &["../runtime/proto/envoy/service/ratelimit/v3/rls.proto"],
            &["../runtime/proto"],
        )
}
