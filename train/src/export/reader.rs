//! Reads an exported `generator.onnx` back into the candle module that trained it, with
//! no ONNX Runtime: `eval`, `sample` and `interpolate` work from the file the server
//! serves, not from a checkpoint, and canard-train never links ONNX Runtime.
//!
//! The bytes are decoded with ONNX's protobuf types ([`super::pb`]); the initializers are
//! the module's parameters by name ([`super::onnx`]); and the file's graph must be exactly
//! the graph the exporter writes for that module, so what runs here is what the server
//! runs. There is no second implementation of the generator to keep in step.

use std::collections::HashMap;
use std::path::Path;

use canard_shared::latent::{class_of_seed, latent_batch};
use canard_shared::Manifest;
use candle_core::{DType, Device, Tensor};
use prost::Message;
use rand::SeedableRng;

use super::pb::{
    tensor_proto::DataType, tensor_shape_proto::dimension, type_proto, ModelProto, TensorProto, ValueInfoProto,
};
use crate::config::Arch;
use crate::nn::{fastgan, Init, Net, Params, Shape};

/// The exported generator, in the network that trained it (evaluation mode).
pub struct OnnxGenerator {
    pub g: Net,
    /// Its parameters, by the names the exporter gave them.
    pub params: Params,
    /// The architecture family its generator belongs to (dcgan's serves wgan and wgan-gp too).
    pub arch: Arch,
    pub shape: Shape,
    /// The device it runs on.
    pub device: Device,
}

/// Images are generated this many at a time, to bound memory for large requests.
const BATCH: usize = 64;

