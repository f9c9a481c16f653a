//! The few ONNX protobuf messages an exported generator needs, encoded by hand.
//!
//! Protocol Buffers' wire format is small: each field is a key `(number << 3) | wire_type`
//! as a varint, then a varint (type 0), 4 little-endian bytes (type 5) or a length-prefixed
//! byte string (type 2, also for nested messages). Field numbers are those of `onnx.proto`
//! (github.com/onnx/onnx, onnx/onnx.proto). Writing them here keeps `protoc` and any
//! code generator off the user's machine.

/// A protobuf message under construction.
#[derive(Default)]
pub struct Message(Vec<u8>);

impl Message {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn key(&mut self, field: u32, wire_type: u8) {
        self.varint(((field as u64) << 3) | wire_type as u64);
    }

    /// An int32/int64/enum field (negative numbers as 10-byte two's complement, as protobuf does).
    pub fn int(&mut self, field: u32, v: i64) -> &mut Self {
        self.key(field, 0);
        self.varint(v as u64);
        self
    }

    pub fn float(&mut self, field: u32, v: f32) -> &mut Self {
        self.key(field, 5);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn bytes(&mut self, field: u32, b: &[u8]) -> &mut Self {
        self.key(field, 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }

    pub fn string(&mut self, field: u32, s: &str) -> &mut Self {
        self.bytes(field, s.as_bytes())
    }

    pub fn message(&mut self, field: u32, m: Message) -> &mut Self {
        self.bytes(field, &m.0)
    }
}

// Field numbers from onnx.proto.
pub mod field {
    pub mod model {
        pub const IR_VERSION: u32 = 1;
        pub const PRODUCER_NAME: u32 = 2;
        pub const PRODUCER_VERSION: u32 = 3;
        pub const DOC_STRING: u32 = 6;
        pub const GRAPH: u32 = 7;
        pub const OPSET_IMPORT: u32 = 8;
    }
    pub mod opset {
        pub const DOMAIN: u32 = 1;
        pub const VERSION: u32 = 2;
    }
    pub mod graph {
        pub const NODE: u32 = 1;
        pub const NAME: u32 = 2;
        pub const INITIALIZER: u32 = 5;
        pub const INPUT: u32 = 11;
        pub const OUTPUT: u32 = 12;
    }
    pub mod node {
        pub const INPUT: u32 = 1;
        pub const OUTPUT: u32 = 2;
        pub const NAME: u32 = 3;
        pub const OP_TYPE: u32 = 4;
        pub const ATTRIBUTE: u32 = 5;
    }
    pub mod attribute {
        pub const NAME: u32 = 1;
        pub const INTS: u32 = 8;
        pub const TYPE: u32 = 20;
        pub const TYPE_INTS: i64 = 7;
    }
    pub mod tensor {
        pub const DIMS: u32 = 1;
        pub const DATA_TYPE: u32 = 2;
        pub const NAME: u32 = 8;
        pub const RAW_DATA: u32 = 9;
        pub const FLOAT: i64 = 1;
    }
    pub mod value_info {
        pub const NAME: u32 = 1;
        pub const TYPE: u32 = 2;
    }
    pub mod type_proto {
        pub const TENSOR_TYPE: u32 = 1;
        pub const ELEM_TYPE: u32 = 1;
        pub const SHAPE: u32 = 2;
        pub const DIM: u32 = 1;
        pub const DIM_VALUE: u32 = 1;
        pub const DIM_PARAM: u32 = 2;
    }
}

/// A tensor dimension in a graph input or output: fixed, or a named symbol such as `N`.
pub enum Dim {
    Fixed(i64),
    Symbol(&'static str),
}

/// A float tensor initializer with raw little-endian data.
pub fn tensor_f32(name: &str, dims: &[usize], values: &[f32]) -> Message {
    use field::tensor::*;
    let mut t = Message::new();
    for &d in dims {
        t.int(DIMS, d as i64);
    }
    t.int(DATA_TYPE, FLOAT);
    t.string(NAME, name);
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    t.bytes(RAW_DATA, &raw);
    t
}

/// A graph input or output: a float tensor of the given shape.
pub fn value_info_f32(name: &str, dims: &[Dim]) -> Message {
    use field::type_proto::*;
    let mut shape = Message::new();
    for d in dims {
        let mut dim = Message::new();
        match d {
            Dim::Fixed(v) => dim.int(DIM_VALUE, *v),
            Dim::Symbol(s) => dim.string(DIM_PARAM, s),
        };
        shape.message(DIM, dim);
    }
    let mut tensor = Message::new();
    tensor.int(ELEM_TYPE, field::tensor::FLOAT).message(SHAPE, shape);
    let mut ty = Message::new();
    ty.message(TENSOR_TYPE, tensor);
    let mut vi = Message::new();
    vi.string(field::value_info::NAME, name).message(field::value_info::TYPE, ty);
    vi
}

/// A node with integer-list attributes only (all a generator needs).
pub fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str], attrs: &[(&str, Vec<i64>)]) -> Message {
    use field::node::*;
    let mut n = Message::new();
    for i in inputs {
        n.string(INPUT, i);
    }
    for o in outputs {
        n.string(OUTPUT, o);
    }
    n.string(NAME, name).string(OP_TYPE, op);
    for (attr_name, ints) in attrs {
        let mut a = Message::new();
        a.string(field::attribute::NAME, attr_name);
        for &v in ints {
            a.int(field::attribute::INTS, v);
        }
        a.int(field::attribute::TYPE, field::attribute::TYPE_INTS);
        n.message(ATTRIBUTE, a);
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_varints_and_fields_as_protobuf_does() {
        let mut m = Message::new();
        m.int(1, 150);
        assert_eq!(m.into_bytes(), [0x08, 0x96, 0x01]); // the protobuf docs' own example
        let mut m = Message::new();
        m.string(2, "testing");
        assert_eq!(m.into_bytes(), [0x12, 0x07, b't', b'e', b's', b't', b'i', b'n', b'g']);
        let mut m = Message::new();
        m.int(3, -1);
        assert_eq!(m.into_bytes(), [0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        let mut m = Message::new();
        m.float(5, 1.0);
        assert_eq!(m.into_bytes(), [0x2d, 0x00, 0x00, 0x80, 0x3f]);
    }
}
