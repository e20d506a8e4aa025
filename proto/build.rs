fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "herald/v1/catalog.proto",
        "herald/v1/tenants.proto",
        "herald/v1/endpoints.proto",
        "herald/v1/publish.proto",
        "herald/v1/deliveries.proto",
        "herald/v1/cluster.proto",
        "herald/v1/agent.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    tonic_prost_build::configure().compile_protos(&files, &["."])?;
    Ok(())
}
