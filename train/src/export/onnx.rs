//! The trained generator → `generator.onnx`: opset 17, input `z` [N, nz, 1, 1], output
//! `image` [N, C, S, S], the batch dimension `N` dynamic, written with ONNX's own
//! protobuf types ([`super::pb`]) by walking the network's description (`crate::nn`):
//! each layer writes its own nodes ([`crate::nn::Layer::onnx`]).
//!
//! Every parameter is an initializer under its name in the network (`0.conv.weight`,
//! `0.bn.gamma`, `up8.conv.weight`, …, as in checkpoints), so the file loads back into the
//! very network that trained it ([`super::reader`]). BatchNorm stays a node, in inference
//! form (running statistics): ONNX Runtime folds it into the convolution before it when it
//! optimises the session, so serving pays nothing for it.

use candle_core::{DType, Result, Tensor};
use prost::Message;

use super::pb::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto::dimension,
    tensor_shape_proto::Dimension, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use crate::nn::Net;
use crate::nn::Shape;
use crate::ops::Geometry;

pub const OPSET: i64 = 17;
/// IR version 8 is the one that goes with opset 17.
pub const IR_VERSION: i64 = 8;
pub const INPUT: &str = "z";
pub const OUTPUT: &str = "image";
/// A conditional generator's second input: each picture's class, int64 [N].
pub const CLASS_INPUT: &str = "class";

/// The ONNX model bytes of a generator of `shape`.
pub fn generator_to_onnx(g: &Net, shape: &Shape, doc: &str) -> Result<Vec<u8>> {
    let model = ModelProto {
        ir_version: Some(IR_VERSION),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(OPSET) }],
        producer_name: Some("canard-train".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        doc_string: Some(doc.into()),
        graph: Some(graph(g, shape)?),
        ..Default::default()
    };
    Ok(model.encode_to_vec())
}

/// The generator's graph, its parameters as initializers: each layer's nodes in order,
/// the network's output named [`OUTPUT`].
pub fn graph(g: &Net, shape: &Shape) -> Result<GraphProto> {
    let mut e =
        Emitter { graph: GraphProto { name: Some("canard_generator".into()), ..Default::default() }, scales: false };
    let mut names = vec![INPUT.to_string()];
    let out = g.outputs.first().copied().unwrap_or(0);
    for (i, node) in g.nodes.iter().enumerate() {
        let name = if i + 1 == out { OUTPUT.to_string() } else { node.name.clone() };
        let xs: Vec<&str> = node.inputs.iter().map(|&v| names[v].as_str()).collect();
        node.layer.onnx(&mut e, &name, &xs)?;
        names.push(name);
    }
    let mut graph = e.graph;
    if e.scales {
        // Resize's scales, [1, 1, 2, 2], as a Constant node first: initializers are parameters only.
        let scales = TensorProto {
            dims: vec![4],
            data_type: Some(DataType::Float as i32),
            float_data: vec![1.0, 1.0, 2.0, 2.0],
            ..Default::default()
        };
        let value = attribute("value", AttributeType::Tensor, AttributeProto { t: Some(scales), ..Default::default() });
        graph.node.insert(0, node("Constant", SCALES, &[], vec![value]));
    }
    let (nz, c, s) = (shape.nz as i64, shape.channels as i64, shape.image_size as i64);
    graph.input.push(value_info(INPUT, DataType::Float, &[None, Some(nz), Some(1), Some(1)]));
    if shape.classes > 0 {
        graph.input.push(value_info(CLASS_INPUT, DataType::Int64, &[None]));
    }
    graph.output.push(value_info(OUTPUT, DataType::Float, &[None, Some(c), Some(s), Some(s)]));
    Ok(graph)
}

/// The Constant node holding Resize's scales.
const SCALES: &str = "scales";

/// A graph being written: what the layers' `onnx` methods add to.
pub struct Emitter {
    graph: GraphProto,
    /// Whether a Resize reads [`SCALES`].
    scales: bool,
}

impl Emitter {
    /// Adds a float initializer; its name.
    pub fn initializer(&mut self, name: &str, t: &Tensor) -> Result<String> {
        self.graph.initializer.push(tensor(name, t)?);
        Ok(name.to_string())
    }

    /// A Constant node holding `values` (int64); its name.
    pub fn constant_ints(&mut self, name: &str, values: &[i64]) -> String {
        let t = TensorProto {
            dims: vec![values.len() as i64],
            data_type: Some(DataType::Int64 as i32),
            int64_data: values.to_vec(),
            ..Default::default()
        };
        let value = attribute("value", AttributeType::Tensor, AttributeProto { t: Some(t), ..Default::default() });
        self.node("Constant", name, &[], vec![value]);
        name.to_string()
    }

    /// A node named after its one output.
    pub fn node(&mut self, op: &str, out: &str, inputs: &[&str], attrs: Vec<AttributeProto>) {
        self.graph.node.push(node(op, out, inputs, attrs));
    }

    /// A convolution (or a transposed one) of `x` by the initializer `weight`.
    pub fn conv(&mut self, out: &str, x: &str, weight: &str, g: Geometry, transposed: bool) {
        let (k, s, p) = (g.k as i64, g.stride as i64, g.padding as i64);
        let attrs = vec![
            Self::ints("kernel_shape", vec![k; 2]),
            Self::ints("strides", vec![s; 2]),
            Self::ints("pads", vec![p; 4]),
        ];
        self.node(if transposed { "ConvTranspose" } else { "Conv" }, out, &[x, weight], attrs);
    }

    /// Nearest upsampling ×2 of `x` (Resize); its output `out`.
    pub fn resize(&mut self, out: &str, x: &str) -> String {
        self.scales = true;
        let attrs = vec![
            Self::string("mode", "nearest"),
            Self::string("coordinate_transformation_mode", "asymmetric"),
            Self::string("nearest_mode", "floor"),
        ];
        self.node("Resize", out, &[x, "", SCALES], attrs);
        out.to_string()
    }

    /// Split over channels in two halves, `outs`; the node named `name`.
    pub fn split(&mut self, name: &str, x: &str, outs: [&str; 2]) {
        let mut split = node("Split", outs[0], &[x], vec![Self::int("axis", 1)]);
        split.output.push(outs[1].to_string());
        split.name = Some(name.into());
        self.graph.node.push(split);
    }

    pub fn float(name: &str, f: f32) -> AttributeProto {
        attribute(name, AttributeType::Float, AttributeProto { f: Some(f), ..Default::default() })
    }

    pub fn int(name: &str, i: i64) -> AttributeProto {
        attribute(name, AttributeType::Int, AttributeProto { i: Some(i), ..Default::default() })
    }

    pub fn string(name: &str, s: &str) -> AttributeProto {
        attribute(name, AttributeType::String, AttributeProto { s: Some(s.as_bytes().to_vec()), ..Default::default() })
    }

    pub fn ints(name: &str, ints: Vec<i64>) -> AttributeProto {
        attribute(name, AttributeType::Ints, AttributeProto { ints, ..Default::default() })
    }
}

/// `value` named `name`, of type `ty`.
fn attribute(name: &str, ty: AttributeType, value: AttributeProto) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(ty as i32), ..value }
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

/// A graph input or output: a tensor of `ty` and the given shape, `None` for the batch
/// dimension `N`.
fn value_info(name: &str, ty: DataType, dims: &[Option<i64>]) -> ValueInfoProto {
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
    let tensor = type_proto::Tensor { elem_type: Some(ty as i32), shape: Some(TensorShapeProto { dim }) };
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto { value: Some(type_proto::Value::TensorType(tensor)), ..Default::default() }),
        ..Default::default()
    }
}
