//! The memory-bound half of a convolution: unfolding image patches into matrix columns
//! (im2col), folding them back with sums (col2im), and moving channels between the NCHW
//! layout of tensors and the channel-major [C, N·H·W] layout of matrix operands.

use rayon::prelude::*;

use super::conv::Geometry;
use super::gemm::Element;

/// The two sides of one convolution: a `big` image of `channels` × (H, W) and the
/// `small` grid (H', W') of kernel positions over it, for a batch of `n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub n: usize,
    pub channels: usize,
    pub big: (usize, usize),
    pub small: (usize, usize),
    pub g: Geometry,
}

impl Frame {
    fn big_len(&self) -> usize {
        self.big.0 * self.big.1
    }

    fn small_len(&self) -> usize {
        self.small.0 * self.small.1
    }

    /// Rows of the unfolded matrix: one per (channel, kernel row, kernel column).
    pub fn rows(&self) -> usize {
        self.channels * self.g.k * self.g.k
    }

    /// Columns of the unfolded matrix: one per (sample, output position).
    pub fn cols(&self) -> usize {
        self.n * self.small_len()
    }

    /// For kernel offset `kk` along one axis, the output positions that land inside the
    /// image (`lo..hi`) and the image index of position `o` (`o·stride + kk - padding`).
    fn valid(&self, kk: usize, big: usize, small: usize) -> (usize, usize) {
        let (s, p) = (self.g.stride, self.g.padding);
        // o·s + kk ≥ p  and  o·s + kk - p < big
        let lo = p.saturating_sub(kk).div_ceil(s);
        let hi = if big + p > kk { ((big + p - kk - 1) / s + 1).min(small) } else { 0 };
        (lo, hi.max(lo))
    }
}

/// x [N, C, H, W] → [C·k·k, N·H'·W']: column (n, y', x') holds the patch under the kernel
/// at output position (y', x'), zeros where it hangs over the padding.
pub fn im2col<T: Element>(x: &[T], f: &Frame) -> Vec<T> {
    debug_assert_eq!(x.len(), f.n * f.channels * f.big_len());
    let (k, s, p) = (f.g.k, f.g.stride, f.g.padding);
    let ((h, w), (oh, ow)) = (f.big, f.small);
    let mut out = vec![T::zero(); f.rows() * f.cols()];
    if out.is_empty() {
        return out;
    }
    out.par_chunks_mut(f.cols()).enumerate().for_each(|(r, row)| {
        let (c, ky, kx) = (r / (k * k), (r / k) % k, r % k);
        let (y_lo, y_hi) = f.valid(ky, h, oh);
        let (x_lo, x_hi) = f.valid(kx, w, ow);
        for (n, dst) in row.chunks_exact_mut(oh * ow).enumerate() {
            let src = &x[(n * f.channels + c) * h * w..][..h * w];
            for oy in y_lo..y_hi {
                let src = &src[(oy * s + ky - p) * w..][..w];
                let dst = &mut dst[oy * ow..][..ow];
                let start = x_lo * s + kx - p;
                if s == 1 {
                    dst[x_lo..x_hi].copy_from_slice(&src[start..start + (x_hi - x_lo)]);
                } else {
                    for (d, v) in dst[x_lo..x_hi].iter_mut().zip(src[start..].iter().step_by(s)) {
                        *d = *v;
                    }
                }
            }
        }
    });
    out
}

/// The adjoint of [`im2col`]: [C·k·k, N·H'·W'] → x [N, C, H, W], each column's values
/// added back where its patch came from.
pub fn col2im<T: Element>(cols: &[T], f: &Frame) -> Vec<T> {
    debug_assert_eq!(cols.len(), f.rows() * f.cols());
    let (k, s, p) = (f.g.k, f.g.stride, f.g.padding);
    let ((h, w), (oh, ow)) = (f.big, f.small);
    let mut out = vec![T::zero(); f.n * f.channels * f.big_len()];
    if out.is_empty() {
        return out;
    }
    out.par_chunks_mut(h * w).enumerate().for_each(|(i, img)| {
        let (n, c) = (i / f.channels, i % f.channels);
        for ky in 0..k {
            let (y_lo, y_hi) = f.valid(ky, h, oh);
            for kx in 0..k {
                let (x_lo, x_hi) = f.valid(kx, w, ow);
                let row = &cols[((c * k + ky) * k + kx) * f.cols() + n * oh * ow..][..oh * ow];
                for oy in y_lo..y_hi {
                    let src = &row[oy * ow..][..ow];
                    let dst = &mut img[(oy * s + ky - p) * w..][..w];
                    for (d, v) in dst[x_lo * s + kx - p..].iter_mut().step_by(s).zip(&src[x_lo..x_hi]) {
                        *d += *v;
                    }
                }
            }
        }
    });
    out
}

