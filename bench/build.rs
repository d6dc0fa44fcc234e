fn main() -> Result<(), tonic_intercept_build::Error> {
    tonic_intercept_build::configure().compile_protos(&["proto/bench/v1/bench.proto"], &["proto"])
}
