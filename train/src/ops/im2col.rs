//! The memory-bound half of a convolution: unfolding image patches into matrix columns
//! (im2col), folding them back with sums (col2im), and moving channels between the NCHW
//! layout of tensors and the channel-major [C, N·H·W] layout of matrix operands.
//!
//! Each works on a few images at a time, into a buffer the caller owns and sized to stay
//! in a core's cache (see `conv.rs`): single-threaded, since the caller runs one group of
//! images per thread.

use std::ops::Range;

use super::conv::Geometry;
use super::gemm::Element;
use super::profile::{self, Work};

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
    /// Pixels of one channel of the big image.
    pub fn big_len(&self) -> usize {
        self.big.0 * self.big.1
    }

    /// Kernel positions over one image.
    pub fn small_len(&self) -> usize {
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

    /// Whether the kernel covers each whole image in its one position, without padding (a
    /// discriminator's last layer, a generator's first): the unfolded matrix is then the
    /// images themselves, [N, C·k·k] transposed, and needs no unfolding.
    pub fn whole(&self) -> bool {
        self.small == (1, 1) && self.g.padding == 0 && self.big == (self.g.k, self.g.k)
    }

    /// The same frame over `n` images.
    pub fn with_n(self, n: usize) -> Self {
        Self { n, ..self }
    }

    /// Panics (naming `op`) unless `images` is the length of this frame's x [N, C, H, W]
    /// and `cols` that of the unfolded rows of `channels`: [`im2col`] and [`col2im`] check
    /// their operands alike, one reading what the other writes.
    fn check(&self, op: &str, images: usize, channels: &Range<usize>, cols: usize) {
        assert_eq!(images, self.n * self.channels * self.big_len(), "{op}: images do not match the frame");
        assert!(channels.end <= self.channels, "{op}: channels {channels:?} of {}", self.channels);
        let rows = channels.len() * self.g.k * self.g.k;
        assert_eq!(cols, rows * self.cols(), "{op}: columns do not match the frame");
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

/// Where kernel offset `kk` lands in a strided image: position o·s + kk − p is row
/// (o + q)·s + r, so it is entry o + q of phase r (see [`Phases`]). Returns (r, q).
fn phase(kk: usize, s: usize, p: usize) -> (usize, isize) {
    let t = kk as isize - p as isize;
    (t.rem_euclid(s as isize) as usize, t.div_euclid(s as isize))
}

/// One image plane split by stride phase: phase (ry, rx) holds x[ry::s, rx::s] as a
/// `ph` × `pw` grid. A strided kernel offset then reads (or adds to) contiguous runs of
/// one phase instead of every s-th value, so the copies and sums vectorise.
struct Phases {
    s: usize,
    ph: usize,
    pw: usize,
}

impl Phases {
    fn new(f: &Frame) -> Self {
        let s = f.g.stride;
        Self { s, ph: f.big.0.div_ceil(s), pw: f.big.1.div_ceil(s) }
    }

    fn len(&self) -> usize {
        self.s * self.s * self.ph * self.pw
    }

    /// plane (h × w) → `out`, phase by phase.
    fn split<T: Element>(&self, plane: &[T], w: usize, out: &mut [T]) {
        let (s, pw) = (self.s, self.pw);
        for (y, row) in plane.chunks_exact(w).enumerate() {
            let at = |rx: usize| ((y % s * s + rx) * self.ph + y / s) * pw;
            if s == 2 && w.is_multiple_of(2) {
                // The common stride, as pairs: a loop the compiler turns into shuffles.
                let (even, odd) = out.split_at_mut(at(1));
                for ((e, o), pair) in even[at(0)..][..pw].iter_mut().zip(&mut odd[..pw]).zip(row.chunks_exact(2)) {
                    (*e, *o) = (pair[0], pair[1]);
                }
                continue;
            }
            for rx in 0..s.min(w) {
                let dst = &mut out[at(rx)..][..pw];
                for (d, v) in dst.iter_mut().zip(row[rx..].iter().step_by(s)) {
                    *d = *v;
                }
            }
        }
    }

    /// The adjoint: phases → plane (h × w), every value of which is written.
    fn merge<T: Element>(&self, phases: &[T], w: usize, plane: &mut [T]) {
        let (s, pw) = (self.s, self.pw);
        for (y, row) in plane.chunks_exact_mut(w).enumerate() {
            let at = |rx: usize| ((y % s * s + rx) * self.ph + y / s) * pw;
            if s == 2 && w.is_multiple_of(2) {
                let (even, odd) = (&phases[at(0)..][..pw], &phases[at(1)..][..pw]);
                for ((pair, &e), &o) in row.chunks_exact_mut(2).zip(even).zip(odd) {
                    (pair[0], pair[1]) = (e, o);
                }
                continue;
            }
            for rx in 0..s.min(w) {
                let src = &phases[at(rx)..][..pw];
                for (d, v) in row[rx..].iter_mut().step_by(s).zip(src) {
                    *d = *v;
                }
            }
        }
    }

    /// Where output position (oy, ox) of a kernel tap at phase offset (qy, qx) reads or
    /// adds, within the tap's phase (in range for the tap's valid positions).
    fn at(&self, oy: usize, qy: isize, ox: usize, qx: isize) -> usize {
        (oy as isize + qy) as usize * self.pw + (ox as isize + qx) as usize
    }

    /// Phase (ry, rx).
    fn of<'a, T>(&self, all: &'a [T], ry: usize, rx: usize) -> &'a [T] {
        &all[(ry * self.s + rx) * self.ph * self.pw..][..self.ph * self.pw]
    }

    fn of_mut<'a, T>(&self, all: &'a mut [T], ry: usize, rx: usize) -> &'a mut [T] {
        &mut all[(ry * self.s + rx) * self.ph * self.pw..][..self.ph * self.pw]
    }
}

