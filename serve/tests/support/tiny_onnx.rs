//! Writes a small generator-shaped ONNX model with a hand-rolled protobuf encoder,
//! so the serve crate's tests need neither Python nor a trained model.
//!
//! Graph: z [N, dim, 1, 1] → Flatten → Gemm → Reshape [N, 16, 4, 4] → Relu →
//! ConvTranspose (stride 2) → Tanh → image [N, 3, 8, 8]. The Gemm has the batch as
//! its M dimension and the ConvTranspose works per image, the two ways a batch can
//! reach a kernel, which is what the batch-independence test needs.

use canard_shared::latent::SplitMix64;

pub const CHANNELS: usize = 3;
pub const SIZE: usize = 8;
const HIDDEN: usize = 16;

/// The ONNX bytes for a latent size of `dim`, with weights drawn from `seed`.
pub fn generator(dim: usize, seed: u64) -> Vec<u8> {
    let mut rng = SplitMix64::new(seed);
    let mut weights =
        |n: usize, scale: f32| -> Vec<f32> { (0..n).map(|_| (rng.next_unit() as f32 * 2.0 - 1.0) * scale).collect() };
    let flat = HIDDEN * 4 * 4;
    let inits = [
        tensor_f32("w0", &[dim, flat], &weights(dim * flat, 0.5)),
        tensor_f32("b0", &[flat], &weights(flat, 0.1)),
        tensor_i64("shape", &[4], &[-1, HIDDEN as i64, 4, 4]),
        tensor_f32("w1", &[HIDDEN, CHANNELS, 4, 4], &weights(HIDDEN * CHANNELS * 16, 0.3)),
        tensor_f32("b1", &[CHANNELS], &weights(CHANNELS, 0.1)),
    ];
    let nodes = [
        node("Flatten", &["z"], &["zf"], &[]),
        node("Gemm", &["zf", "w0", "b0"], &["g"], &[]),
        node("Reshape", &["g", "shape"], &["h"], &[]),
        node("Relu", &["h"], &["r"], &[]),
        node("ConvTranspose", &["r", "w1", "b1"], &["t"], &[("strides", &[2, 2]), ("pads", &[1, 1, 1, 1])]),
        node("Tanh", &["t"], &["image"], &[]),
    ];
    let mut graph = Vec::new();
    for n in &nodes {
        field_bytes(&mut graph, 1, n);
    }
    field_bytes(&mut graph, 2, b"generator");
    for t in &inits {
        field_bytes(&mut graph, 5, t);
    }
    field_bytes(&mut graph, 11, &value_info("z", &[Dim::Param("N"), Dim::Value(dim), Dim::Value(1), Dim::Value(1)]));
    field_bytes(
        &mut graph,
        12,
        &value_info("image", &[Dim::Param("N"), Dim::Value(CHANNELS), Dim::Value(SIZE), Dim::Value(SIZE)]),
    );

    let mut opset = Vec::new();
    field_bytes(&mut opset, 1, b"");
    field_varint(&mut opset, 2, 17);
    let mut model = Vec::new();
    field_varint(&mut model, 1, 8); // IR version 8
    field_bytes(&mut model, 2, b"canard-serve tests");
    field_bytes(&mut model, 7, &graph);
    field_bytes(&mut model, 8, &opset);
    model
}

enum Dim<'a> {
    Value(usize),
    Param(&'a str),
}

fn value_info(name: &str, dims: &[Dim]) -> Vec<u8> {
    let mut shape = Vec::new();
    for d in dims {
        let mut dim = Vec::new();
        match d {
            Dim::Value(v) => field_varint(&mut dim, 1, *v as u64),
            Dim::Param(p) => field_bytes(&mut dim, 2, p.as_bytes()),
        }
        field_bytes(&mut shape, 1, &dim);
    }
    let mut tensor = Vec::new();
    field_varint(&mut tensor, 1, 1); // FLOAT
    field_bytes(&mut tensor, 2, &shape);
    let mut ty = Vec::new();
    field_bytes(&mut ty, 1, &tensor);
    let mut info = Vec::new();
    field_bytes(&mut info, 1, name.as_bytes());
    field_bytes(&mut info, 2, &ty);
    info
}

fn node(op: &str, inputs: &[&str], outputs: &[&str], ints_attrs: &[(&str, &[i64])]) -> Vec<u8> {
    let mut n = Vec::new();
    for i in inputs {
        field_bytes(&mut n, 1, i.as_bytes());
    }
    for o in outputs {
        field_bytes(&mut n, 2, o.as_bytes());
    }
    field_bytes(&mut n, 4, op.as_bytes());
    for (name, values) in ints_attrs {
        let mut a = Vec::new();
        field_bytes(&mut a, 1, name.as_bytes());
        for &v in *values {
            field_varint(&mut a, 8, v as u64);
        }
        field_varint(&mut a, 20, 7); // AttributeType INTS
        field_bytes(&mut n, 5, &a);
    }
    n
}

fn tensor_f32(name: &str, dims: &[usize], values: &[f32]) -> Vec<u8> {
    tensor(name, dims, 1, &values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>())
}

fn tensor_i64(name: &str, dims: &[usize], values: &[i64]) -> Vec<u8> {
    tensor(name, dims, 7, &values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>())
}

fn tensor(name: &str, dims: &[usize], data_type: u64, raw: &[u8]) -> Vec<u8> {
    let mut t = Vec::new();
    for &d in dims {
        field_varint(&mut t, 1, d as u64);
    }
    field_varint(&mut t, 2, data_type);
    field_bytes(&mut t, 8, name.as_bytes());
    field_bytes(&mut t, 9, raw);
    t
}

fn field_varint(buf: &mut Vec<u8>, field: u64, value: u64) {
    varint(buf, field << 3);
    varint(buf, value);
}

fn field_bytes(buf: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    varint(buf, (field << 3) | 2);
    varint(buf, bytes.len() as u64);
    buf.extend_from_slice(bytes);
}

fn varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}
