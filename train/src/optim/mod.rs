//! Adam and RMSprop (and plain gradient descent) with PyTorch's update rules, written here (not candle-nn's) because
//! exact resume needs their state: the moments and the step count are saved in checkpoints.

mod fused;

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rule {
    /// Kingma & Ba, with bias correction (PyTorch's `Adam`, no weight decay).
    Adam { beta1: f64, beta2: f64, eps: f64 },
    /// PyTorch's `RMSprop` (no momentum, not centred), as WGAN's reference code uses.
    RmsProp { alpha: f64, eps: f64 },
    /// w ← w − lr·g: what the tests read the gradients back through.
    Sgd,
}

pub struct Optimizer {
    pub rule: Rule,
    pub lr: f64,
    vars: Vec<Var>,
    /// Adam's first moment (unused by RMSprop).
    m: Vec<Tensor>,
    /// Adam's second moment, RMSprop's square average.
    v: Vec<Tensor>,
    /// Updates done so far (for Adam's bias correction).
    pub t: u64,
    /// Per variable: kept as it is (`--freeze-d`).
    frozen: Vec<bool>,
}

impl Optimizer {
    pub fn new(vars: Vec<Var>, rule: Rule, lr: f64) -> Result<Self> {
        let zeros = |v: &Var| v.as_tensor().zeros_like();
        let m = vars.iter().map(zeros).collect::<Result<_>>()?;
        let v = vars.iter().map(zeros).collect::<Result<_>>()?;
        Ok(Self { rule, lr, vars, m, v, t: 0, frozen: Vec::new() })
    }

    /// Keeps the variables `frozen` marks (in the order given to [`Optimizer::new`]) as they are.
    pub fn freeze(&mut self, frozen: Vec<bool>) {
        self.frozen = frozen;
    }

    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.t += 1;
        for (i, var) in self.vars.iter().enumerate() {
            let Some(g) = grads.get(var.as_tensor()).filter(|_| self.frozen.get(i) != Some(&true)) else { continue };
            // A variable's gradient still holds its graph (candle detaches only intermediate
            // nodes); the moments must not, or every step's graph would stay alive through them.
            let g = &g.detach();
            let gmvw = [g, &self.m[i], &self.v[i], var.as_tensor()];
            let (m, v, w) = match fused::step(self.rule, self.lr, self.t, gmvw)? {
                Some(new) => new,
                None => tensor_step(self.rule, self.lr, self.t, gmvw)?,
            };
            (self.m[i], self.v[i]) = (m, v);
            var.set(&w)?;
        }
        Ok(())
    }

    /// The moments as named tensors, for a checkpoint.
    pub fn state(&self, prefix: &str) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for (i, (m, v)) in self.m.iter().zip(&self.v).enumerate() {
            out.insert(format!("{prefix}m.{i}"), m.clone());
            out.insert(format!("{prefix}v.{i}"), v.clone());
        }
        out
    }

    pub fn load_state(&mut self, tensors: &HashMap<String, Tensor>, prefix: &str, t: u64) -> Result<()> {
        for i in 0..self.vars.len() {
            for (name, slot) in [("m", &mut self.m[i]), ("v", &mut self.v[i])] {
                let key = format!("{prefix}{name}.{i}");
                let saved =
                    tensors.get(&key).ok_or_else(|| candle_core::Error::Msg(format!("checkpoint lacks {key}")))?;
                if saved.dims() != slot.dims() {
                    candle_core::bail!("{key} has shape {:?}, expected {:?}", saved.dims(), slot.dims());
                }
                *slot = saved.to_dtype(slot.dtype())?.to_device(slot.device())?;
            }
        }
        self.t = t;
        Ok(())
    }
}