/// x [N, C, H, W] → `out` [C'·k·k, N·H'·W'] for the C' channels in `channels`: column
/// (n, y', x') holds the patch under the kernel at output position (y', x'), zeros where
/// it hangs over the padding.
pub fn im2col<T: Element>(x: &[T], f: &Frame, channels: Range<usize>, out: &mut [T]) {
    profile::timed(Work::Im2col, || {
        f.check("im2col", x.len(), &channels, out.len());
        let kk = f.g.k * f.g.k;
        let (k, s, p) = (f.g.k, f.g.stride, f.g.padding);
        let ((h, w), (oh, ow)) = (f.big, f.small);
        if out.is_empty() {
            return;
        }
        let ph = Phases::new(f);
        let mut split = vec![T::zero(); if s > 1 { ph.len() } else { 0 }];
        for (n, c) in (0..f.n).flat_map(|n| channels.clone().map(move |c| (n, c))) {
            let plane = &x[(n * f.channels + c) * h * w..][..h * w];
            let row0 = (c - channels.start) * kk;
            let phases = match s {
                1 => plane,
                _ => {
                    ph.split(plane, w, &mut split);
                    &split[..]
                }
            };
            for ky in 0..k {
                let (y_lo, y_hi) = f.valid(ky, h, oh);
                let (ry, qy) = phase(ky, s, p);
                for kx in 0..k {
                    let (x_lo, x_hi) = f.valid(kx, w, ow);
                    let (rx, qx) = phase(kx, s, p);
                    let src = ph.of(phases, ry, rx);
                    let dst = &mut out[(row0 + ky * k + kx) * f.cols() + n * oh * ow..][..oh * ow];
                    if y_lo == y_hi || x_lo == x_hi {
                        dst.fill(T::zero());
                        continue;
                    }
                    // Rows of positions entirely over the padding.
                    dst[..y_lo * ow].fill(T::zero());
                    dst[y_hi * ow..].fill(T::zero());
                    let at = |oy, ox| ph.at(oy, qy, ox, qx);
                    if ph.pw == ow {
                        // Rows as long as the phase's: one run from the first valid position to
                        // the last, then the margins it crossed set back to zero.
                        let (lo, hi) = (y_lo * ow + x_lo, (y_hi - 1) * ow + x_hi);
                        dst[lo..hi].copy_from_slice(&src[at(y_lo, x_lo)..][..hi - lo]);
                    } else {
                        for oy in y_lo..y_hi {
                            dst[oy * ow + x_lo..oy * ow + x_hi].copy_from_slice(&src[at(oy, x_lo)..][..x_hi - x_lo]);
                        }
                    }
                    if x_lo > 0 || x_hi < ow {
                        for row in dst[y_lo * ow..y_hi * ow].chunks_exact_mut(ow) {
                            let (left, rest) = row.split_at_mut(x_lo);
                            for v in left.iter_mut().chain(&mut rest[x_hi - x_lo..]) {
                                *v = T::zero();
                            }
                        }
                    }
                }
            }
        }
    })
}

