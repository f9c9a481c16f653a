//! Generates the ONNX protobuf types (`crate::export::pb`) from `proto/onnx.proto`, the file
//! the `onnx` package ships (ONNX 1.23.2, Apache-2.0), with protox, a protobuf compiler
//! written in Rust: building canard needs no `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/onnx.proto");
    let descriptors = protox::compile(["proto/onnx.proto"], ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
