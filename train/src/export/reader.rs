//! Reads a canard-exported `generator.onnx` back into candle, with no ONNX Runtime.
//!
//! canard-train must never link ONNX Runtime, yet `eval`, `sample` and `interpolate`
//! work from the exported file (the thing the server serves), not from a checkpoint.
//! So this is a small protobuf *decoder* for exactly the subset [`super::onnx`] writes:
//! a chain of `ConvTranspose` (input, weight, bias) each followed by `Relu`, the last
//! by `Tanh`, float initializers with `raw_data`. Anything else is refused with an
//! error naming the file and what is wrong; garbage never panics (every read is
//! bounds-checked, every length checked against what is left).

use std::collections::HashMap;
use std::path::Path;

use canard_shared::latent::latent_batch;
use canard_shared::Manifest;
use candle_core::{Device, Tensor};

use super::proto::field;

/// Why a file is not a readable canard generator.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {reason}")]
pub struct ReadError {
    pub file: String,
    pub reason: String,
}

/// One transposed convolution of the graph (BatchNorm already folded in by the exporter).
pub struct OnnxLayer {
    /// [in, out, k, k], the layout of both ONNX ConvTranspose and candle.
    pub weight: Tensor,
    /// [out]
    pub bias: Tensor,
    pub stride: usize,
    pub padding: usize,
}

/// The exported generator, runnable with candle: ReLU after every layer but the last, Tanh after it.
pub struct OnnxGenerator {
    pub layers: Vec<OnnxLayer>,
    pub nz: usize,
    pub channels: usize,
    pub image_size: usize,
    /// The graph's input and output names (`z`, `image` for canard's exports).
    pub input: String,
    pub output: String,
}

/// Images are generated this many at a time, to bound memory for large requests.
const BATCH: usize = 64;

impl OnnxGenerator {
    /// z: [N, nz, 1, 1] (or [N, nz]) → images [N, C, S, S] in [-1, 1].
    pub fn forward(&self, z: &Tensor) -> candle_core::Result<Tensor> {
        let n = z.dim(0)?;
        if z.elem_count() != n * self.nz {
            candle_core::bail!("z has shape {:?}, expected [N, {}, 1, 1]", z.dims(), self.nz);
        }
        let mut x = z.reshape((n, self.nz, 1, 1))?;
        let last = self.layers.len() - 1;
        for (i, l) in self.layers.iter().enumerate() {
            x = crate::ops::conv_transpose2d(&x, &l.weight, l.stride, l.padding)?;
            x = x.broadcast_add(&l.bias.reshape((1, l.bias.dim(0)?, 1, 1))?)?;
            x = if i == last { x.tanh()? } else { x.relu()? };
        }
        Ok(x)
    }

    /// Flat latent vectors (`k × nz` values) → flat NCHW images, [`BATCH`] at a time.
    pub fn images(&self, z: &[f32]) -> candle_core::Result<Vec<f32>> {
        if !z.len().is_multiple_of(self.nz) {
            candle_core::bail!("{} latent values are not a whole number of {}-long vectors", z.len(), self.nz);
        }
        let device = self.layers[0].weight.device();
        let mut out = Vec::with_capacity(z.len() / self.nz * self.image_len());
        for chunk in z.chunks(BATCH * self.nz) {
            let n = chunk.len() / self.nz;
            let x = Tensor::from_slice(chunk, (n, self.nz, 1, 1), device)?;
            out.extend(self.forward(&x)?.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(out)
    }

    /// The images of `seeds`, from the same latent vectors the server uses.
    pub fn generate(&self, seeds: &[u64]) -> candle_core::Result<Vec<f32>> {
        self.images(&latent_batch(seeds, self.nz))
    }

    /// Values per image: C × S × S.
    pub fn image_len(&self) -> usize {
        self.channels * self.image_size * self.image_size
    }
}

/// `model_dir/model.json` and the generator it names (SHA-256 checked), cross-checked
/// against each other: latent length, channels, image size, input and output names.
pub fn load_generator(model_dir: &Path, device: &Device) -> anyhow::Result<(Manifest, OnnxGenerator)> {
    let manifest = Manifest::load(model_dir)?;
    let bytes = manifest.read_onnx(model_dir)?;
    let file = model_dir.join(&manifest.onnx.file).display().to_string();
    let g = read_generator(&bytes, &file, device)?;
    let m = &manifest;
    let checks = [
        ("latent.dim", m.latent.dim.to_string(), g.nz.to_string()),
        ("channels", m.channels.to_string(), g.channels.to_string()),
        ("image_size", m.image_size.to_string(), g.image_size.to_string()),
        ("onnx.input", m.onnx.input.clone(), g.input.clone()),
        ("onnx.output", m.onnx.output.clone(), g.output.clone()),
    ];
    for (what, said, found) in checks {
        if said != found {
            anyhow::bail!("{file}: the graph has {what} {found}, but model.json says {said}");
        }
    }
    Ok((manifest, g))
}

/// Decodes and checks ONNX model bytes; `file` names them in errors.
pub fn read_generator(bytes: &[u8], file: &str, device: &Device) -> Result<OnnxGenerator, ReadError> {
    let err = |reason: String| ReadError { file: file.to_string(), reason };
    let graph = parse_model(bytes).map_err(err)?;
    build(&graph, device).map_err(err)
}

// ---------------------------------------------------------------------------------------
// The protobuf wire format (see proto.rs for the encoder's side).

/// One field's value as the wire gives it.
enum Value<'a> {
    Varint(u64),
    Fixed64,
    Bytes(&'a [u8]),
    Fixed32(u32),
}

impl Value<'_> {
    fn wire_name(&self) -> &'static str {
        match self {
            Value::Varint(_) => "varint",
            Value::Fixed64 => "fixed64",
            Value::Bytes(_) => "length-delimited",
            Value::Fixed32(_) => "fixed32",
        }
    }
}

