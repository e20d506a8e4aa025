fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "herald/v1/catalog.proto",
        "herald/v1/tenants.proto",
        "herald/v1/endpoints.proto",
        "herald/v1/publish.proto",
        "herald/v1/deliveries.proto",
        "herald/v1/cluster.proto",
        "herald/v1/agent.proto",
        "herald/v1/access.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    // The descriptor set lets the servers answer gRPC reflection.
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptors = out.join("herald_descriptor.bin");
    tonic_prost_build::configure()
        .file_descriptor_set_path(&descriptors)
        .compile_protos(&files, &["."])?;
    // The protobuf JSON mapping of every message, for the HTTP/JSON API;
    // field names as in the .proto files (snake_case), as the docs use.
    pbjson_build::Builder::new()
        .register_descriptors(&std::fs::read(&descriptors)?)?
        .preserve_proto_field_names()
        .build(&[".herald.v1"])?;
    Ok(())
}
