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

/// Calls `f(fi, wi)` for every 2×2 tap `fi` of the phases' kernels [4·o, c, 2, 2] and
/// 3×3 tap `wi` [o, c, 3, 3] that it sums, in one fixed order: [`fold`] and its adjoint
/// [`unfold`] walk the same pairs, one adding w[wi] to f[fi], the other df[fi] to dw[wi].
fn pairs(o: usize, c: usize, mut f: impl FnMut(usize, usize)) {
    for (a, b) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
        for oc in 0..o * c {
            for ky in 0..3 {
                for kx in 0..3 {
                    f(((2 * a + b) * o * c + oc) * 4 + tap(a, ky) * 2 + tap(b, kx), oc * 9 + ky * 3 + kx);
                }
            }
        }
    }
}

/// The four phases' 2×2 kernels [4·o, c, 2, 2] (phase 2a + b first) from the 3×3 one [o, c, 3, 3].
pub fn fold<T: Element>(w: &[T], o: usize, c: usize) -> Vec<T> {
    let mut f = vec![T::zero(); 4 * o * c * 4];
    pairs(o, c, |fi, wi| f[fi] += w[wi]);
    f
}

/// [`fold`]'s adjoint: the 3×3 kernel's gradient from the phases' [o, c, 3, 3].
pub fn unfold<T: Element>(df: &[T], o: usize, c: usize) -> Vec<T> {
    let mut dw = vec![T::zero(); o * c * 9];
    pairs(o, c, |fi, wi| dw[wi] += df[fi]);
    dw
}

/// The rows [`interleave`] copies within one image, phase (a, b) by phase, channel by
/// channel, small row i by row: calls `f(b, picture, phase)` with the offset of row 2i + a
/// in the picture [o, 2h, 2w] and that of row i + a, from column b, in the phases
/// [4·o, h+1, w+1]. [`deinterleave`] copies the same rows back.
fn rows(o: usize, h: usize, w: usize, mut f: impl FnMut(usize, usize, usize)) {
    let (h1, w1) = (h + 1, w + 1);
    for phase in 0..4 {
        let (a, b) = (phase / 2, phase % 2);
        for ch in 0..o {
            for i in 0..h {
                f(b, (ch * 2 * h + 2 * i + a) * 2 * w, ((phase * o + ch) * h1 + i + a) * w1 + b);
            }
        }
    }
}

/// The phases' outputs [N, 4·o, h+1, w+1] → the picture [N, o, 2h, 2w]:
/// y[2i+a, 2j+b] = phase (a, b) at (i+a, j+b).
pub fn interleave<T: Element>(p: &[T], p_dims: &[usize], o: usize) -> Vec<T> {
    let (n, h1, w1) = (p_dims[0], p_dims[2], p_dims[3]);
    let (h, w) = (h1 - 1, w1 - 1);
    let mut y = vec![T::zero(); n * o * 4 * h * w];
    y.par_chunks_mut(o * 4 * h * w).zip(p.par_chunks(4 * o * h1 * w1)).for_each(|(img, src)| {
        rows(o, h, w, |b, to, from| {
            let row = &mut img[to..][..2 * w];
            for (j, &v) in src[from..][..w].iter().enumerate() {
                row[2 * j + b] = v;
            }
        })
    });
    y
}

/// [`interleave`]'s adjoint: the phases' gradient (zero where no output reads them).
pub fn deinterleave<T: Element>(dy: &[T], p_dims: &[usize]) -> Vec<T> {
    let (n, o4, h1, w1) = (p_dims[0], p_dims[1], p_dims[2], p_dims[3]);
    let (o, h, w) = (o4 / 4, h1 - 1, w1 - 1);
    let mut dp = vec![T::zero(); n * o4 * h1 * w1];
    dp.par_chunks_mut(o4 * h1 * w1).zip(dy.par_chunks(o * 4 * h * w)).for_each(|(img, src)| {
        rows(o, h, w, |b, from, to| {
            let row = &src[from..][..2 * w];
            for (j, v) in img[to..][..w].iter_mut().enumerate() {
                *v = row[2 * j + b];
            }
        })
    });
    dp
}
