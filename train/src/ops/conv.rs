//! The three convolution products as candle custom operations.

use std::sync::{Arc, Mutex};

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};

use super::contiguous;
use super::gemm::{matmul, Element, Mat};
use super::im2col::{col2im, from_channel_major, im2col, to_channel_major, Frame};

/// A square kernel's size, stride and zero padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub k: usize,
    pub stride: usize,
    pub padding: usize,
}

impl Geometry {
    pub fn new(k: usize, stride: usize, padding: usize) -> Result<Self> {
        if k == 0 || stride == 0 {
            bail!("convolution kernel size and stride must be positive, got {k} and {stride}");
        }
        Ok(Self { k, stride, padding })
    }

    /// The number of kernel positions along a side of `big` pixels (a convolution's output side).
    pub fn small(&self, big: usize) -> Result<usize> {
        match (big + 2 * self.padding).checked_sub(self.k) {
            Some(d) => Ok(d / self.stride + 1),
            None => bail!("a {}-pixel kernel does not fit a side of {big} with padding {}", self.k, self.padding),
        }
    }

    /// A transposed convolution's output side for an input side of `small`.
    pub fn big(&self, small: usize) -> Result<usize> {
        match ((small.max(1) - 1) * self.stride + self.k).checked_sub(2 * self.padding) {
            Some(b) if b > 0 && small > 0 => Ok(b),
            _ => bail!("transposed convolution of side {small} with {self:?} has no output"),
        }
    }
}

pub fn conv2d(x: &Tensor, w: &Tensor, g: Geometry) -> Result<Tensor> {
    // The weight gradient will need the same columns: keep them rather than unfold x twice.
    let keep = w.track_op().then(Memo::default);
    apply(x, w, Conv { g, keep })
}

pub fn conv_transpose2d(x: &Tensor, w: &Tensor, g: Geometry, out: (usize, usize)) -> Result<Tensor> {
    apply(x, w, ConvTranspose { g, out, keep: None })
}

fn apply<P: Product>(a: &Tensor, b: &Tensor, p: P) -> Result<Tensor> {
    a.contiguous()?.apply_op2(&b.contiguous()?, Op(p))
}

/// A buffer one product built and another, later, can use instead of building it again:
/// a convolution's im2col columns for its weight gradient (the same frame), a transposed
/// convolution's channel-major input for the weight gradient of the same output gradient.
/// The consumer takes it, so it lives until then (or until the graph is dropped).
#[derive(Clone, Default)]
struct Memo(Arc<Mutex<Option<CpuStorage>>>);

impl Memo {
    fn put<T: Element>(keep: &Option<Memo>, v: Vec<T>) {
        if let Some(Ok(mut slot)) = keep.as_ref().map(|m| m.0.lock()) {
            *slot = Some(T::to_cpu_storage_owned(v));
        }
    }

    /// The kept values if they are there, of type T and `len` long; else `make()`.
    fn take_or<T: Element>(memo: &Option<Memo>, len: usize, make: impl FnOnce() -> Vec<T>) -> Vec<T> {
        let kept = memo.as_ref().and_then(|m| m.0.lock().ok()?.take());
        match kept.and_then(|s| T::cpu_storage_data(s).ok()) {
            Some(v) if v.len() == len => v,
            _ => make(),
        }
    }
}

/// What one product needs to know besides its operands.
struct Plan {
    /// The image the kernel slides over and the grid of its positions.
    frame: Frame,
    /// The channels on the side of the product that is not `frame`'s image.
    other: usize,
    out: Shape,
}

/// One of the three products: checks shapes, computes, and says how to differentiate itself.
trait Product: Send + Sync + 'static {
    const NAME: &'static str;
    fn plan(&self, a: &[usize], b: &[usize]) -> Result<Plan>;
    fn run<T: Element>(&self, p: &Plan, a: &[T], b: &[T]) -> Vec<T>;
    fn grads(&self, a: &Tensor, b: &Tensor, dy: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)>;
}

/// y = conv2d(x, w): x [N, Ci, H, W], w [Co, Ci, k, k] → y [N, Co, H', W'].
struct Conv {
    g: Geometry,
    /// Where to leave x's columns for the weight gradient.
    keep: Option<Memo>,
}

