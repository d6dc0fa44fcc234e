fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fds = protox::compile(["common/v1/money.proto"], ["proto"])?;
    prost_build::Config::new()
        .type_attribute(".", "#[derive(serde::Serialize, serde::Deserialize)]")
        .compile_fds(fds)?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
