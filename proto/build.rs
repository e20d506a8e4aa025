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
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("herald_descriptor.bin"))
        .compile_protos(&files, &["."])?;
    Ok(())
}