/// y = conv_transpose2d(x, w) at a given output size: x [N, Ci, H', W'],
/// w [Ci, Co, k, k] → y [N, Co, H, W], the adjoint of conv2d in its input.
struct ConvTranspose {
    g: Geometry,
    out: (usize, usize),
    /// Where to leave x in channel-major order for a weight gradient against it.
    keep: Option<Memo>,
}

/// conv2d's weight gradient: x [N, Ci, H, W] (the input), dy [N, Co, H', W'] → [Co, Ci, k, k].
struct WeightGrad {
    g: Geometry,
    /// x's im2col columns, if a convolution over the same frame kept them.
    cols: Option<Memo>,
    /// dy in channel-major order, if a transposed convolution of it kept it.
    dy: Option<Memo>,
}

fn dims4(d: &[usize], what: &str) -> Result<(usize, usize, usize, usize)> {
    match *d {
        [a, b, c, e] => Ok((a, b, c, e)),
        _ => bail!("{what} must have 4 dimensions, got {d:?}"),
    }
}

impl Product for Conv {
    const NAME: &'static str = "canard-conv2d";

    fn plan(&self, x: &[usize], w: &[usize]) -> Result<Plan> {
        let (n, ci, h, wd) = dims4(x, "conv2d input")?;
        let (co, wci, k1, k2) = dims4(w, "conv2d weight")?;
        let k = self.g.k;
        if (wci, k1, k2) != (ci, k, k) {
            bail!("conv2d: the input has {ci} channels but the weight is {w:?} (expected [_, {ci}, {k}, {k}])");
        }
        let frame = Frame { n, channels: ci, big: (h, wd), small: (self.g.small(h)?, self.g.small(wd)?), g: self.g };
        Ok(Plan { frame, other: co, out: Shape::from((n, co, frame.small.0, frame.small.1)) })
    }

    fn run<T: Element>(&self, p: &Plan, x: &[T], w: &[T]) -> Vec<T> {
        let f = &p.frame;
        let cols = im2col(x, f);
        let y = matmul(Mat::new(w, p.other, f.rows()), Mat::new(&cols, f.rows(), f.cols()));
        Memo::put(&self.keep, cols);
        from_channel_major(&y, f.n, p.other)
    }

    fn grads(&self, x: &Tensor, w: &Tensor, dy: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (_, _, h, wd) = x.dims4()?;
        let dy_cm = w.track_op().then(Memo::default);
        let dx = match x.track_op() {
            true => Some(apply(dy, w, ConvTranspose { g: self.g, out: (h, wd), keep: dy_cm.clone() })?),
            false => None,
        };
        let dw = match w.track_op() {
            true => Some(apply(x, dy, WeightGrad { g: self.g, cols: self.keep.clone(), dy: dy_cm })?),
            false => None,
        };
        Ok((dx, dw))
    }
}

impl Product for ConvTranspose {
    const NAME: &'static str = "canard-conv-transpose2d";

    fn plan(&self, x: &[usize], w: &[usize]) -> Result<Plan> {
        let (n, ci, sh, sw) = dims4(x, "conv_transpose2d input")?;
        let (wci, co, k1, k2) = dims4(w, "conv_transpose2d weight")?;
        let k = self.g.k;
        if (wci, k1, k2) != (ci, k, k) {
            bail!(
                "conv_transpose2d: the input has {ci} channels but the weight is {w:?} (expected [{ci}, _, {k}, {k}])"
            );
        }
        let frame = Frame { n, channels: co, big: self.out, small: (sh, sw), g: self.g };
        if (self.g.small(self.out.0)?, self.g.small(self.out.1)?) != frame.small {
            bail!(
                "conv_transpose2d: an output of {:?} does not match an input of {:?} with {:?}",
                self.out,
                frame.small,
                self.g
            );
        }
        Ok(Plan { frame, other: ci, out: Shape::from((n, co, self.out.0, self.out.1)) })
    }

    fn run<T: Element>(&self, p: &Plan, x: &[T], w: &[T]) -> Vec<T> {
        let f = &p.frame;
        let x = to_channel_major(x, f.n, p.other);
        let cols = matmul(Mat::new(w, p.other, f.rows()).t(), Mat::new(&x, p.other, f.cols()));
        Memo::put(&self.keep, x);
        col2im(&cols, f)
    }