/// One update with tensor operations, on any device: the new (first moment, second
/// moment, weight). [`fused::step`] computes the same values in one pass on the CPU.
fn tensor_step(rule: Rule, lr: f64, t: u64, [g, m, v, w]: [&Tensor; 4]) -> Result<(Tensor, Tensor, Tensor)> {
    match rule {
        Rule::Adam { beta1, beta2, eps } => {
            let m = ((m * beta1)? + (g * (1.0 - beta1))?)?;
            let v = ((v * beta2)? + (g.sqr()? * (1.0 - beta2))?)?;
            let m_hat = (&m / (1.0 - beta1.powi(t as i32)))?;
            let v_hat = (&v / (1.0 - beta2.powi(t as i32)))?;
            let update = (m_hat / (v_hat.sqrt()? + eps)?)?;
            let w = (w - (update * lr)?)?;
            Ok((m, v, w))
        }
        Rule::RmsProp { alpha, eps } => {
            let v = ((v * alpha)? + (g.sqr()? * (1.0 - alpha))?)?;
            let update = (g / (v.sqrt()? + eps)?)?;
            let w = (w - (update * lr)?)?;
            Ok((m.clone(), v, w))
        }
        Rule::Sgd => Ok((m.clone(), v.clone(), (w - (g * lr)?)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Optimizer {
        fn backward_step(&mut self, loss: &Tensor) -> Result<()> {
            self.step(&loss.backward()?)
        }
    }
    use candle_core::Device;

    /// Minimise (x - 3)² from x = 0 and compare with the update rules computed by hand.
    fn run(rule: Rule, lr: f64, steps: usize) -> f32 {
        let x = Var::new(&[0f32], &Device::Cpu).unwrap();
        let mut opt = Optimizer::new(vec![x.clone()], rule, lr).unwrap();
        for _ in 0..steps {
            let loss = (x.as_tensor() - 3.0).unwrap().sqr().unwrap().sum_all().unwrap();
            opt.backward_step(&loss).unwrap();
        }
        x.as_tensor().to_vec1::<f32>().unwrap()[0]
    }

    #[test]
    fn adam_and_rmsprop_follow_pytorch_update_rules() {
        // Adam's first step is lr·sign(g) whatever the gradient's size.
        assert!((run(Rule::Adam { beta1: 0.5, beta2: 0.999, eps: 1e-8 }, 0.1, 1) - 0.1).abs() < 1e-6);
        // RMSprop's first step: v = (1-α)g², x -= lr·g/√v = lr/√(1-α).
        let want = 0.01 / (1.0f64 - 0.99).sqrt();
        assert!((run(Rule::RmsProp { alpha: 0.99, eps: 1e-8 }, 0.01, 1) as f64 - want).abs() < 1e-5);
        // Both converge.
        assert!((run(Rule::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8 }, 0.1, 300) - 3.0).abs() < 0.05);
        assert!((run(Rule::RmsProp { alpha: 0.99, eps: 1e-8 }, 0.01, 800) - 3.0).abs() < 0.05);
    }

    #[test]
    fn moments_hold_no_graph_so_steps_do_not_accumulate_memory() {
        // In a network, a weight's gradient is built from activations that depend on other
        // weights (here: d(w·u)/dw = u, itself a variable), so it carries their graph.
        let w = Var::new(&[1f32, -2.0], &Device::Cpu).unwrap();
        let u = Var::new(&[3f32, 4.0], &Device::Cpu).unwrap();
        for rule in [Rule::Adam { beta1: 0.5, beta2: 0.9, eps: 1e-8 }, Rule::RmsProp { alpha: 0.99, eps: 1e-8 }] {
            let mut opt = Optimizer::new(vec![w.clone()], rule, 0.1).unwrap();
            for _ in 0..3 {
                opt.backward_step(&(w.as_tensor() * u.as_tensor()).unwrap().sum_all().unwrap()).unwrap();
            }
            // A moment that kept the step's graph would lead a backward pass back to u.
            for t in opt.m.iter().chain(&opt.v) {
                let grads = t.sum_all().unwrap().backward().unwrap();
                assert!(grads.get(u.as_tensor()).is_none(), "{rule:?}: a moment holds the training graph");
            }
        }
    }

    #[test]
    fn the_one_pass_update_gives_the_tensor_operations_bits() {
        let rules = [Rule::Adam { beta1: 0.5, beta2: 0.999, eps: 1e-8 }, Rule::RmsProp { alpha: 0.99, eps: 1e-8 }];
        let dev = Device::Cpu;
        // More values than one parallel task takes, an uneven number, f32 and f64.
        let n = 3 * crate::ops::TASK_VALUES + 7;
        let values = |seed: f64| -> Vec<f64> { (0..n).map(|i| ((i as f64 + seed) * 0.37).sin() * 1e-2).collect() };
        for dtype in [candle_core::DType::F32, candle_core::DType::F64] {
            let t = |seed: f64| Tensor::from_vec(values(seed), n, &dev).unwrap().to_dtype(dtype).unwrap();
            let (g, m, v) = (t(1.0), t(2.0), t(3.0).abs().unwrap());
            let w = Var::from_tensor(&t(4.0)).unwrap();
            for rule in rules {
                for step in [1, 7] {
                    let fused =
                        fused::step(rule, 2e-4, step, [&g, &m, &v, w.as_tensor()]).unwrap().expect("a CPU tensor");
                    let reference = tensor_step(rule, 2e-4, step, [&g, &m, &v, w.as_tensor()]).unwrap();
                    for (name, a, b) in
                        [("m", &fused.0, &reference.0), ("v", &fused.1, &reference.1), ("w", &fused.2, &reference.2)]
                    {
                        let (a, b) = (
                            a.to_dtype(candle_core::DType::F64).unwrap(),
                            b.to_dtype(candle_core::DType::F64).unwrap(),
                        );
                        assert_eq!(
                            a.to_vec1::<f64>().unwrap(),
                            b.to_vec1::<f64>().unwrap(),
                            "{rule:?} {dtype:?} step {step}: {name}"
                        );
                    }
                    // The update did move the weight (a test of equal no-ops would pass too).
                    let moved = (&fused.2 - w.as_tensor()).unwrap().abs().unwrap().sum_all().unwrap();
                    assert!(moved.to_dtype(candle_core::DType::F64).unwrap().to_scalar::<f64>().unwrap() > 0.0);
                }
            }
        }
    }

    #[test]
    fn state_round_trips() {
        let x = Var::new(&[1f32, 2.0], &Device::Cpu).unwrap();
        let rule = Rule::Adam { beta1: 0.5, beta2: 0.9, eps: 1e-8 };
        let mut a = Optimizer::new(vec![x.clone()], rule, 0.1).unwrap();
        a.backward_step(&x.as_tensor().sqr().unwrap().sum_all().unwrap()).unwrap();
        let mut b = Optimizer::new(vec![x.clone()], rule, 0.1).unwrap();
        b.load_state(&a.state("o."), "o.", a.t).unwrap();
        assert_eq!(b.t, 1);
        assert_eq!(b.m[0].to_vec1::<f32>().unwrap(), a.m[0].to_vec1::<f32>().unwrap());
        assert!(b.load_state(&HashMap::new(), "o.", 1).is_err());
    }
}
