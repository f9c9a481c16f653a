//! A safe face on the `gemm` crate: row-major results from strided operands.

use gemm::Parallelism;
use rayon::prelude::*;

/// A read-only matrix view: element (i, j) is `data[i·row_stride + j·col_stride]`.
#[derive(Clone, Copy)]
pub struct Mat<'a, T> {
    data: &'a [T],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a, T> Mat<'a, T> {
    /// A contiguous row-major `rows × cols` matrix.
    pub fn new(data: &'a [T], rows: usize, cols: usize) -> Self {
        assert_eq!(data.len(), rows * cols, "matrix data does not match its shape");
        Self { data, rows, cols, row_stride: cols, col_stride: 1 }
    }

    /// The transpose, without copying.
    pub fn t(self) -> Self {
        Self { rows: self.cols, cols: self.rows, row_stride: self.col_stride, col_stride: self.row_stride, ..self }
    }
}

/// Element types the GEMM kernels take (candle's f32 and f64).
pub trait Element: candle_core::WithDType {}
impl Element for f32 {}
impl Element for f64 {}

impl<T> Mat<'_, T> {
    /// Columns `lo..hi`, without copying.
    fn cols(self, lo: usize, hi: usize) -> Self {
        Self { data: &self.data[lo * self.col_stride..], cols: hi - lo, ..self }
    }

    /// Rows `lo..hi`, without copying.
    fn rows(self, lo: usize, hi: usize) -> Self {
        Self { data: &self.data[lo * self.row_stride..], rows: hi - lo, ..self }
    }
}

/// a · b as a new row-major matrix, on all of rayon's threads.
pub fn matmul<T: Element>(a: Mat<T>, b: Mat<T>) -> Vec<T> {
    assert_eq!(a.cols, b.rows, "matrix product of mismatched shapes");
    let threads = rayon::current_num_threads();
    // A reduction much longer than the result is wide (a weight gradient sums over every
    // pixel of the batch): the gemm crate would synchronise its threads once per block of
    // the reduction, so each thread takes a share of the reduction instead.
    if threads > 1 && a.cols >= 4 * a.rows.max(b.cols) && a.cols >= 256 * threads {
        return matmul_split(a, b, threads);
    }
    product(a, b, Parallelism::Rayon(threads))
}

/// a · b as the sum of `parts` products over slices of the reduction, one per rayon task.
pub fn matmul_split<T: Element>(a: Mat<T>, b: Mat<T>, parts: usize) -> Vec<T> {
    assert_eq!(a.cols, b.rows, "matrix product of mismatched shapes");
    let k = a.cols;
    let partial = |t: usize| {
        let (lo, hi) = (k * t / parts, k * (t + 1) / parts);
        product(a.cols(lo, hi), b.rows(lo, hi), Parallelism::None)
    };
    (0..parts.max(1)).into_par_iter().map(partial).reduce_with(add).unwrap_or_else(|| product(a, b, Parallelism::None))
}

fn add<T: Element>(mut x: Vec<T>, y: Vec<T>) -> Vec<T> {
    for (x, y) in x.iter_mut().zip(y) {
        *x += y;
    }
    x
}

fn product<T: Element>(a: Mat<T>, b: Mat<T>, parallelism: Parallelism) -> Vec<T> {
    let (m, n, k) = (a.rows, b.cols, a.cols);
    if m == 0 || n == 0 || k == 0 {
        return vec![T::zero(); m * n];
    }
    // Every element is written by the product (read_dst is false), so zeroing first would
    // be a wasted pass over the largest buffers of a training step.
    let mut out = Vec::with_capacity(m * n);
    // The views are in bounds (their shapes were checked against the data by `new`, and
    // sub-views only shrink them), and `out` has room for m·n values, all of which gemm
    // writes before `set_len`.
    let s = |x: usize| x as isize;
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            s(n),
            false,
            a.data.as_ptr(),
            s(a.col_stride),
            s(a.row_stride),
            b.data.as_ptr(),
            s(b.col_stride),
            s(b.row_stride),
            T::zero(),
            T::one(),
            false,
            false,
            false,
            parallelism,
        );
        out.set_len(m * n);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f64], b: &[f64], m: usize, n: usize, k: usize) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|l| a[i * k + l] * b[l * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn products_and_transposed_views_match_the_textbook_loop() {
        let (m, n, k) = (7, 5, 3);
        let a: Vec<f64> = (0..m * k).map(|i| (i as f64).sin()).collect();
        let b: Vec<f64> = (0..k * n).map(|i| (i as f64).cos()).collect();
        let expect = naive(&a, &b, m, n, k);
        let close = |got: Vec<f64>| got.iter().zip(&expect).all(|(g, e)| (g - e).abs() < 1e-12);
        assert!(close(matmul(Mat::new(&a, m, k), Mat::new(&b, k, n))));
        // (bᵀ)ᵀ is b: a transposed view of a transposed copy gives the same product.
        let bt: Vec<f64> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        assert!(close(matmul(Mat::new(&a, m, k), Mat::new(&bt, n, k).t())));
        // Split over the reduction, evenly or not, and into more parts than it is long.
        for parts in [1, 2, 3, 5] {
            assert!(close(matmul_split(Mat::new(&a, m, k), Mat::new(&b, k, n), parts)), "{parts} parts");
            assert!(close(matmul_split(Mat::new(&a, m, k), Mat::new(&bt, n, k).t(), parts)), "{parts} parts, bᵀ");
        }
        // A long reduction, split by `matmul` itself when there is more than one thread.
        let (m, n, k) = (3, 2, 2000);
        let a: Vec<f64> = (0..m * k).map(|i| (i as f64 * 0.01).sin()).collect();
        let b: Vec<f64> = (0..k * n).map(|i| (i as f64 * 0.02).cos()).collect();
        let expect = naive(&a, &b, m, n, k);
        let got = matmul(Mat::new(&a, m, k), Mat::new(&b, k, n));
        assert!(got.iter().zip(&expect).all(|(g, e)| (g - e).abs() < 1e-9), "{got:?} vs {expect:?}");
    }
}