/// The fields of one message, in order. Stops after the first error.
struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
    /// The message being read, for errors ("GraphProto").
    what: &'static str,
}

fn fields<'a>(buf: &'a [u8], what: &'static str) -> Fields<'a> {
    Fields { buf, pos: 0, what }
}

impl<'a> Fields<'a> {
    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(format!("{} is truncated inside a varint", self.what));
            };
            self.pos += 1;
            // The tenth byte holds only bit 63.
            if i == 9 && b > 1 {
                return Err(format!("{} has a varint longer than 64 bits", self.what));
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(format!("{} has a varint longer than 10 bytes", self.what))
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], String> {
        let left = self.buf.len() - self.pos;
        if n > left as u64 {
            return Err(format!("{} is truncated: a field wants {n} bytes, {left} are left", self.what));
        }
        let s = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn field(&mut self) -> Result<(u32, Value<'a>), String> {
        let key = self.varint()?;
        let number = key >> 3;
        if number == 0 || number > (1 << 29) - 1 {
            return Err(format!("{} has an invalid field number {number}", self.what));
        }
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Value::Fixed64
            }
            2 => {
                let n = self.varint()?;
                Value::Bytes(self.take(n)?)
            }
            5 => {
                let b = self.take(4)?;
                Value::Fixed32(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            }
            // 3 and 4 are proto2 groups, which ONNX never uses; 6 and 7 do not exist.
            t => return Err(format!("{} field {number} has unsupported wire type {t}", self.what)),
        };
        Ok((number as u32, value))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Value<'a>), String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let r = self.field();
        if r.is_err() {
            self.pos = self.buf.len();
        }
        Some(r)
    }
}

fn wrong_type(what: &str, number: u32, v: &Value) -> String {
    format!("{what} field {number} has the wrong wire type ({})", v.wire_name())
}

fn bytes<'a>(what: &str, number: u32, v: Value<'a>) -> Result<&'a [u8], String> {
    match v {
        Value::Bytes(b) => Ok(b),
        v => Err(wrong_type(what, number, &v)),
    }
}

fn string(what: &str, number: u32, v: Value) -> Result<String, String> {
    let b = bytes(what, number, v)?;
    String::from_utf8(b.to_vec()).map_err(|_| format!("{what} field {number} is not UTF-8"))
}

fn int(what: &str, number: u32, v: Value) -> Result<i64, String> {
    match v {
        // int64 is two's complement in 64 bits on the wire.
        Value::Varint(x) => Ok(x as i64),
        v => Err(wrong_type(what, number, &v)),
    }
}

