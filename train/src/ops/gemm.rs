//! A safe face on the `gemm` crate: one thread's product of strided operands into a
//! row-major destination.

use gemm::Parallelism;

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

    /// Columns `lo..hi`, without copying.
    pub fn cols(self, lo: usize, hi: usize) -> Self {
        assert!(lo <= hi && hi <= self.cols, "columns {lo}..{hi} of {}", self.cols);
        Self { data: &self.data[lo * self.col_stride..], cols: hi - lo, ..self }
    }
}

/// candle's floating-point element types (f32, f64): what the GEMM kernels take, with the
/// few functions the CPU code around them needs, computed as candle computes them.
pub trait Element: candle_core::WithDType {
    fn sqrt(self) -> Self;
    fn tanh(self) -> Self;
    fn exp(self) -> Self;
}

macro_rules! element {
    ($($t:ty),*) => {$(
        impl Element for $t {
            fn sqrt(self) -> Self { <$t>::sqrt(self) }
            fn tanh(self) -> Self { <$t>::tanh(self) }
            fn exp(self) -> Self { <$t>::exp(self) }
        }
    )*};
}
element!(f32, f64);

/// `dst = a · b`, or `dst += a · b` when `accumulate`, on the calling thread. `dst` is
/// row-major with `ld` values between the starts of its rows (the product's width or more,
/// so a result can land directly inside a bigger array).
///
/// Single-threaded on purpose: the convolutions run one group of images per thread, which
/// keeps each group's columns in that core's cache and needs no synchronisation inside
/// the product (the gemm crate's own threads meet once per block of the reduction).
pub fn gemm_into<T: Element>(dst: &mut [T], ld: usize, a: Mat<T>, b: Mat<T>, accumulate: bool) {
    let (m, n, k) = (a.rows, b.cols, a.cols);
    assert_eq!(k, b.rows, "matrix product of mismatched shapes");
    assert!(n <= ld, "destination rows shorter than the product");
    if m == 0 || n == 0 {
        return;
    }
    assert!(dst.len() >= (m - 1) * ld + n, "destination too small for the product");
    if k == 0 {
        if !accumulate {
            dst.chunks_mut(ld).take(m).for_each(|row| row[..n].fill(T::zero()));
        }
        return;
    }
    // The views are in bounds (their shapes were checked against the data by `Mat::new`,
    // and transposes keep them), and `dst` holds every (i, j) at i·ld + j (checked above).
    let s = |x: usize| x as isize;
    super::profile::add_flop(2 * (m * n * k) as u64);
    super::profile::timed(super::profile::Work::Gemm, || unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            s(ld),
            accumulate,
            a.data.as_ptr(),
            s(a.col_stride),
            s(a.row_stride),
            b.data.as_ptr(),
            s(b.col_stride),
            s(b.row_stride),
            T::one(),
            T::one(),
            false,
            false,
            false,
            Parallelism::None,
        )
    });
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
    fn products_match_the_textbook_loop_with_views_strides_and_accumulation() {
        let (m, n, k) = (7, 5, 3);
        let a: Vec<f64> = (0..m * k).map(|i| (i as f64).sin()).collect();
        let b: Vec<f64> = (0..k * n).map(|i| (i as f64).cos()).collect();
        let expect = naive(&a, &b, m, n, k);
        let close = |got: &[f64], want: &[f64]| got.iter().zip(want).all(|(g, e)| (g - e).abs() < 1e-12);

        // Overwrites whatever was there.
        let mut c = vec![f64::NAN; m * n];
        gemm_into(&mut c, n, Mat::new(&a, m, k), Mat::new(&b, k, n), false);
        assert!(close(&c, &expect), "{c:?}");
        // (bᵀ)ᵀ is b: a transposed view of a transposed copy gives the same product.
        let bt: Vec<f64> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        let mut c2 = vec![0.0; m * n];
        gemm_into(&mut c2, n, Mat::new(&a, m, k), Mat::new(&bt, n, k).t(), false);
        assert!(close(&c2, &expect));
        // Accumulates: twice the product.
        gemm_into(&mut c2, n, Mat::new(&a, m, k), Mat::new(&b, k, n), true);
        assert!(close(&c2, &expect.iter().map(|v| 2.0 * v).collect::<Vec<_>>()));
        // Into a wider array: rows `ld` apart, the values between them untouched.
        let ld = n + 2;
        let mut wide = vec![-1.0; (m - 1) * ld + n];
        gemm_into(&mut wide, ld, Mat::new(&a, m, k), Mat::new(&b, k, n), false);
        for i in 0..m {
            assert!(close(&wide[i * ld..i * ld + n], &expect[i * n..(i + 1) * n]), "row {i}");
            if i + 1 < m {
                assert_eq!(&wide[i * ld + n..(i + 1) * ld], &[-1.0, -1.0], "row {i}'s gap");
            }
        }
        // An empty reduction is a zero product.
        let mut z = vec![5.0; 4];
        gemm_into(&mut z, 2, Mat::new(&[], 2, 0), Mat::new(&[], 0, 2), false);
        assert_eq!(z, [0.0; 4]);
    }
}
