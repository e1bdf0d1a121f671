//! Compiles the wire API with `protox` (a pure-Rust protobuf compiler), so building
//! essaim needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = "../../proto";
    let file = "../../proto/essaim/v1/essaim.proto";
    println!("cargo:rerun-if-changed={file}");
    let descriptors = protox::compile([file], [proto_root])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