impl OnnxGenerator {
    /// Flat latent vectors (`k × nz` values) → flat NCHW images, [`BATCH`] at a time; a
    /// conditional generator's `classes` one per vector (none for an unconditional one).
    pub fn images(&self, z: &[f32], classes: &[u32]) -> candle_core::Result<Vec<f32>> {
        let nz = self.shape.nz;
        if !z.len().is_multiple_of(nz) {
            candle_core::bail!("{} latent values are not a whole number of {nz}-long vectors", z.len());
        }
        let want = if self.shape.classes > 0 { z.len() / nz } else { 0 };
        if classes.len() != want || classes.iter().any(|&c| c as usize >= self.shape.classes.max(1)) {
            candle_core::bail!("internal error: {} classes for {want} pictures", classes.len());
        }
        let device = &self.device;
        let mut out = Vec::with_capacity(z.len() / nz * self.image_len());
        for (k, chunk) in z.chunks(BATCH * nz).enumerate() {
            let n = chunk.len() / nz;
            let x = Tensor::from_slice(chunk, (n, nz, 1, 1), device)?;
            let c =
                (!classes.is_empty()).then(|| Tensor::from_slice(&classes[k * BATCH..][..n], n, device)).transpose()?;
            out.extend(self.g.run(&x, c.as_ref())?.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(out)
    }

    /// The classes of `seeds`' pictures: `class` for each, or each seed's own
    /// ([`class_of_seed`], as the server draws them); none for an unconditional generator.
    pub fn classes_of(&self, seeds: &[u64], class: Option<usize>) -> Vec<u32> {
        match self.shape.classes {
            0 => Vec::new(),
            k => seeds.iter().map(|&s| class.unwrap_or_else(|| class_of_seed(s, k)) as u32).collect(),
        }
    }

    /// The images of `seeds` (`canard_shared::latent`'s vectors, as the server's), of
    /// `class` or each seed's own on a conditional generator.
    pub fn generate(&self, seeds: &[u64], class: Option<usize>) -> candle_core::Result<Vec<f32>> {
        self.images(&latent_batch(seeds, self.shape.nz), &self.classes_of(seeds, class))
    }

    /// Values per image: C × S × S.
    pub fn image_len(&self) -> usize {
        self.shape.channels * self.shape.image_size * self.shape.image_size
    }
}

/// `model_dir/model.json` and the generator it names (SHA-256 checked), cross-checked
/// against each other: latent length, channels, image size, input and output names.
pub fn load_generator(model_dir: &Path, device: &Device) -> anyhow::Result<(Manifest, OnnxGenerator)> {
    let manifest = Manifest::load(model_dir)?;
    let bytes = manifest.read_onnx(model_dir)?;
    let file = model_dir.join(&manifest.onnx.file).display().to_string();
    let g = read_generator(&bytes, &file, device)?;
    let (m, s) = (&manifest, &g.shape);
    let checks = [
        ("latent.dim", m.latent.dim.to_string(), s.nz.to_string()),
        ("channels", m.channels.to_string(), s.channels.to_string()),
        ("image_size", m.image_size.to_string(), s.image_size.to_string()),
        ("onnx.input", m.onnx.input.clone(), super::onnx::INPUT.into()),
        ("onnx.output", m.onnx.output.clone(), super::onnx::OUTPUT.into()),
        ("classes", m.classes.len().to_string(), s.classes.to_string()),
    ];
    for (what, said, found) in checks {
        if said != found {
            anyhow::bail!("{file}: the graph has {what} {found}, but model.json says {said}");
        }
    }
    Ok((manifest, g))
}

/// Decodes and checks ONNX model bytes; `file` names them in errors.
pub fn read_generator(bytes: &[u8], file: &str, device: &Device) -> anyhow::Result<OnnxGenerator> {
    read(bytes, device).map_err(|reason| anyhow::anyhow!("{file}: {reason}"))
}

fn read(bytes: &[u8], device: &Device) -> Result<OnnxGenerator, String> {
    if bytes.is_empty() {
        return Err("the file is empty".into());
    }
    let model = ModelProto::decode(bytes).map_err(|e| format!("not an ONNX model ({e})"))?;
    let graph = model.graph.ok_or("the model has no graph")?;
    let ([input, ..], [output]) = (&graph.input[..], &graph.output[..]) else {
        return Err(format!(
            "{} inputs and {} outputs; a generator has one or two inputs (z, and a class) and one output",
            graph.input.len(),
            graph.output.len()
        ));
    };
    let [_, nz, _, _] = dims(input)?;
    let [_, channels, size, size_w] = dims(output)?;
    if size != size_w {
        return Err(format!("the output is {size}×{size_w}; canard's pictures are square"));
    }
    let tensors: HashMap<String, Tensor> = graph
        .initializer
        .iter()
        .map(|t| Ok((t.name().to_string(), tensor(t, device)?)))
        .collect::<Result<_, String>>()?;
    // Which network, and its width, follow from the first layer's initializer.
    // A conditional generator's class embedding has a row per class.
    let classes = tensors.get("embed.weight").and_then(|e| e.dims().first().copied()).unwrap_or(0);
    let probe = Shape { image_size: size, channels, nz, ngf: 1, ndf: 1, classes };
    probe.validate().map_err(|e| format!("not a canard generator: {e}"))?;
    let (arch, ngf) = if let Some(first) = tensors.get("first.weight") {
        let out = first.dims().get(1).copied().unwrap_or(0);
        let ngf = fastgan::ngf_from_first(size, out).ok_or_else(|| {
            format!("not a canard generator: its first layer has {out} channels for {size}×{size} pictures")
        })?;
        (Arch::Fastgan, ngf)
    } else {
        // DCGAN: ngf·2^(stages−1) channels out of the first layer.
        let first = tensors.get("0.conv.weight").ok_or("not a canard generator: no initializer 0.conv.weight")?;
        let widest = first.dims().get(1).copied().unwrap_or(0);
        let ngf = widest >> (probe.stages() - 1);
        if ngf == 0 || ngf << (probe.stages() - 1) != widest {
            return Err(format!(
                "not a canard generator: its first layer has {widest} channels for {size}×{size} pictures"
            ));
        }
        (Arch::Dcgan, ngf)
    };
    let shape = Shape { ngf, ndf: ngf, ..probe };
    arch.validate_shape(&shape).map_err(|e| format!("not a canard generator: {e}"))?;
    // Every parameter must be in the file: a generator is never built bigger than its bytes.
    let held: usize = tensors.values().map(Tensor::elem_count).sum();
    let want = arch.generator_parameters(shape, crate::config::MAX_PARAMETERS);
    if want != Some(held) {
        return Err(format!(
            "not a canard generator: its initializers hold {held} values where a {size}×{size} {} generator with \
             these widths has {}",
            arch.name(),
            want.map_or(format!("more than {}", crate::config::MAX_PARAMETERS), |n| n.to_string())
        ));
    }

    let mut params = Params::default();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0); // fills tensors overwritten at once
    let g =
        arch.generator(&mut Init::new(&mut params, &mut rng, device, DType::F32), shape).map_err(|e| e.to_string())?;
    params.load(&tensors, "").map_err(|e| format!("not a canard generator: {e}"))?;
    if tensors.len() != params.iter().count() {
        return Err(format!(
            "{} initializers where a generator of this shape has {}",
            tensors.len(),
            params.iter().count()
        ));
    }
    // The graph must be the one the exporter writes for this module.
    let want = super::onnx::graph(&g, &shape).map_err(|e| e.to_string())?;
    if let Some(i) = (0..want.node.len().max(graph.node.len())).find(|&i| want.node.get(i) != graph.node.get(i)) {
        let op = |n: Option<&super::pb::NodeProto>| n.map_or("nothing".to_string(), |n| n.op_type().to_string());
        return Err(format!(
            "not a canard generator: node {i} is {} where canard's exporter writes {} (or differs in its inputs or attributes)",
            op(graph.node.get(i)),
            op(want.node.get(i))
        ));
    }
    if (&want.input, &want.output) != (&graph.input, &graph.output) {
        return Err("not a canard generator: its inputs or outputs differ from what canard's exporter writes".into());
    }
    Ok(OnnxGenerator { g, params, arch, shape, device: device.clone() })
}

/// A 4-D float graph input or output's dimensions (the batch dimension as 0).
fn dims(v: &ValueInfoProto) -> Result<[usize; 4], String> {
    let tensor = match v.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(type_proto::Value::TensorType(t)) => t,
        _ => return Err(format!("'{}' is not a tensor", v.name())),
    };
    let dims = tensor.shape.as_ref().map(|s| &s.dim[..]).unwrap_or_default();
    let values: Vec<usize> = dims
        .iter()
        .map(|d| match d.value {
            Some(dimension::Value::DimValue(n)) if n > 0 => usize::try_from(n).unwrap_or(0),
            _ => 0,
        })
        .collect();
    let n = values.len();
    values.try_into().map_err(|_| format!("'{}' has {n} dimensions, not 4", v.name()))
}

