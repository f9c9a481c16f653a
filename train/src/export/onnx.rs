//! The trained generator → `generator.onnx`: opset 17, input `z` [N, nz, 1, 1], output
//! `image` [N, C, S, S], the batch dimension `N` dynamic, written with ONNX's own
//! protobuf types ([`super::pb`]). DCGAN's generator and fastgan's.
//!
//! Every parameter is an initializer under its name in the network (`0.conv.weight`,
//! `0.bn.gamma`, `up8.conv.weight`, …, as in checkpoints), so the file loads back into the very candle
//! module that trained it ([`super::reader`]). BatchNorm stays a node, in inference form
//! (running statistics): ONNX Runtime folds it into the convolution before it when it
//! optimises the session, so serving pays nothing for it.

use candle_core::{DType, Result, Tensor};
use prost::Message;

use super::pb::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto::dimension,
    tensor_shape_proto::Dimension, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use crate::model::fastgan::EXCITE_SLOPE;
use crate::model::layers::{BatchNorm2d, BN_EPS};
use crate::model::{dcgan, fastgan, Generator};

pub const OPSET: i64 = 17;
/// IR version 8 is the one that goes with opset 17.
pub const IR_VERSION: i64 = 8;
pub const INPUT: &str = "z";
pub const OUTPUT: &str = "image";

/// The ONNX model bytes.
pub fn generator_to_onnx(g: &Generator, doc: &str) -> Result<Vec<u8>> {
    let model = ModelProto {
        ir_version: Some(IR_VERSION),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(OPSET) }],
        producer_name: Some("canard-train".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        doc_string: Some(doc.into()),
        graph: Some(graph(g)?),
        ..Default::default()
    };
    Ok(model.encode_to_vec())
}

/// The generator's graph, its parameters as initializers.
pub fn graph(g: &Generator) -> Result<GraphProto> {
    let mut graph = GraphProto { name: Some("canard_generator".into()), ..Default::default() };
    match g {
        Generator::Dcgan(g) => dcgan(&mut graph, g)?,
        Generator::Fastgan(g) => fastgan(&mut graph, g)?,
    }
    let shape = g.shape();
    let (nz, c, s) = (shape.nz as i64, shape.channels as i64, shape.image_size as i64);
    graph.input.push(value_info(INPUT, &[None, Some(nz), Some(1), Some(1)]));
    graph.output.push(value_info(OUTPUT, &[None, Some(c), Some(s), Some(s)]));
    Ok(graph)
}

/// DCGAN: for each block, ConvTranspose, then BatchNormalization and Relu, or Tanh after the last.
fn dcgan(graph: &mut GraphProto, g: &dcgan::Generator) -> Result<()> {
    let mut x = INPUT.to_string();
    let last = g.blocks.len().saturating_sub(1);
    for (i, b) in g.blocks.iter().enumerate() {
        x = conv(graph, &format!("{i}.conv"), &x, &b.conv.weight, b.conv.stride, b.conv.padding, true)?;
        if let Some(bn) = &b.bn {
            x = batch_norm(graph, &format!("{i}.bn"), &x, bn)?;
        }
        let (op, out) = if i == last { ("Tanh", OUTPUT.to_string()) } else { ("Relu", format!("{i}.relu")) };
        graph.node.push(node(op, &out, &[&x], vec![]));
        x = out;
    }
    Ok(())
}

/// fastgan: ConvTranspose, BatchNormalization, GLU (Split, Sigmoid, Mul); per doubling
/// Resize (nearest, ×2), Conv, BatchNormalization, GLU, and from side 32 the excitation
/// (AveragePool to 4×4 where bigger, Conv, LeakyRelu, Conv, Sigmoid, Mul); Conv, Tanh.
fn fastgan(graph: &mut GraphProto, g: &fastgan::Generator) -> Result<()> {
    // Resize's scales, [1, 1, 2, 2], as a Constant node: initializers are parameters only.
    let scales = TensorProto {
        dims: vec![4],
        data_type: Some(DataType::Float as i32),
        float_data: vec![1.0, 1.0, 2.0, 2.0],
        ..Default::default()
    };
    let value = AttributeProto {
        name: Some("value".into()),
        r#type: Some(AttributeType::Tensor as i32),
        t: Some(scales),
        ..Default::default()
    };
    graph.node.push(node("Constant", SCALES, &[], vec![value]));

    let x = conv(graph, "first", INPUT, &g.first.weight, g.first.stride, g.first.padding, true)?;
    let x = batch_norm(graph, "first_bn", &x, &g.first_bn)?;
    let mut maps = vec![glu(graph, "first_glu", &x)];
    for (k, up) in g.ups.iter().enumerate() {
        let side = 8usize << k;
        let name = format!("up{side}");
        let attrs = vec![
            string("mode", "nearest"),
            string("coordinate_transformation_mode", "asymmetric"),
            string("nearest_mode", "floor"),
        ];
        let resized = format!("{name}.resize");
        graph.node.push(node("Resize", &resized, &[&maps[k], "", SCALES], attrs));
        let x = conv(graph, &format!("{name}.conv"), &resized, &up.conv.weight, 1, 1, false)?;
        let x = batch_norm(graph, &format!("{name}.bn"), &x, &up.bn)?;
        let mut x = glu(graph, &name, &x);
        if let Some((_, e)) = g.excitations.iter().find(|(s, _)| *s == side) {
            let name = format!("excite{side}");
            let small = &maps[k - 2]; // side/8
            let pooled = match (side / 8) / 4 {
                1 => small.clone(),
                f => {
                    let out = format!("{name}.pool");
                    let f = f as i64;
                    let attrs = vec![ints("kernel_shape", vec![f, f]), ints("strides", vec![f, f])];
                    graph.node.push(node("AveragePool", &out, &[small], attrs));
                    out
                }
            };
            let s = conv(graph, &format!("{name}.squeeze"), &pooled, &e.squeeze.weight, 1, 0, false)?;
            let act = format!("{name}.act");
            graph.node.push(node("LeakyRelu", &act, &[&s], vec![float("alpha", EXCITE_SLOPE as f32)]));
            let s = conv(graph, &format!("{name}.excite"), &act, &e.excite.weight, 1, 0, false)?;
            let gate = format!("{name}.gate");
            graph.node.push(node("Sigmoid", &gate, &[&s], vec![]));
            graph.node.push(node("Mul", &name, &[&x, &gate], vec![]));
            x = name;
        }
        maps.push(x);
    }
    let last = maps.last().map(String::as_str).unwrap_or(INPUT);
    let x = conv(graph, "to_image", last, &g.to_image.weight, 1, 1, false)?;
    graph.node.push(node("Tanh", OUTPUT, &[&x], vec![]));
    Ok(())
}

