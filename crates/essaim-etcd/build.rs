//! Compiles the etcd v3 API with `protox` (a pure-Rust protobuf compiler), so building
//! essaim needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = "../../proto/etcd-v3";
    let file = "../../proto/etcd-v3/etcd/api/etcdserverpb/rpc.proto";
    println!("cargo:rerun-if-changed={proto_root}");
    let descriptors = protox::compile([file], [proto_root])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .compile_fds(descriptors)?;
    Ok(())
}