/// [N, C, P] → [C, N·P].
pub fn to_channel_major<T: Element>(x: &[T], n: usize, c: usize) -> Vec<T> {
    let p = x.len() / (n * c).max(1);
    let mut out = vec![T::zero(); x.len()];
    if out.is_empty() {
        return out;
    }
    out.par_chunks_mut(n * p).enumerate().for_each(|(ci, dst)| {
        for (ni, d) in dst.chunks_exact_mut(p).enumerate() {
            d.copy_from_slice(&x[(ni * c + ci) * p..][..p]);
        }
    });
    out
}

/// [C, N·P] → [N, C, P].
pub fn from_channel_major<T: Element>(x: &[T], n: usize, c: usize) -> Vec<T> {
    let p = x.len() / (n * c).max(1);
    let mut out = vec![T::zero(); x.len()];
    if out.is_empty() {
        return out;
    }
    out.par_chunks_mut(c * p).enumerate().for_each(|(ni, dst)| {
        for (ci, d) in dst.chunks_exact_mut(p).enumerate() {
            d.copy_from_slice(&x[(ci * n + ni) * p..][..p]);
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: usize, channels: usize, big: (usize, usize), k: usize, stride: usize, padding: usize) -> Frame {
        let g = Geometry::new(k, stride, padding).unwrap();
        Frame { n, channels, big, small: (g.small(big.0).unwrap(), g.small(big.1).unwrap()), g }
    }

    /// im2col by the definition, one element at a time.
    fn naive_im2col(x: &[f64], f: &Frame) -> Vec<f64> {
        let (k, s, p) = (f.g.k as isize, f.g.stride as isize, f.g.padding as isize);
        let ((h, w), (oh, ow)) = (f.big, f.small);
        let mut out = vec![0.0; f.rows() * f.cols()];
        for c in 0..f.channels {
            for ky in 0..k {
                for kx in 0..k {
                    for n in 0..f.n {
                        for oy in 0..oh {
                            for ox in 0..ow {
                                let (y, xx) = (oy as isize * s + ky - p, ox as isize * s + kx - p);
                                if (0..h as isize).contains(&y) && (0..w as isize).contains(&xx) {
                                    let r = (c * f.g.k + ky as usize) * f.g.k + kx as usize;
                                    out[r * f.cols() + (n * oh + oy) * ow + ox] =
                                        x[((n * f.channels + c) * h + y as usize) * w + xx as usize];
                                }
                            }
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn im2col_matches_the_definition_and_col2im_is_its_adjoint() {
        // Odd sizes, non-square, stride 1–3, padding 0–2, kernels 1–5.
        for (i, &(n, c, big, k, s, p)) in [
            (1, 1, (5, 5), 3, 1, 1),
            (2, 3, (7, 6), 4, 2, 1),
            (3, 2, (9, 4), 4, 1, 0),
            (1, 2, (6, 8), 5, 3, 2),
            (2, 1, (4, 4), 1, 2, 0),
            (2, 2, (3, 5), 3, 2, 2),
        ]
        .iter()
        .enumerate()
        {
            let f = frame(n, c, big, k, s, p);
            let x: Vec<f64> = (0..n * c * big.0 * big.1).map(|v| ((v * 7 + i) as f64).sin()).collect();
            assert_eq!(im2col(&x, &f), naive_im2col(&x, &f), "im2col {f:?}");
            // <im2col(x), y> == <x, col2im(y)> for any y.
            let y: Vec<f64> = (0..f.rows() * f.cols()).map(|v| ((v * 3 + 1) as f64).cos()).collect();
            let lhs: f64 = im2col(&x, &f).iter().zip(&y).map(|(a, b)| a * b).sum();
            let rhs: f64 = x.iter().zip(col2im(&y, &f)).map(|(a, b)| a * b).sum();
            assert!((lhs - rhs).abs() < 1e-9, "col2im is not the adjoint for {f:?}: {lhs} vs {rhs}");
        }
    }

    #[test]
    fn channel_major_round_trips() {
        let x: Vec<f32> = (0..2 * 3 * 5).map(|v| v as f32).collect();
        let cm = to_channel_major(&x, 2, 3);
        assert_eq!(&cm[..10], &[0., 1., 2., 3., 4., 15., 16., 17., 18., 19.]);
        assert_eq!(from_channel_major(&cm, 2, 3), x);
    }
}
