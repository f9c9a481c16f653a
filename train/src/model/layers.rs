//! The layers the networks are made of, as plain structs over [`Params`].

use candle_core::{Result, Tensor, Var, D};

use super::params::Init;
use crate::ops::{self, Activation, Stats};

/// 4×4 kernels everywhere, as in Radford et al.
pub const KERNEL: usize = 4;

/// A bias-free 2-D convolution (every conv in a DCGAN is followed by BatchNorm or is the last layer).
pub struct Conv2d {
    pub weight: Tensor, // [out, in, k, k]
    pub stride: usize,
    pub padding: usize,
}

impl Conv2d {
    pub fn new(init: &mut Init, c_in: usize, c_out: usize, stride: usize, padding: usize) -> Result<Self> {
        Self::square(init, c_in, c_out, KERNEL, stride, padding)
    }

    /// A `k`×`k` kernel.
    pub fn square(init: &mut Init, c_in: usize, c_out: usize, k: usize, stride: usize, padding: usize) -> Result<Self> {
        let weight = init.normal("weight", &[c_out, c_in, k, k], 0.0, 0.02)?;
        Ok(Self { weight, stride, padding })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_with(x, &self.weight)
    }

    /// The convolution with another weight of the same shape (a normalised one).
    pub fn forward_with(&self, x: &Tensor, weight: &Tensor) -> Result<Tensor> {
        ops::conv2d(x, weight, self.stride, self.padding)
    }
}

/// A bias-free transposed convolution; the weight layout `[in, out, k, k]` is the same in candle and ONNX.
pub struct ConvTranspose2d {
    pub weight: Tensor,
    pub stride: usize,
    pub padding: usize,
}

impl ConvTranspose2d {
    pub fn new(init: &mut Init, c_in: usize, c_out: usize, stride: usize, padding: usize) -> Result<Self> {
        let weight = init.normal("weight", &[c_in, c_out, KERNEL, KERNEL], 0.0, 0.02)?;
        Ok(Self { weight, stride, padding })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        ops::conv_transpose2d(x, &self.weight, self.stride, self.padding)
    }
}

/// BatchNorm over NCHW, as PyTorch's `BatchNorm2d` (eps 1e-5, momentum 0.1): batch
/// statistics in training (running statistics updated with the unbiased variance),
/// running statistics in evaluation and in the exported graph.
pub struct BatchNorm2d {
    pub gamma: Tensor,
    pub beta: Tensor,
    pub running_mean: Var,
    pub running_var: Var,
}

pub const BN_EPS: f64 = 1e-5;
/// The running statistics' momentum (PyTorch's).
pub const BN_MOMENTUM: f64 = 0.1;

impl BatchNorm2d {
    pub fn new(init: &mut Init, channels: usize) -> Result<Self> {
        let gamma = init.normal("gamma", &[channels], 1.0, 0.02)?;
        let beta = init.constant("beta", &[channels], 0.0, true)?;
        let running_mean = Var::from_tensor(&init.constant("running_mean", &[channels], 0.0, false)?)?;
        let running_var = Var::from_tensor(&init.constant("running_var", &[channels], 1.0, false)?)?;
        Ok(Self { gamma, beta, running_mean, running_var })
    }

    /// The same layer with γ and β detached; the running statistics shared (and still updated).
    pub fn frozen(&self) -> Self {
        Self {
            gamma: self.gamma.detach(),
            beta: self.beta.detach(),
            running_mean: self.running_mean.clone(),
            running_var: self.running_var.clone(),
        }
    }