/// The adjoint of [`im2col`]: [C'·k·k, N·H'·W'] → the planes of `channels` in `out`
/// x [N, C, H, W], each column's values added back where its patch came from (those planes
/// are overwritten, the others left as they are).
pub fn col2im<T: Element>(cols: &[T], f: &Frame, channels: Range<usize>, out: &mut [T]) {
    profile::timed(Work::Col2im, || {
        f.check("col2im", out.len(), &channels, cols.len());
        let kk = f.g.k * f.g.k;
        let (k, s, p) = (f.g.k, f.g.stride, f.g.padding);
        let ((h, w), (oh, ow)) = (f.big, f.small);
        if out.is_empty() {
            return;
        }
        let ph = Phases::new(f);
        let mut sums = vec![T::zero(); if s > 1 { ph.len() } else { 0 }];
        for (n, c) in (0..f.n).flat_map(|n| channels.clone().map(move |c| (n, c))) {
            let plane = &mut out[(n * f.channels + c) * h * w..][..h * w];
            let row0 = (c - channels.start) * kk;
            let phases = match s {
                1 => &mut *plane,
                _ => &mut sums[..],
            };
            phases.fill(T::zero());
            for ky in 0..k {
                let (y_lo, y_hi) = f.valid(ky, h, oh);
                let (ry, qy) = phase(ky, s, p);
                for kx in 0..k {
                    let (x_lo, x_hi) = f.valid(kx, w, ow);
                    let (rx, qx) = phase(kx, s, p);
                    let dst = ph.of_mut(phases, ry, rx);
                    let src = &cols[(row0 + ky * k + kx) * f.cols() + n * oh * ow..][..oh * ow];
                    if y_lo == y_hi || x_lo == x_hi {
                        continue;
                    }
                    let at = |oy, ox| ph.at(oy, qy, ox, qx);
                    if ph.pw == ow && x_hi - x_lo == ow {
                        // Whole rows as long as the phase's: one run.
                        let (lo, hi) = (y_lo * ow, y_hi * ow);
                        add(&mut dst[at(y_lo, 0)..][..hi - lo], &src[lo..hi]);
                    } else {
                        for oy in y_lo..y_hi {
                            add(&mut dst[at(oy, x_lo)..][..x_hi - x_lo], &src[oy * ow + x_lo..oy * ow + x_hi]);
                        }
                    }
                }
            }
            if s > 1 {
                ph.merge(&sums, w, plane);
            }
        }
    })
}

/// dst += src, elementwise (also how `conv.rs` sums its threads' weight gradients).
#[inline(always)]
pub(super) fn add<T: Element>(dst: &mut [T], src: &[T]) {
    for (d, v) in dst.iter_mut().zip(src) {
        *d += *v;
    }
}

/// [A, B, P] → `out` [B, A, P]: images to channel-major ([N, C, P] → [C, N·P]) and back.
pub fn swap_outer<T: Element>(x: &[T], a: usize, b: usize, out: &mut [T]) {
    profile::timed(Work::Layout, || {
        assert_eq!(x.len(), out.len(), "swap_outer: sizes differ");
        let p = x.len() / (a * b).max(1);
        if p == 0 {
            return;
        }
        for (bi, dst) in out.chunks_exact_mut(a * p).enumerate() {
            for (ai, d) in dst.chunks_exact_mut(p).enumerate() {
                d.copy_from_slice(&x[(ai * b + bi) * p..][..p]);
            }
        }
    })
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
            // The buffers start dirty: every value must be written, the padding's zeros included.
            let mut cols = vec![f64::NAN; f.rows() * f.cols()];
            im2col(&x, &f, 0..c, &mut cols);
            assert_eq!(cols, naive_im2col(&x, &f), "im2col {f:?}");
            // A block of channels is the same rows of the whole.
            let kk = k * k;
            let mut last = vec![f64::NAN; kk * f.cols()];
            im2col(&x, &f, c - 1..c, &mut last);
            assert_eq!(last, cols[(c - 1) * kk * f.cols()..], "im2col of the last channel, {f:?}");
            // <im2col(x), y> == <x, col2im(y)> for any y.
            let y: Vec<f64> = (0..f.rows() * f.cols()).map(|v| ((v * 3 + 1) as f64).cos()).collect();
            let mut folded = vec![f64::NAN; x.len()];
            col2im(&y, &f, 0..c, &mut folded);
            // Channel by channel: the same planes.
            let mut by_channel = vec![f64::NAN; x.len()];
            for ch in 0..c {
                col2im(&y[ch * kk * f.cols()..(ch + 1) * kk * f.cols()], &f, ch..ch + 1, &mut by_channel);
            }
            assert_eq!(by_channel, folded, "col2im channel by channel, {f:?}");
            let lhs: f64 = cols.iter().zip(&y).map(|(a, b)| a * b).sum();
            let rhs: f64 = x.iter().zip(&folded).map(|(a, b)| a * b).sum();
            assert!((lhs - rhs).abs() < 1e-9, "col2im is not the adjoint for {f:?}: {lhs} vs {rhs}");
        }
    }

    #[test]
    fn channel_major_round_trips() {
        let x: Vec<f32> = (0..2 * 3 * 5).map(|v| v as f32).collect();
        let mut cm = vec![0.0; x.len()];
        swap_outer(&x, 2, 3, &mut cm);
        assert_eq!(&cm[..10], &[0., 1., 2., 3., 4., 15., 16., 17., 18., 19.]);
        let mut back = vec![0.0; x.len()];
        swap_outer(&cm, 3, 2, &mut back);
        assert_eq!(back, x);
    }
}
