//! The trained generator → `generator.onnx`, in inference form.
//!
//! Each BatchNorm is folded into the transposed convolution before it (its running
//! statistics become a per-output-channel scale on the weights and a bias), so the graph
//! is only ConvTranspose, Relu and Tanh: opset 17, input `z` [N, nz, 1, 1], output
//! `image` [N, C, S, S], batch dimension `N` dynamic.

use candle_core::{Result, Tensor};

use super::proto::{self, field, Dim, Message};
use crate::model::layers::{BatchNorm2d, BN_EPS};
use crate::model::Generator;

pub const OPSET: i64 = 17;
/// IR version 8 is the one that goes with opset 17.
pub const IR_VERSION: i64 = 8;
pub const INPUT: &str = "z";
pub const OUTPUT: &str = "image";

/// One transposed convolution of the inference graph, with BatchNorm folded in.
pub struct FoldedConv {
    /// [in, out, k, k]
    pub weight: Vec<f32>,
    pub dims: [usize; 4],
    pub bias: Vec<f32>,
    pub stride: usize,
    pub padding: usize,
}

/// The generator as a list of folded layers: the last is followed by Tanh, the others by ReLU.
pub fn fold(g: &Generator) -> Result<Vec<FoldedConv>> {
    g.blocks
        .iter()
        .map(|b| {
            let (c_in, c_out, kh, kw) = b.conv.weight.dims4()?;
            let weight = b.conv.weight.flatten_all()?.to_vec1::<f32>()?;
            let (scale, bias) = match &b.bn {
                Some(bn) => bn_scale_shift(bn)?,
                None => (vec![1.0; c_out], vec![0.0; c_out]),
            };
            let k = kh * kw;
            let weight = weight.iter().enumerate().map(|(i, w)| w * scale[(i / k) % c_out]).collect();
            Ok(FoldedConv { weight, dims: [c_in, c_out, kh, kw], bias, stride: b.conv.stride, padding: b.conv.padding })
        })
        .collect()
}

/// BatchNorm in eval mode is `x·scale + shift` per channel.
fn bn_scale_shift(bn: &BatchNorm2d) -> Result<(Vec<f32>, Vec<f32>)> {
    let v = |t: &Tensor| t.to_vec1::<f32>();
    let (gamma, beta) = (v(&bn.gamma)?, v(&bn.beta)?);
    let (mean, var) = (v(bn.running_mean.as_tensor())?, v(bn.running_var.as_tensor())?);
    let scale: Vec<f32> = gamma.iter().zip(&var).map(|(g, v)| g / (v + BN_EPS as f32).sqrt()).collect();
    let shift = beta.iter().zip(&mean).zip(&scale).map(|((b, m), s)| b - m * s).collect();
    Ok((scale, shift))
}

/// The ONNX model bytes.
pub fn generator_to_onnx(g: &Generator, doc: &str) -> Result<Vec<u8>> {
    use field::graph;
    let layers = fold(g)?;
    let shape = g.shape;
    let mut graph = Message::new();
    graph.string(graph::NAME, "canard_generator");
    let mut x = INPUT.to_string();
    for (i, l) in layers.iter().enumerate() {
        let (w, b) = (format!("l{i}.weight"), format!("l{i}.bias"));
        graph.message(graph::INITIALIZER, proto::tensor_f32(&w, &l.dims, &l.weight));
        graph.message(graph::INITIALIZER, proto::tensor_f32(&b, &[l.dims[1]], &l.bias));
        let conv_out = format!("l{i}.conv");
        let p = l.padding as i64;
        let attrs = [
            ("kernel_shape", vec![l.dims[2] as i64, l.dims[3] as i64]),
            ("strides", vec![l.stride as i64; 2]),
            ("pads", vec![p; 4]),
        ];
        graph.message(
            graph::NODE,
            proto::node("ConvTranspose", &format!("l{i}.convt"), &[&x, &w, &b], &[&conv_out], &attrs),
        );
        let last = i + 1 == layers.len();
        let (act, out) = if last { ("Tanh", OUTPUT.to_string()) } else { ("Relu", format!("l{i}.relu")) };
        graph.message(
            graph::NODE,
            proto::node(act, &format!("l{i}.{}", act.to_lowercase()), &[&conv_out], &[&out], &[]),
        );
        x = out;
    }
    let s = shape.image_size as i64;
    graph.message(
        graph::INPUT,
        proto::value_info_f32(INPUT, &[Dim::Symbol("N"), Dim::Fixed(shape.nz as i64), Dim::Fixed(1), Dim::Fixed(1)]),
    );
    graph.message(
        graph::OUTPUT,
        proto::value_info_f32(
            OUTPUT,
            &[Dim::Symbol("N"), Dim::Fixed(shape.channels as i64), Dim::Fixed(s), Dim::Fixed(s)],
        ),
    );

    let mut opset = Message::new();
    opset.string(field::opset::DOMAIN, "").int(field::opset::VERSION, OPSET);
    let mut model = Message::new();
    model
        .int(field::model::IR_VERSION, IR_VERSION)
        .string(field::model::PRODUCER_NAME, "canard-train")
        .string(field::model::PRODUCER_VERSION, env!("CARGO_PKG_VERSION"))
        .string(field::model::DOC_STRING, doc)
        .message(field::model::GRAPH, graph)
        .message(field::model::OPSET_IMPORT, opset);
    Ok(model.into_bytes())
}