/// The Constant node holding Resize's scales.
const SCALES: &str = "scales";

/// A convolution (or a transposed one) with its weight initializer `{name}.weight`; its output.
fn conv(
    graph: &mut GraphProto,
    name: &str,
    x: &str,
    w: &Tensor,
    stride: usize,
    pad: usize,
    transposed: bool,
) -> Result<String> {
    let weight = format!("{name}.weight");
    graph.initializer.push(tensor(&weight, w)?);
    let k = w.dim(3)? as i64;
    let attrs = vec![
        ints("kernel_shape", vec![k; 2]),
        ints("strides", vec![stride as i64; 2]),
        ints("pads", vec![pad as i64; 4]),
    ];
    graph.node.push(node(if transposed { "ConvTranspose" } else { "Conv" }, name, &[x, &weight], attrs));
    Ok(name.to_string())
}

/// BatchNormalization in inference form, its four vectors as `{name}.gamma` etc.; its output.
fn batch_norm(graph: &mut GraphProto, name: &str, x: &str, bn: &BatchNorm2d) -> Result<String> {
    let names = ["gamma", "beta", "running_mean", "running_var"].map(|n| format!("{name}.{n}"));
    for (n, t) in names.iter().zip([&bn.gamma, &bn.beta, bn.running_mean.as_tensor(), bn.running_var.as_tensor()]) {
        graph.initializer.push(tensor(n, t)?);
    }
    let inputs = [x, &names[0], &names[1], &names[2], &names[3]];
    graph.node.push(node("BatchNormalization", name, &inputs, vec![float("epsilon", BN_EPS as f32)]));
    Ok(name.to_string())
}

/// GLU over channels: Split in two, the second half's Sigmoid gates the first; its output `name`.
fn glu(graph: &mut GraphProto, name: &str, x: &str) -> String {
    let (a, b, gate) = (format!("{name}.a"), format!("{name}.b"), format!("{name}.gate"));
    let mut split = node("Split", &a, &[x], vec![int("axis", 1)]);
    split.output.push(b.clone());
    split.name = Some(format!("{name}.split"));
    graph.node.push(split);
    graph.node.push(node("Sigmoid", &gate, &[&b], vec![]));
    graph.node.push(node("Mul", name, &[&a, &gate], vec![]));
    name.to_string()
}

/// A float tensor initializer, its values little-endian in `raw_data`.
fn tensor(name: &str, t: &Tensor) -> Result<TensorProto> {
    let values = t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
    Ok(TensorProto {
        dims: t.dims().iter().map(|&d| d as i64).collect(),
        data_type: Some(DataType::Float as i32),
        name: Some(name.into()),
        raw_data: Some(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ..Default::default()
    })
}

fn float(name: &str, f: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Float as i32),
        f: Some(f),
        ..Default::default()
    }
}

fn int(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(i),
        ..Default::default()
    }
}

fn string(name: &str, s: &str) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::String as i32),
        s: Some(s.as_bytes().to_vec()),
        ..Default::default()
    }
}

fn ints(name: &str, values: Vec<i64>) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Ints as i32),
        ints: values,
        ..Default::default()
    }
}

/// A node named after its one output.
fn node(op: &str, output: &str, inputs: &[&str], attribute: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        name: Some(output.into()),
        op_type: Some(op.into()),
        attribute,
        ..Default::default()
    }
}

/// A graph input or output: a float tensor of the given shape, `None` for the batch
/// dimension `N`.
fn value_info(name: &str, dims: &[Option<i64>]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Some(v) => dimension::Value::DimValue(*v),
                None => dimension::Value::DimParam("N".into()),
            }),
            ..Default::default()
        })
        .collect();
    let tensor = type_proto::Tensor { elem_type: Some(DataType::Float as i32), shape: Some(TensorShapeProto { dim }) };
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto { value: Some(type_proto::Value::TensorType(tensor)), ..Default::default() }),
        ..Default::default()
    }
}
