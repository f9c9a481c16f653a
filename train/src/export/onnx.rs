//! The trained generator → `generator.onnx`: opset 17, input `z` [N, nz, 1, 1], output
//! `image` [N, C, S, S], the batch dimension `N` dynamic, written with ONNX's own
//! protobuf types ([`super::pb`]).
//!
//! Every parameter is an initializer under its name in the network (`0.conv.weight`,
//! `0.bn.gamma`, …, as in checkpoints), so the file loads back into the very candle
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
use crate::model::layers::BN_EPS;
use crate::model::Generator;

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

/// The generator's graph: for each block, ConvTranspose, then BatchNormalization and Relu,
/// or Tanh after the last; its parameters as initializers.
pub fn graph(g: &Generator) -> Result<GraphProto> {
    let mut graph = GraphProto { name: Some("canard_generator".into()), ..Default::default() };
    let mut x = INPUT.to_string();
    let last = g.blocks.len().saturating_sub(1);
    for (i, b) in g.blocks.iter().enumerate() {
        let weight = format!("{i}.conv.weight");
        graph.initializer.push(tensor(&weight, &b.conv.weight)?);
        let (k, p) = (b.conv.weight.dim(3)? as i64, b.conv.padding as i64);
        let attrs = [
            ints("kernel_shape", vec![k; 2]),
            ints("strides", vec![b.conv.stride as i64; 2]),
            ints("pads", vec![p; 4]),
        ];
        let conv = format!("{i}.conv");
        graph.node.push(node("ConvTranspose", &conv, &[&x, &weight], attrs.into()));
        x = conv;
        if let Some(bn) = &b.bn {
            let names = ["gamma", "beta", "running_mean", "running_var"].map(|n| format!("{i}.bn.{n}"));
            for (name, t) in
                names.iter().zip([&bn.gamma, &bn.beta, bn.running_mean.as_tensor(), bn.running_var.as_tensor()])
            {
                graph.initializer.push(tensor(name, t)?);
            }
            let eps = AttributeProto {
                name: Some("epsilon".into()),
                r#type: Some(AttributeType::Float as i32),
                f: Some(BN_EPS as f32),
                ..Default::default()
            };
            let out = format!("{i}.bn");
            let inputs = [x.as_str(), &names[0], &names[1], &names[2], &names[3]];
            graph.node.push(node("BatchNormalization", &out, &inputs, vec![eps]));
            x = out;
        }
        let (op, out) = if i == last { ("Tanh", OUTPUT.to_string()) } else { ("Relu", format!("{i}.relu")) };
        graph.node.push(node(op, &out, &[&x], vec![]));
        x = out;
    }
    let (nz, c, s) = (g.shape.nz as i64, g.shape.channels as i64, g.shape.image_size as i64);
    graph.input.push(value_info(INPUT, &[None, Some(nz), Some(1), Some(1)]));
    graph.output.push(value_info(OUTPUT, &[None, Some(c), Some(s), Some(s)]));
    Ok(graph)
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
