fn main() -> Result<(), tonic_intercept_build::Error> {
    tonic_intercept_build::configure().compile_protos(&["proto/echo/v1/echo.proto"], &["proto"])
}