/// A float initializer (`raw_data` little-endian, or `float_data`) as a tensor.
fn tensor(t: &TensorProto, device: &Device) -> Result<Tensor, String> {
    let name = t.name();
    if t.data_type() != DataType::Float as i32 {
        return Err(format!("initializer '{name}' is not float32"));
    }
    let dims: Vec<usize> = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("initializer '{name}' has dimension {d}")))
        .collect::<Result<_, _>>()?;
    let count =
        dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or(format!("initializer '{name}' is too large"))?;
    let values: Vec<f32> = match &t.raw_data {
        Some(raw) if raw.len() == count.saturating_mul(4) => {
            raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
        }
        None if t.float_data.len() == count => t.float_data.clone(),
        _ => return Err(format!("initializer '{name}' does not hold the {count} values its dimensions {dims:?} give")),
    };
    Tensor::from_vec(values, dims, device).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use rand::Rng;
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::export::pb::{GraphProto, NodeProto};

    /// A trained-looking generator: BatchNorm with distinct, non-trivial statistics.
    fn generator(size: usize, channels: usize) -> (Net, Shape) {
        let shape = Shape { image_size: size, channels, nz: 12, ngf: 4, ndf: 4, classes: 0 };
        let mut params = Params::default();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let g = Arch::Dcgan.generator(&mut Init::new(&mut params, &mut rng, &Device::Cpu, DType::F32), shape).unwrap();
        let bns = params.iter().filter(|p| p.name.ends_with(".bn.gamma")).count();
        for i in 0..bns {
            let named = |n: &str| params.iter().find(|p| p.name == format!("{i}.bn.{n}")).unwrap().var.clone();
            let c = named("gamma").dim(0).unwrap();
            let wave =
                |a: f32, b: f32| -> Vec<f32> { (0..c).map(|k| a + b * ((k * 7 + i * 3) as f32).sin()).collect() };
            let set = |n: &str, v: Vec<f32>| named(n).set(&Tensor::new(v, &Device::Cpu).unwrap()).unwrap();
            set("gamma", wave(1.5, 0.8));
            set("beta", wave(0.1, 0.5));
            set("running_mean", wave(0.0, 0.05));
            set("running_var", wave(0.02, 0.015));
        }
        (g, shape)
    }

    #[test]
    fn reads_back_what_export_writes_and_computes_the_same() {
        for (size, channels) in [(16, 3), (32, 1), (8, 3)] {
            let (g, shape) = generator(size, channels);
            let dir = tempfile::tempdir().unwrap();
            let (model_dir, _) =
                crate::export::export(&g, &shape, &[], dir.path(), "x", "dcgan", Default::default()).unwrap();
            let (manifest, reader) = load_generator(&model_dir, &Device::Cpu).unwrap();
            assert_eq!(
                (reader.shape.nz, reader.shape.channels, reader.shape.image_size, reader.shape.ngf),
                (12, channels, size, 4)
            );
            assert_eq!(manifest.name, "x");

            let seeds = [0u64, 1, 42, u64::MAX];
            let want = crate::report::generate(&g, 12, &seeds, &[], &Device::Cpu).unwrap();
            // The same module with the same weights: the same bits.
            let got = reader.generate(&seeds, None).unwrap();
            assert_eq!(got, want.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        }
    }

    #[test]
    fn garbage_and_truncated_files_are_errors_never_panics() {
        let (g, shape) = generator(16, 3);
        let bytes = crate::export::onnx::generator_to_onnx(&g, &shape, "doc").unwrap();
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
                Ok(r) => assert_eq!((r.arch, r.shape.image_size), (Arch::Dcgan, 16)),
            }
        }
        assert!(errors > 200, "only {errors} of 400 mutations were rejected");
        let e = read_generator(b"", "e.onnx", &Device::Cpu).err().unwrap().to_string();
        assert_eq!(e, "e.onnx: the file is empty");
    }

    /// The exported graph of a 16×16 generator, changed by `edit`, as bytes.
    fn edited(edit: impl FnOnce(&mut GraphProto)) -> Vec<u8> {
        let (g, shape) = generator(16, 3);
        let mut model =
            ModelProto::decode(&crate::export::onnx::generator_to_onnx(&g, &shape, "doc").unwrap()[..]).unwrap();
        edit(model.graph.as_mut().unwrap());
        model.encode_to_vec()
    }

    #[test]
    fn refuses_graphs_that_are_not_what_canard_exports() {
        let read = |bytes: Vec<u8>| read_generator(&bytes, "m.onnx", &Device::Cpu).err().map(|e| e.to_string());
        assert!(read(edited(|_| {})).is_none(), "the unedited graph loads");

        let e = read(edited(|g| g.node[2].op_type = Some("Sigmoid".into()))).unwrap();
        assert!(
            e.starts_with("m.onnx: not a canard generator: node 2 is Sigmoid where canard's exporter writes Relu"),
            "{e}"
        );
        let e = read(edited(|g| g.node[0].attribute[1].ints = vec![1, 2])).unwrap();
        assert!(e.contains("node 0 is ConvTranspose") && e.contains("attributes"), "{e}");
        let e = read(edited(|g| g.node.push(NodeProto { op_type: Some("Identity".into()), ..Default::default() })))
            .unwrap();
        assert!(e.contains("is Identity where canard's exporter writes nothing"), "{e}");
        let e = read(edited(|g| g.initializer.retain(|t| t.name() != "1.bn.gamma"))).unwrap();
        assert!(
            e.contains("initializers hold 2284 values where a 16×16 dcgan generator with these widths has 2288"),
            "{e}"
        );
        let e = read(edited(|g| {
            g.initializer.iter_mut().find(|t| t.name() == "1.bn.gamma").unwrap().name = Some("x".into())
        }))
        .unwrap();
        assert!(e.contains("missing tensor 1.bn.gamma"), "{e}");
        let e = read(edited(|g| g.initializer[0].raw_data.as_mut().unwrap().pop().map(|_| ()).unwrap())).unwrap();
        assert!(e.contains("initializer '0.conv.weight' does not hold"), "{e}");
        let e = read(edited(|g| g.initializer[1].data_type = Some(DataType::Double as i32))).unwrap();
        assert!(e.contains("is not float32"), "{e}");
        let e = read(edited(|g| g.output.clear())).unwrap();
        assert!(e.contains("1 inputs and 0 outputs"), "{e}");
        let e = read(edited(|g| g.input[0].name = Some("noise".into()))).unwrap();
        assert!(e.contains("inputs or outputs differ"), "{e}");
        let extra = TensorProto {
            name: Some("extra".into()),
            data_type: Some(DataType::Float as i32),
            float_data: vec![1.0],
            dims: vec![1],
            ..Default::default()
        };
        let e = read(edited(|g| g.initializer.push(extra))).unwrap();
        assert!(e.contains("initializers hold 2289 values"), "{e}");
        assert!(read(b"\xff\xff\xff".to_vec()).unwrap().contains("not an ONNX model"));
    }
}
