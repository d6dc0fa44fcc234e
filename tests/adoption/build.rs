fn main() -> Result<(), Box<dyn std::error::Error>> {
    // was: tonic_prost_build::configure()
    tonic_intercept_build::configure()
        .build_server(true)
        .build_client(true)
        .type_attribute(".", "#[derive(serde::Serialize, serde::Deserialize)]")
        .extern_path(".common.v1", "::adoption_common::common::v1")
        .bytes(".")
        .btree_map(".inventory.v1.Item.attributes")
        .include_file("_includes.rs")
        .compile_protos(
            &[
                "proto/inventory/v1/inventory.proto",
                "proto/orders/v1/orders.proto",
            ],
            &["proto", "common/proto"],
        )?;
    Ok(())
}