    fn grads(&self, x: &Tensor, w: &Tensor, dy: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        // Both gradients unfold dy over the same frame: the first leaves its columns to the second.
        let dy_cols = w.track_op().then(Memo::default);
        let dx = match x.track_op() {
            true => Some(apply(dy, w, Conv { g: self.g, keep: dy_cols.clone() })?),
            false => None,
        };
        let dw = match w.track_op() {
            true => Some(apply(dy, x, WeightGrad { g: self.g, cols: dy_cols, dy: None })?),
            false => None,
        };
        Ok((dx, dw))
    }
}

impl Product for WeightGrad {
    const NAME: &'static str = "canard-conv2d-weight-grad";

    fn plan(&self, x: &[usize], dy: &[usize]) -> Result<Plan> {
        let (n, ci, h, w) = dims4(x, "conv2d weight gradient input")?;
        let (dn, co, sh, sw) = dims4(dy, "conv2d weight gradient output")?;
        let frame = Frame { n, channels: ci, big: (h, w), small: (sh, sw), g: self.g };
        if dn != n || (self.g.small(h)?, self.g.small(w)?) != frame.small {
            bail!("conv2d weight gradient: input {x:?} and output gradient {dy:?} do not match {:?}", self.g);
        }
        Ok(Plan { frame, other: co, out: Shape::from((co, ci, self.g.k, self.g.k)) })
    }

    fn run<T: Element>(&self, p: &Plan, x: &[T], dy: &[T]) -> Vec<T> {
        let f = &p.frame;
        let cols = Memo::take_or(&self.cols, f.rows() * f.cols(), || im2col(x, f));
        let dy = Memo::take_or(&self.dy, dy.len(), || to_channel_major(dy, f.n, p.other));
        matmul(Mat::new(&dy, p.other, f.cols()), Mat::new(&cols, f.rows(), f.cols()).t())
    }

    fn grads(&self, x: &Tensor, dy: &Tensor, ddw: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (_, _, h, w) = x.dims4()?;
        let dx = match x.track_op() {
            true => Some(apply(dy, ddw, ConvTranspose { g: self.g, out: (h, w), keep: None })?),
            false => None,
        };
        let ddy = if dy.track_op() { Some(apply(x, ddw, Conv { g: self.g, keep: None })?) } else { None };
        Ok((dx, ddy))
    }
}

/// A [`Product`] as a candle operation.
struct Op<P>(P);

impl<P: Product> CustomOp2 for Op<P> {
    fn name(&self) -> &'static str {
        P::NAME
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let p = self.0.plan(l1.dims(), l2.dims())?;
        let out = match (s1, s2) {
            (CpuStorage::F32(a), CpuStorage::F32(b)) => {
                CpuStorage::F32(self.0.run(&p, contiguous(a, l1)?, contiguous(b, l2)?))
            }
            (CpuStorage::F64(a), CpuStorage::F64(b)) => {
                CpuStorage::F64(self.0.run(&p, contiguous(a, l1)?, contiguous(b, l2)?))
            }
            _ => bail!("{}: f32 or f64 operands of one type, got {:?} and {:?}", P::NAME, s1.dtype(), s2.dtype()),
        };
        Ok((out, p.out))
    }

    fn bwd(&self, a: &Tensor, b: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        self.0.grads(a, b, grad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_memo_hands_over_what_was_kept_once_and_only_if_it_fits() {
        let made = || vec![9.0f32; 3];
        let keep = Some(Memo::default());
        Memo::put(&keep, vec![1.0f32, 2.0, 3.0]);
        assert_eq!(Memo::take_or(&keep, 3, made), [1.0, 2.0, 3.0], "the kept values");
        assert_eq!(Memo::take_or(&keep, 3, made), [9.0; 3], "taken: the second use rebuilds");
        Memo::put(&keep, vec![1.0f32, 2.0]);
        assert_eq!(Memo::take_or(&keep, 3, made), [9.0; 3], "the wrong length is not used");
        Memo::put(&keep, vec![1.0f64, 2.0, 3.0]);
        assert_eq!(Memo::take_or(&keep, 3, made), [9.0; 3], "the wrong type is not used");
        Memo::put(&None, vec![1.0f32; 3]);
        assert_eq!(Memo::take_or(&None::<Memo>, 3, made), [9.0; 3], "no memo: built");
    }
}
