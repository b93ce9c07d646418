//! Generates the etcd v3 API and the peer protocol with a vendored protoc
//! (no system protoc needed).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // prost-build finds protoc through this variable.
    std::env::set_var("PROTOC", protoc);
    tonic_prost_build::configure().bytes(".").compile_protos(
        &[
            "proto/etcd/kv.proto",
            "proto/etcd/auth.proto",
            "proto/etcd/rpc.proto",
            "proto/etcd/v3lock.proto",
            "proto/etcd/v3election.proto",
            "proto/concord/peer.proto",
        ],
        &["proto/etcd", "proto/concord"],
    )?;
    Ok(())
}
