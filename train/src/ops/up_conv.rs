//! Nearest upsampling ×2 and then a 3×3 convolution (stride 1, padding 1), computed on
//! the small map: each of the four output phases (even or odd row, even or odd column)
//! reads two rows and two columns of the small map, so it is a 2×2 convolution whose taps
//! are the 3×3 kernel's summed over the rows and columns that read the same small pixel.
//! All four phases are one convolution (4·out channels, 2×2, padding 1, (h+1)×(w+1)
//! outputs), interleaved: 16 products per small pixel and output channel instead of 36,
//! and no upsampled copy. The same function as upsampling then the convolution, up to
//! rounding (`crate::nn::conv`, which runs it, checks this against candle's ops).

use rayon::prelude::*;

use super::Element;

/// Which of the 2×2 taps 3×3 tap `k` (0–2) reads, for phase `a` (0 even, 1 odd): the
/// upsampled row 2i + a − 1 + k is small row i − 1 + tap (phase 0) or i + tap (phase 1).
fn tap(a: usize, k: usize) -> usize {
    [[0, 1, 1], [0, 0, 1]][a][k]
}

/// The four phases' 2×2 kernels [4·o, c, 2, 2] (phase 2a + b first) from the 3×3 one [o, c, 3, 3].
pub fn fold<T: Element>(w: &[T], o: usize, c: usize) -> Vec<T> {
    let mut f = vec![T::zero(); 4 * o * c * 4];
    for (a, b) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
        for oc in 0..o * c {
            let w = &w[oc * 9..oc * 9 + 9];
            let dst = &mut f[((2 * a + b) * o * c + oc) * 4..][..4];
            for ky in 0..3 {
                for kx in 0..3 {
                    dst[tap(a, ky) * 2 + tap(b, kx)] += w[ky * 3 + kx];
                }
            }
        }
    }
    f
}

/// [`fold`]'s adjoint: the 3×3 kernel's gradient from the phases' [o, c, 3, 3].
pub fn unfold<T: Element>(df: &[T], o: usize, c: usize) -> Vec<T> {
    let mut dw = vec![T::zero(); o * c * 9];
    for (a, b) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
        for oc in 0..o * c {
            let src = &df[((2 * a + b) * o * c + oc) * 4..][..4];
            let w = &mut dw[oc * 9..oc * 9 + 9];
            for ky in 0..3 {
                for kx in 0..3 {
                    w[ky * 3 + kx] += src[tap(a, ky) * 2 + tap(b, kx)];
                }
            }
        }
    }
    dw
}

/// The phases' outputs [N, 4·o, h+1, w+1] → the picture [N, o, 2h, 2w]:
/// y[2i+a, 2j+b] = phase (a, b) at (i+a, j+b).
pub fn interleave<T: Element>(p: &[T], p_dims: &[usize], o: usize) -> Vec<T> {
    let (n, h1, w1) = (p_dims[0], p_dims[2], p_dims[3]);
    let (h, w) = (h1 - 1, w1 - 1);
    let mut y = vec![T::zero(); n * o * 4 * h * w];
    y.par_chunks_mut(o * 4 * h * w).zip(p.par_chunks(4 * o * h1 * w1)).for_each(|(img, src)| {
        for (phase, src) in src.chunks(o * h1 * w1).enumerate() {
            let (a, b) = (phase / 2, phase % 2);
            for (plane, src) in img.chunks_mut(4 * h * w).zip(src.chunks(h1 * w1)) {
                for i in 0..h {
                    let row = &mut plane[(2 * i + a) * 2 * w..][..2 * w];
                    let from = &src[(i + a) * w1 + b..][..w];
                    for (j, &v) in from.iter().enumerate() {
                        row[2 * j + b] = v;
                    }
                }
            }
        }
    });
    y
}

/// [`interleave`]'s adjoint: the phases' gradient (zero where no output reads them).
pub fn deinterleave<T: Element>(dy: &[T], p_dims: &[usize]) -> Vec<T> {
    let (n, o4, h1, w1) = (p_dims[0], p_dims[1], p_dims[2], p_dims[3]);
    let (o, h, w) = (o4 / 4, h1 - 1, w1 - 1);
    let mut dp = vec![T::zero(); n * o4 * h1 * w1];
    dp.par_chunks_mut(o4 * h1 * w1).zip(dy.par_chunks(o * 4 * h * w)).for_each(|(img, src)| {
        for (phase, dst) in img.chunks_mut(o * h1 * w1).enumerate() {
            let (a, b) = (phase / 2, phase % 2);
            for (plane, src) in dst.chunks_mut(h1 * w1).zip(src.chunks(4 * h * w)) {
                for i in 0..h {
                    let row = &src[(2 * i + a) * 2 * w..][..2 * w];
                    let to = &mut plane[(i + a) * w1 + b..][..w];
                    for (j, v) in to.iter_mut().enumerate() {
                        *v = row[2 * j + b];
                    }
                }
            }
        }
    });
    dp
}
