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
    // Envoy's rate limit service, server side, for the test RLS server (tests/tests/common_rls):
    // the runtime's vendored protos, plain prost + tonic (no `_intercept` types), in a
    // folder of their own (tests/generated.rs lists what OUT_DIR holds).
    // The service of the Python grpcio server tests/tests/client_grpcio.rs calls
    // (tests/python/a6_server.py), in a folder of its own like the RLS protos below.
    let a6 = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("a6");
    std::fs::create_dir_all(&a6).expect("creating OUT_DIR/a6");
    tonic_intercept_build::configure()
        .build_server(false)
        .out_dir(&a6)
        .compile_protos(&["proto/a6/v1/a6.proto"], &["proto"])?;
    // protovalidate rules (tonic-intercept-build's feature `protovalidate` serves
    // `buf/validate/validate.proto`), in a folder of their own like the RLS protos; only
    // with this crate's feature `protovalidate` (Cargo.toml says why).
    #[cfg(feature = "protovalidate")]
    {
        let validated =
            std::path::PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("validated");
        std::fs::create_dir_all(&validated).expect("creating OUT_DIR/validated");
        tonic_intercept_build::configure()
            .out_dir(&validated)
            .file_descriptor_set_path(validated.join("validated.bin"))
            .compile_protos(&["proto/validated/v1/validated.proto"], &["proto"])?;
    }
    let out =
        std::path::PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("envoy_rls");
    std::fs::create_dir_all(&out).expect("creating OUT_DIR/envoy_rls");
    tonic_intercept_build::configure()
        .build_client(false)
        .intercept_types(false)
        .out_dir(&out)
        .file_descriptor_set_path(out.join("envoy_rls.bin"))
        .compile_protos(
            &["../runtime/proto/envoy/service/ratelimit/v3/rls.proto"],
            &["../runtime/proto"],
        )
}