    /// act(BatchNorm(x)); on the CPU in training mode one fused operation.
    pub fn forward_act(&self, x: &Tensor, train: bool, act: Activation) -> Result<Tensor> {
        if train && x.device().is_cpu() {
            let (y, stats) = ops::batch_norm_act(x, &self.gamma, &self.beta, BN_EPS, act)?;
            self.record(stats, x.elem_count() / self.gamma.dim(0)?)?;
            return Ok(y);
        }
        let y = self.forward(x, train)?;
        match act {
            Activation::Relu => y.relu(),
            Activation::LeakyRelu(s) => ops::leaky_relu(&y, s),
            Activation::Identity => Ok(y),
        }
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let c = self.gamma.dim(0)?;
        let (mean, var) = if train {
            // Mean over (N, H, W) for each channel: move C first and flatten the rest.
            let flat = x.transpose(0, 1)?.flatten_from(1)?; // [C, N*H*W]
            let count = flat.dim(1)?;
            let mean = flat.mean_keepdim(D::Minus1)?;
            let var = flat.broadcast_sub(&mean)?.sqr()?.mean_keepdim(D::Minus1)?;
            self.update_running(&mean.detach(), &var.detach(), count)?;
            (mean.reshape((1, c, 1, 1))?, var.reshape((1, c, 1, 1))?)
        } else {
            (self.running_mean.as_tensor().reshape((1, c, 1, 1))?, self.running_var.as_tensor().reshape((1, c, 1, 1))?)
        };
        let scale = (var + BN_EPS)?.sqrt()?.recip()?.broadcast_mul(&self.gamma.reshape((1, c, 1, 1))?)?;
        x.broadcast_sub(&mean)?.broadcast_mul(&scale)?.broadcast_add(&self.beta.reshape((1, c, 1, 1))?)
    }

    /// Folds one training batch's statistics (over `count` values per channel) into the
    /// running averages.
    pub fn record(&self, stats: Stats, count: usize) -> Result<()> {
        let (c, dtype, dev) = (stats.mean.len(), self.gamma.dtype(), self.gamma.device());
        let mean = Tensor::from_vec(stats.mean, c, dev)?.to_dtype(dtype)?;
        let var = Tensor::from_vec(stats.var, c, dev)?.to_dtype(dtype)?;
        self.update_running(&mean, &var, count)
    }

    fn update_running(&self, mean: &Tensor, biased_var: &Tensor, count: usize) -> Result<()> {
        let unbiased = (biased_var * (count as f64 / (count.max(2) - 1) as f64))?.flatten_all()?;
        let m = self.running_mean.as_tensor();
        let v = self.running_var.as_tensor();
        self.running_mean.set(&((m * (1.0 - BN_MOMENTUM))? + (mean.flatten_all()? * BN_MOMENTUM)?)?)?;
        self.running_var.set(&((v * (1.0 - BN_MOMENTUM))? + (unbiased * BN_MOMENTUM)?)?)
    }
}

/// DCGAN's LeakyReLU slope.
pub const LEAKY_SLOPE: f64 = 0.2;

pub fn leaky_relu(x: &Tensor) -> Result<Tensor> {
    ops::leaky_relu(x, LEAKY_SLOPE)
}

/// LayerNorm over each sample's (C, H, W) with a per-channel scale and shift: the
/// WGAN-GP critic's normalisation, since BatchNorm couples the samples of a batch and
/// the gradient penalty is defined per sample (Gulrajani et al. §4).
pub struct LayerNorm2d {
    pub gamma: Tensor,
    pub beta: Tensor,
}

impl LayerNorm2d {
    pub fn new(init: &mut Init, channels: usize) -> Result<Self> {
        let gamma = init.constant("gamma", &[channels], 1.0, true)?;
        let beta = init.constant("beta", &[channels], 0.0, true)?;
        Ok(Self { gamma, beta })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let c = self.gamma.dim(0)?;
        let flat = x.flatten_from(1)?;
        let mean = flat.mean_keepdim(D::Minus1)?;
        let centred = flat.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centred.broadcast_div(&(var + BN_EPS)?.sqrt()?)?.reshape(x.shape())?;
        normed.broadcast_mul(&self.gamma.reshape((1, c, 1, 1))?)?.broadcast_add(&self.beta.reshape((1, c, 1, 1))?)
    }
}
