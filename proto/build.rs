//! Generates the Rust types, client and server for `ovnet.proto` with tonic-prost-build.
//!
//! Needs `protoc` (the Debian package `protobuf-compiler`); set `PROTOC` to use another one.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_protos(&["ovnet.proto"], &["."])?;
    Ok(())
}
