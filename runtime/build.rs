//! Compiles the gRPC API in proto/ into Rust, with a descriptor set for server reflection.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        // Credentials must never reach a log line: their Debug is written by hand (api/mod.rs).
        .skip_debug(["berth.v1.RegistryCredentials"])
        .file_descriptor_set_path(out_dir.join("berth_descriptor.bin"))
        .compile_protos(&["proto/berth/v1/berth.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