/// A repeated int64 field, unpacked (one varint per entry, as proto2 and canard write
/// it) or packed (one length-delimited run of varints, as proto3 writers do).
fn ints(what: &'static str, number: u32, v: Value, out: &mut Vec<i64>) -> Result<(), String> {
    match v {
        Value::Varint(x) => out.push(x as i64),
        Value::Bytes(b) => {
            let mut f = fields(b, what);
            while f.pos < b.len() {
                out.push(f.varint()? as i64);
            }
        }
        v => return Err(wrong_type(what, number, &v)),
    }
    Ok(())
}

/// A repeated float field, unpacked (fixed32 each) or packed.
fn floats(what: &str, number: u32, v: Value, out: &mut Vec<f32>) -> Result<(), String> {
    match v {
        Value::Fixed32(x) => out.push(f32::from_bits(x)),
        Value::Bytes(b) if b.len().is_multiple_of(4) => {
            out.extend(b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
        }
        v => return Err(wrong_type(what, number, &v)),
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The ONNX messages a generator uses (field numbers from onnx.proto, shared with proto.rs).

#[derive(Default)]
struct Graph {
    nodes: Vec<Node>,
    initializers: Vec<Initializer>,
    inputs: Vec<ValueInfo>,
    outputs: Vec<ValueInfo>,
}

#[derive(Default)]
struct Node {
    op: String,
    name: String,
    domain: String,
    inputs: Vec<String>,
    outputs: Vec<String>,
    attributes: Vec<Attribute>,
}

#[derive(Default)]
struct Attribute {
    name: String,
    ints: Vec<i64>,
    int: Option<i64>,
    string: Option<String>,
    /// Any other payload (floats, tensors, graphs): never valid on the ops read here.
    other: bool,
}

#[derive(Default)]
struct Initializer {
    name: String,
    dims: Vec<i64>,
    data_type: i64,
    raw: Option<Vec<u8>>,
    floats: Vec<f32>,
    external: bool,
}

#[derive(Default)]
struct ValueInfo {
    name: String,
    /// `None` for a symbolic dimension such as the batch `N`.
    dims: Vec<Option<i64>>,
}

const MODEL: &str = "ModelProto";
const GRAPH: &str = "GraphProto";
const NODE: &str = "NodeProto";
const ATTRIBUTE: &str = "AttributeProto";
const TENSOR: &str = "TensorProto";
const VALUE_INFO: &str = "ValueInfoProto";
const TYPE: &str = "TypeProto";

// Fields proto.rs does not write but a reader must recognise.
const NODE_DOMAIN: u32 = 7;
const ATTR_F: u32 = 2;
const ATTR_I: u32 = 3;
const ATTR_S: u32 = 4;
const ATTR_T: u32 = 5;
const ATTR_G: u32 = 6;
const ATTR_FLOATS: u32 = 7;
const ATTR_STRINGS: u32 = 9;
const TENSOR_FLOAT_DATA: u32 = 4;
const TENSOR_EXTERNAL_DATA: u32 = 13;
const TENSOR_DATA_LOCATION: u32 = 14;
const GRAPH_SPARSE_INITIALIZER: u32 = 15;

fn parse_model(buf: &[u8]) -> Result<Graph, String> {
    if buf.is_empty() {
        return Err("the file is empty".into());
    }
    let mut graph = None;
    let mut default_opset = None;
    for f in fields(buf, MODEL) {
        let (n, v) = f?;
        match n {
            field::model::GRAPH => {
                if graph.is_some() {
                    return Err("ModelProto has two graphs".into());
                }
                graph = Some(parse_graph(bytes(MODEL, n, v)?)?);
            }
            field::model::OPSET_IMPORT => {
                let (mut domain, mut version) = (String::new(), None);
                for f in fields(bytes(MODEL, n, v)?, "OperatorSetIdProto") {
                    let (n, v) = f?;
                    match n {
                        field::opset::DOMAIN => domain = string("OperatorSetIdProto", n, v)?,
                        field::opset::VERSION => version = Some(int("OperatorSetIdProto", n, v)?),
                        _ => {}
                    }
                }
                if domain.is_empty() || domain == "ai.onnx" {
                    default_opset = version;
                }
            }
            _ => {}
        }
    }
    if default_opset.is_none() {
        return Err("not an ONNX model: no opset for the default domain (is this a generator.onnx?)".into());
    }
    graph.ok_or_else(|| "not an ONNX model: no graph".into())
}

fn parse_graph(buf: &[u8]) -> Result<Graph, String> {
    let mut g = Graph::default();
    for f in fields(buf, GRAPH) {
        let (n, v) = f?;
        match n {
            field::graph::NODE => g.nodes.push(parse_node(bytes(GRAPH, n, v)?)?),
            field::graph::INITIALIZER => g.initializers.push(parse_tensor(bytes(GRAPH, n, v)?)?),
            field::graph::INPUT => g.inputs.push(parse_value_info(bytes(GRAPH, n, v)?)?),
            field::graph::OUTPUT => g.outputs.push(parse_value_info(bytes(GRAPH, n, v)?)?),
            GRAPH_SPARSE_INITIALIZER => return Err("not a canard generator: sparse initializers".into()),
            _ => {}
        }
    }
    Ok(g)
}

fn parse_node(buf: &[u8]) -> Result<Node, String> {
    use field::node::*;
    let mut node = Node::default();
    for f in fields(buf, NODE) {
        let (n, v) = f?;
        match n {
            INPUT => node.inputs.push(string(NODE, n, v)?),
            OUTPUT => node.outputs.push(string(NODE, n, v)?),
            NAME => node.name = string(NODE, n, v)?,
            OP_TYPE => node.op = string(NODE, n, v)?,
            NODE_DOMAIN => node.domain = string(NODE, n, v)?,
            ATTRIBUTE => node.attributes.push(parse_attribute(bytes(NODE, n, v)?)?),
            _ => {}
        }
    }
    Ok(node)
}

fn parse_attribute(buf: &[u8]) -> Result<Attribute, String> {
    let mut a = Attribute::default();
    for f in fields(buf, ATTRIBUTE) {
        let (n, v) = f?;
        match n {
            field::attribute::NAME => a.name = string(ATTRIBUTE, n, v)?,
            field::attribute::INTS => ints(ATTRIBUTE, n, v, &mut a.ints)?,
            ATTR_I => a.int = Some(int(ATTRIBUTE, n, v)?),
            ATTR_S => a.string = Some(string(ATTRIBUTE, n, v)?),
            ATTR_F | ATTR_T | ATTR_G | ATTR_FLOATS | ATTR_STRINGS => a.other = true,
            _ => {}
        }
    }
    Ok(a)
}

fn parse_tensor(buf: &[u8]) -> Result<Initializer, String> {
    use field::tensor::*;
    let mut t = Initializer::default();
    for f in fields(buf, TENSOR) {
        let (n, v) = f?;
        match n {
            DIMS => ints(TENSOR, n, v, &mut t.dims)?,
            DATA_TYPE => t.data_type = int(TENSOR, n, v)?,
            NAME => t.name = string(TENSOR, n, v)?,
            RAW_DATA => t.raw = Some(bytes(TENSOR, n, v)?.to_vec()),
            TENSOR_FLOAT_DATA => floats(TENSOR, n, v, &mut t.floats)?,
            TENSOR_EXTERNAL_DATA => t.external = true,
            TENSOR_DATA_LOCATION => t.external |= int(TENSOR, n, v)? == 1,
            _ => {}
        }
    }
    Ok(t)
}

fn parse_value_info(buf: &[u8]) -> Result<ValueInfo, String> {
    use field::type_proto::*;
    let mut vi = ValueInfo::default();
    for f in fields(buf, VALUE_INFO) {
        let (n, v) = f?;
        match n {
            field::value_info::NAME => vi.name = string(VALUE_INFO, n, v)?,
            field::value_info::TYPE => {
                // TypeProto.tensor_type → Tensor.shape → TensorShapeProto.dim*; other types are ignored.
                for f in fields(bytes(VALUE_INFO, n, v)?, TYPE) {
                    let (n, v) = f?;
                    if n != TENSOR_TYPE {
                        continue;
                    }
                    for f in fields(bytes(TYPE, n, v)?, "TypeProto.Tensor") {
                        let (n, v) = f?;
                        if n != SHAPE {
                            continue;
                        }
                        for f in fields(bytes("TypeProto.Tensor", n, v)?, "TensorShapeProto") {
                            let (n, v) = f?;
                            if n != DIM {
                                continue;
                            }
                            let mut dim = None;
                            for f in fields(bytes("TensorShapeProto", n, v)?, "Dimension") {
                                let (n, v) = f?;
                                if n == DIM_VALUE {
                                    dim = Some(int("Dimension", n, v)?);
                                }
                            }
                            vi.dims.push(dim);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(vi)
}

// ---------------------------------------------------------------------------------------
// Graph → layers: accept exactly the shape canard exports.

fn build(g: &Graph, device: &Device) -> Result<OnnxGenerator, String> {
    let inits: HashMap<&str, &Initializer> = g.initializers.iter().map(|t| (t.name.as_str(), t)).collect();
    // Older exporters also list initializers as graph inputs; the real input is the other one.
    let inputs: Vec<&ValueInfo> = g.inputs.iter().filter(|i| !inits.contains_key(i.name.as_str())).collect();
    let [input] = inputs[..] else {
        return Err(format!("not a canard generator: {} graph inputs, expected 1 (z)", inputs.len()));
    };
    let [output] = &g.outputs[..] else {
        return Err(format!("not a canard generator: {} graph outputs, expected 1 (image)", g.outputs.len()));
    };
    if g.nodes.is_empty() || !g.nodes.len().is_multiple_of(2) {
        return Err(format!(
            "not a canard generator: {} nodes, expected pairs of ConvTranspose and Relu/Tanh",
            g.nodes.len()
        ));
    }

    let mut layers = Vec::with_capacity(g.nodes.len() / 2);
    let mut current = input.name.as_str();
    let (mut channels, mut side) = (None::<usize>, 1i64);
    for (i, pair) in g.nodes.chunks_exact(2).enumerate() {
        let last = (i + 1) * 2 == g.nodes.len();
        let (conv, act) = (&pair[0], &pair[1]);
        check_op(conv, "ConvTranspose")?;
        let [x, w, rest @ ..] = &conv.inputs[..] else {
            return Err(format!("node '{}': ConvTranspose needs an input and a weight", conv.name));
        };
        if x != current {
            return Err(format!("node '{}' reads '{x}', expected '{current}': nodes must form a chain", conv.name));
        }
        let weight = initializer(&inits, w, &conv.name)?;
        // First: this checks every dimension is positive and matches the data's length.
        let w_values = weight.values()?;
        let [c_in, c_out, kh, kw] = weight.dims[..] else {
            return Err(format!("weight '{w}' has shape {:?}, expected [in, out, k, k]", weight.dims));
        };
        let (c_in, c_out, k) = (c_in as usize, c_out as usize, kh as usize);
        if kh != kw {
            return Err(format!("weight '{w}' has a {kh}×{kw} kernel; only square kernels are supported"));
        }
        if channels.is_some_and(|c| c != c_in) {
            return Err(format!("weight '{w}' takes {c_in} channels, but the layer before gives {channels:?}"));
        }
        let bias = match rest {
            [] => vec![0.0; c_out],
            [b] => {
                let t = initializer(&inits, b, &conv.name)?;
                if t.dims != [c_out as i64] {
                    return Err(format!("bias '{b}' has shape {:?}, expected [{c_out}]", t.dims));
                }
                t.values()?
            }
            _ => return Err(format!("node '{}': ConvTranspose has {} inputs", conv.name, conv.inputs.len())),
        };
        let (stride, padding) = conv_attributes(conv, kh)?;
        side = (side - 1) * stride as i64 + kh - 2 * padding as i64;
        if !(1..=MAX_SIDE).contains(&side) {
            return Err(format!("node '{}' gives {side}-pixel images, outside 1..={MAX_SIDE}", conv.name));
        }
        let [conv_out] = &conv.outputs[..] else {
            return Err(format!("node '{}' has {} outputs, expected 1", conv.name, conv.outputs.len()));
        };
        let want = if last { "Tanh" } else { "Relu" };
        check_op(act, want)?;
        if act.inputs != [conv_out.clone()] || act.outputs.len() != 1 {
            return Err(format!("node '{}' must take '{conv_out}' and give one output", act.name));
        }
        current = &act.outputs[0];

        let w = Tensor::from_vec(w_values, (c_in, c_out, k, k), device).map_err(|e| e.to_string())?;
        let b = Tensor::from_vec(bias, c_out, device).map_err(|e| e.to_string())?;
        layers.push(OnnxLayer { weight: w, bias: b, stride, padding });
        channels = Some(c_out);
    }
    if current != output.name {
        return Err(format!("the last node gives '{current}', but the graph output is '{}'", output.name));
    }
    let nz = layers[0].weight.dims()[0];
    let channels = channels.unwrap_or(0);
    let image_size = side as usize;
    check_dims(input, &[nz, 1, 1])?;
    check_dims(output, &[channels, image_size, image_size])?;
    Ok(OnnxGenerator { layers, nz, channels, image_size, input: input.name.clone(), output: output.name.clone() })
}

/// Far above any real generator (the manifest allows 4096); keeps the size arithmetic bounded.
const MAX_SIDE: i64 = 1 << 16;

fn check_op(node: &Node, want: &str) -> Result<(), String> {
    if node.op != want {
        return Err(format!(
            "not a canard generator: unexpected op {} (node '{}'), expected {want}",
            node.op, node.name
        ));
    }
    if !(node.domain.is_empty() || node.domain == "ai.onnx") {
        return Err(format!("node '{}' is from the unsupported domain '{}'", node.name, node.domain));
    }
    Ok(())
}

/// A graph input or output with known dimensions must be `[N, rest…]`.
fn check_dims(vi: &ValueInfo, rest: &[usize]) -> Result<(), String> {
    if vi.dims.is_empty() {
        return Ok(()); // no shape recorded: nothing to contradict
    }
    let fits =
        vi.dims.len() == rest.len() + 1 && vi.dims[1..].iter().zip(rest).all(|(d, &r)| d.is_none_or(|d| d == r as i64));
    if !fits {
        return Err(format!("'{}' is declared {:?}, but the layers give [N, {rest:?}]", vi.name, vi.dims));
    }
    Ok(())
}

/// ConvTranspose's attributes → (stride, padding); only what candle's conv_transpose2d can do.
fn conv_attributes(node: &Node, k: i64) -> Result<(usize, usize), String> {
    let (mut stride, mut padding) = (1i64, 0i64);
    let bad = |a: &Attribute| format!("node '{}': unsupported {} {:?}", node.name, a.name, a.ints);
    for a in &node.attributes {
        if a.other {
            return Err(format!("node '{}': attribute {} has an unsupported type", node.name, a.name));
        }
        let all_equal = |v: &[i64], len: usize| v.len() == len && v.iter().all(|&x| x == v[0]);
        match a.name.as_str() {
            "kernel_shape" if a.ints == [k, k] => {}
            "strides" if all_equal(&a.ints, 2) && a.ints[0] >= 1 => stride = a.ints[0],
            "pads" if all_equal(&a.ints, 4) && a.ints[0] >= 0 => padding = a.ints[0],
            "dilations" if a.ints.iter().all(|&d| d == 1) => {}
            "output_padding" if a.ints.iter().all(|&d| d == 0) => {}
            "group" if a.int == Some(1) => {}
            "auto_pad" if a.string.as_deref() == Some("NOTSET") => {}
            "kernel_shape" | "strides" | "pads" | "dilations" | "output_padding" | "group" | "auto_pad" => {
                return Err(bad(a))
            }
            other => return Err(format!("node '{}': unsupported attribute {other}", node.name)),
        }
    }
    // Bounds keep the size arithmetic far from overflow; real generators use 1 or 2.
    if stride > 64 || padding > 1024 {
        return Err(format!("node '{}': stride {stride} or padding {padding} is implausible", node.name));
    }
    Ok((stride as usize, padding as usize))
}

fn initializer<'a>(inits: &HashMap<&str, &'a Initializer>, name: &str, node: &str) -> Result<&'a Initializer, String> {
    inits.get(name).copied().ok_or_else(|| format!("node '{node}' reads '{name}', which is not an initializer"))
}

impl Initializer {
    /// The values as f32, checked against the dimensions.
    fn values(&self) -> Result<Vec<f32>, String> {
        if self.data_type != field::tensor::FLOAT {
            return Err(format!("initializer '{}' has data type {}, expected 1 (float)", self.name, self.data_type));
        }
        if self.external {
            return Err(format!("initializer '{}' keeps its data in an external file", self.name));
        }
        let count = self
            .dims
            .iter()
            .try_fold(1usize, |acc, &d| usize::try_from(d).ok().filter(|&d| d > 0).and_then(|d| acc.checked_mul(d)))
            .ok_or_else(|| format!("initializer '{}' has invalid dimensions {:?}", self.name, self.dims))?;
        let values: Vec<f32> = match &self.raw {
            Some(raw) => raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            None => self.floats.clone(),
        };
        let bytes = self.raw.as_ref().map_or(values.len() * 4, Vec::len);
        if values.len() != count || bytes != count * 4 {
            return Err(format!(
                "initializer '{}' has {bytes} bytes of data, expected {} for {:?}",
                self.name,
                count.saturating_mul(4),
                self.dims
            ));
        }
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::proto::{self, Message};
    use crate::model::{DcganShape, Generator};
    use crate::trainer::Gan;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// A generator whose BatchNorm layers have non-trivial statistics, so folding matters.
    fn generator(image_size: usize, channels: usize) -> Generator {
        let shape = DcganShape { image_size, channels, nz: 12, ngf: 8, ndf: 8 };
        let gan = Gan::new(shape, &mut ChaCha8Rng::seed_from_u64(0), &Device::Cpu).unwrap();
        for (i, bn) in gan.g.blocks.iter().filter_map(|b| b.bn.as_ref()).enumerate() {
            let c = bn.gamma.dim(0).unwrap();
            let wave =
                |a: f32, b: f32| -> Vec<f32> { (0..c).map(|k| a + b * ((k * 7 + i * 3) as f32).sin()).collect() };
            let set = |t: &Tensor, v: Vec<f32>| {
                candle_core::Var::from_tensor(t).unwrap().set(&Tensor::new(v, t.device()).unwrap()).unwrap()
            };
            set(&bn.gamma, wave(1.5, 0.8));
            set(&bn.beta, wave(0.1, 0.5));
            set(bn.running_mean.as_tensor(), wave(0.0, 0.05));
            set(bn.running_var.as_tensor(), wave(0.02, 0.015));
        }
        gan.g
    }

    #[test]
    fn reads_back_what_export_writes_and_matches_candle() {
        for (size, channels) in [(16, 3), (32, 1)] {
            let g = generator(size, channels);
            let dir = tempfile::tempdir().unwrap();
            let (model_dir, _) = crate::export::export(&g, dir.path(), "x", "dcgan", Default::default()).unwrap();
            let (manifest, reader) = load_generator(&model_dir, &Device::Cpu).unwrap();
            assert_eq!((reader.nz, reader.channels, reader.image_size), (12, channels, size));
            assert_eq!(manifest.name, "x");

            let seeds = [0u64, 1, 42, u64::MAX];
            let want = crate::report::generate(&g, &seeds, &Device::Cpu).unwrap();
            let z = Tensor::from_vec(latent_batch(&seeds, 12), (4, 12, 1, 1), &Device::Cpu).unwrap();
            let got = reader.forward(&z).unwrap();
            assert_eq!(got.dims(), want.dims());
            let diff = (&got - &want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(diff <= 1e-5, "{size}px: max difference {diff}");
            // The batched helper gives the same values.
            let flat = reader.generate(&seeds).unwrap();
            assert_eq!(flat, got.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        }
    }

    #[test]
    fn garbage_and_truncated_files_are_errors_never_panics() {
        let g = generator(16, 3);
        let bytes = crate::export::onnx::generator_to_onnx(&g, "doc").unwrap();
        assert!(read_generator(&bytes, "g.onnx", &Device::Cpu).is_ok());
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut errors = 0;
        for i in 0..400 {
            let mut b = bytes.clone();
            match i % 4 {
                0 => b.truncate(rng.random_range(0..bytes.len())),
                1 => {
                    for _ in 0..rng.random_range(1..8) {
                        let at = rng.random_range(0..b.len());
                        b[at] = rng.random();
                    }
                }
                2 => {
                    // Mutations near the start hit the structure rather than weight bytes.
                    let at = rng.random_range(0..b.len().min(64));
                    b[at] ^= 1 << rng.random_range(0..8);
                }
                _ => b = (0..rng.random_range(0..512)).map(|_| rng.random()).collect(),
            }
            match read_generator(&b, "g.onnx", &Device::Cpu) {
                Err(e) => {
                    errors += 1;
                    assert!(e.to_string().starts_with("g.onnx: "), "{e}");
                }
                // A flipped byte inside a weight is still a valid generator.
                Ok(r) => assert_eq!(r.layers.len(), 3),
            }
        }
        assert!(errors > 200, "only {errors} of 400 mutations were rejected");
    }

    #[test]
    fn skips_unknown_fields_of_every_wire_type() {
        let g = generator(16, 3);
        let mut bytes = crate::export::onnx::generator_to_onnx(&g, "doc").unwrap();
        // Unknown ModelProto fields 100 (varint), 101 (fixed64), 102 (bytes), 103 (fixed32).
        let mut extra = Message::new();
        extra.int(100, -5).bytes(102, b"hello").float(103, 2.5);
        bytes.extend(extra.into_bytes());
        bytes.extend([(101 << 3 | 1) as u8 | 0x80, 101 >> 4, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(read_generator(&bytes, "g.onnx", &Device::Cpu).is_ok());
        // A group (wire type 3) is refused by name.
        bytes.push(100 << 3 | 3);
        let e = read_generator(&bytes, "g.onnx", &Device::Cpu).err().unwrap().to_string();
        assert!(e.contains("wire type 3"), "{e}");
    }

    /// A one-layer model with the given nodes, built with the exporter's own encoder.
    fn model(nodes: Vec<Message>) -> Vec<u8> {
        use proto::field;
        let mut graph = Message::new();
        graph.message(field::graph::INITIALIZER, proto::tensor_f32("w", &[4, 3, 4, 4], &[0.1; 4 * 3 * 16]));
        graph.message(field::graph::INITIALIZER, proto::tensor_f32("b", &[3], &[0.0; 3]));
        for n in nodes {
            graph.message(field::graph::NODE, n);
        }
        graph.message(
            field::graph::INPUT,
            proto::value_info_f32(
                "z",
                &[proto::Dim::Symbol("N"), proto::Dim::Fixed(4), proto::Dim::Fixed(1), proto::Dim::Fixed(1)],
            ),
        );
        graph.message(field::graph::OUTPUT, proto::value_info_f32("image", &[]));
        let mut opset = Message::new();
        opset.int(field::opset::VERSION, 17);
        let mut m = Message::new();
        m.message(field::model::GRAPH, graph).message(field::model::OPSET_IMPORT, opset);
        m.into_bytes()
    }

    fn convt(attrs: &[(&str, Vec<i64>)]) -> Message {
        proto::node("ConvTranspose", "c", &["z", "w", "b"], &["y"], attrs)
    }

    #[test]
    fn refuses_graphs_that_are_not_canard_generators() {
        let read = |nodes| read_generator(&model(nodes), "m.onnx", &Device::Cpu).err().map(|e| e.to_string());
        let ok = [("kernel_shape", vec![4, 4]), ("strides", vec![1, 1]), ("pads", vec![0; 4])];
        let tanh = || proto::node("Tanh", "t", &["y"], &["image"], &[]);
        // The well-formed one: z [N, 4] → 4×4 RGB.
        let g = read_generator(&model(vec![convt(&ok), tanh()]), "m.onnx", &Device::Cpu).unwrap();
        assert_eq!((g.nz, g.channels, g.image_size), (4, 3, 4));

        let gemm = proto::node("Gemm", "fc", &["z", "w", "b"], &["y"], &[]);
        let e = read(vec![gemm, tanh()]).unwrap();
        assert!(e.contains("m.onnx") && e.contains("not a canard generator: unexpected op Gemm"), "{e}");
        let e = read(vec![convt(&ok), proto::node("Relu", "r", &["y"], &["image"], &[])]).unwrap();
        assert!(e.contains("unexpected op Relu") && e.contains("expected Tanh"), "{e}");
        let e = read(vec![convt(&[("strides", vec![1, 2])]), tanh()]).unwrap();
        assert!(e.contains("strides"), "{e}");
        let e = read(vec![convt(&[("group", vec![2])]), tanh()]).unwrap();
        assert!(e.contains("group"), "{e}");
        let e = read(vec![proto::node("ConvTranspose", "c", &["z", "nope"], &["y"], &[]), tanh()]).unwrap();
        assert!(e.contains("'nope', which is not an initializer"), "{e}");
        let e = read(vec![convt(&ok), proto::node("Tanh", "t", &["other"], &["image"], &[])]).unwrap();
        assert!(e.contains("must take 'y'"), "{e}");
        let e = read(vec![convt(&ok)]).unwrap();
        assert!(e.contains("1 nodes"), "{e}");
        assert!(read_generator(b"", "e.onnx", &Device::Cpu)
            .err()
            .unwrap()
            .to_string()
            .contains("e.onnx: the file is empty"));
    }
}
