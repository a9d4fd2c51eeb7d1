//! # apex-cpu
//!
//! The reference [`Backend`] for APEX: tensors are ndarray buffers, elementwise
//! work goes through ndarray views, and every matrix product goes through the
//! [`gemm`](https://docs.rs/gemm) crate, which takes arbitrary row and column
//! strides (so the Monarch stride permutations cost nothing) and reaches
//! BLAS-class throughput on x86-64 with rayon threads.
//!
//! `CpuBackend<f32>` is what users train with; `CpuBackend<f64>` exists for the
//! finite-difference gradient checks.
//!
//! ```
//! use apex_core::{ops, Backend, MatView};
//! use apex_cpu::CpuBackend;
//!
//! let cpu = CpuBackend::<f32>::new();
//! let a = cpu.upload(&[1.0, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
//! let v = MatView::full(2, 2);
//! let c = ops::matmul(&cpu, &a, v, &a, v.t()).unwrap(); // A·Aᵀ
//! assert_eq!(cpu.download(&c).unwrap(), vec![5.0, 11.0, 11.0, 25.0]);
//! ```

#[cfg(feature = "openblas")]
mod blas;
mod tensor;
mod transformer_ops;

/// The README's Rust examples run as doctests, so the README cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

pub use tensor::CpuTensor;

use apex_core::layout::{check_gemm, check_indices, check_same_dims};
use apex_core::{ApexError, Backend, BatchView, BinaryOp, Element, MatView, Result, UnaryOp};
use ndarray::{ArrayView2, ArrayViewMut2, ShapeBuilder, Zip};
use rayon::prelude::*;
use std::marker::PhantomData;

/// The ndarray/gemm reference backend, generic over f32 and f64.
#[derive(Clone, Debug, Default)]
pub struct CpuBackend<E> {
    _elem: PhantomData<E>,
}

impl<E> CpuBackend<E> {
    /// The backend; it holds no state (threads come from rayon's global pool).
    pub fn new() -> Self {
        CpuBackend { _elem: PhantomData }
    }
}

/// Below this many multiply-adds per entry, a batched GEMM runs its entries in
/// parallel, each single-threaded; above it each entry uses all threads.
const SMALL_GEMM_FLOPS: usize = 64 * 64 * 64;

/// Element types the CPU backend computes in (those the gemm crate, and with
/// the `openblas` feature cblas, multiply).
#[cfg(not(feature = "openblas"))]
pub trait CpuElement: Element {}
/// Element types the CPU backend computes in (those the gemm crate, and with
/// the `openblas` feature cblas, multiply).
#[cfg(feature = "openblas")]
pub trait CpuElement: Element + blas::BlasElement {}
impl CpuElement for f32 {}
impl CpuElement for f64 {}

/// Large single GEMMs go to OpenBLAS when the feature is on and strides allow.
#[cfg(feature = "openblas")]
const BLAS_MIN_FLOPS: usize = 32 * 32 * 32;

/// Elementwise maps at least this large run on rayon's threads (below it the
/// hand-off costs more than the work).
const PARALLEL_ELEMENTS: usize = 1 << 15;

/// `f(&mut y, x)` elementwise over two equal-shaped views.
fn for_each2<E: Element>(
    ys: &mut ArrayViewMut2<'_, E>,
    xs: &ArrayView2<'_, E>,
    f: impl Fn(&mut E, E) + Sync + Send,
) {
    let zip = Zip::from(ys).and(xs);
    if xs.len() >= PARALLEL_ELEMENTS {
        zip.par_for_each(|y, &a| f(y, a));
    } else {
        zip.for_each(|y, &a| f(y, a));
    }
}

/// `f(&mut y, x, z)` elementwise over three equal-shaped views.
fn for_each3<E: Element>(
    ys: &mut ArrayViewMut2<'_, E>,
    xs: &ArrayView2<'_, E>,
    zs: &ArrayView2<'_, E>,
    f: impl Fn(&mut E, E, E) + Sync + Send,
) {
    let zip = Zip::from(ys).and(xs).and(zs);
    if xs.len() >= PARALLEL_ELEMENTS {
        zip.par_for_each(|y, &a, &b| f(y, a, b));
    } else {
        zip.for_each(|y, &a, &b| f(y, a, b));
    }
}

/// `y = f(x)` elementwise over two equal-shaped views.
fn map_elements<E: Element>(
    ys: &mut ArrayViewMut2<'_, E>,
    xs: &ArrayView2<'_, E>,
    f: impl Fn(E) -> E + Sync + Send,
) {
    for_each2(ys, xs, |y, a| *y = f(a));
}

fn read_view<'a, E>(data: &'a [E], view: &MatView) -> ArrayView2<'a, E> {
    // Bounds were checked by the caller; an empty view needs no data.
    if view.rows == 0 || view.cols == 0 {
        return ArrayView2::from_shape((view.rows, view.cols), &data[..0]).expect("empty view");
    }
    ArrayView2::from_shape(
        (view.rows, view.cols).strides((view.row_stride, view.col_stride)),
        &data[view.offset..view.extent()],
    )
    .expect("checked view")
}

fn write_view<'a, E>(
    data: &'a mut [E],
    view: &MatView,
    op: &'static str,
) -> Result<ArrayViewMut2<'a, E>> {
    if view.rows == 0 || view.cols == 0 {
        return Ok(
            ArrayViewMut2::from_shape((view.rows, view.cols), &mut data[..0]).expect("empty view"),
        );
    }
    let end = view.extent();
    ArrayViewMut2::from_shape(
        (view.rows, view.cols).strides((view.row_stride, view.col_stride)),
        &mut data[view.offset..end],
    )
    .map_err(|e| {
        ApexError::config(
            format!("{op}.output_view"),
            format!("{e} (views that overlap themselves cannot be written)"),
        )
    })
}

/// Raw pointer wrapper so disjoint GEMM outputs can be written from rayon tasks.
#[derive(Clone, Copy)]
struct SendPtr<E>(*mut E);
unsafe impl<E> Send for SendPtr<E> {}
unsafe impl<E> Sync for SendPtr<E> {}

impl<E: CpuElement> Backend for CpuBackend<E> {
    type Elem = E;
    type Tensor = CpuTensor<E>;

    fn name(&self) -> String {
        format!("cpu-{}", E::NAME)
    }

    fn zeros(&self, shape: &[usize]) -> Result<CpuTensor<E>> {
        Ok(CpuTensor::zeros(shape))
    }

    fn upload(&self, data: &[E], shape: &[usize]) -> Result<CpuTensor<E>> {
        CpuTensor::from_vec(data.to_vec(), shape)
    }

    fn download(&self, tensor: &CpuTensor<E>) -> Result<Vec<E>> {
        Ok(tensor.data().to_vec())
    }

    fn shape<'t>(&self, tensor: &'t CpuTensor<E>) -> &'t [usize] {
        tensor.shape()
    }

    fn reshape(&self, tensor: &CpuTensor<E>, shape: &[usize]) -> Result<CpuTensor<E>> {
        tensor.reshaped(shape)
    }

    fn gemm(
        &self,
        batch: usize,
        alpha: E,
        a: &CpuTensor<E>,
        a_view: BatchView,
        b: &CpuTensor<E>,
        b_view: BatchView,
        beta: E,
        c: &mut CpuTensor<E>,
        c_view: BatchView,
    ) -> Result<()> {
        let (m, n, k) = check_gemm(batch, &a_view, a.len(), &b_view, b.len(), &c_view, c.len())?;
        if batch == 0 || m == 0 || n == 0 {
            return Ok(());
        }
        let a_ptr = SendPtr(a.data().as_ptr() as *mut E);
        let b_ptr = SendPtr(b.data().as_ptr() as *mut E);
        let c_ptr = SendPtr(c.data_mut().as_mut_ptr());
        let run_entry = |i: usize, parallelism: gemm::Parallelism| {
            let (av, bv, cv) = (a_view.entry(i), b_view.entry(i), c_view.entry(i));
            let (a_ptr, b_ptr, c_ptr) = (a_ptr, b_ptr, c_ptr);
            // SAFETY: check_gemm proved every entry's views lie inside their buffers,
            // and distinct batch entries of C do not overlap (batch_stride > 0 with
            // disjoint strides), so concurrent entries write disjoint elements.
            unsafe {
                let dst = c_ptr.0.add(cv.offset);
                if k == 0 {
                    for r in 0..m {
                        for col in 0..n {
                            let p = dst.add(r * cv.row_stride + col * cv.col_stride);
                            *p = if beta == E::ZERO { E::ZERO } else { beta * *p };
                        }
                    }
                    return;
                }
                gemm::gemm(
                    m,
                    n,
                    k,
                    dst,
                    cv.col_stride as isize,
                    cv.row_stride as isize,
                    beta != E::ZERO,
                    a_ptr.0.add(av.offset),
                    av.col_stride as isize,
                    av.row_stride as isize,
                    b_ptr.0.add(bv.offset),
                    bv.col_stride as isize,
                    bv.row_stride as isize,
                    beta,
                    alpha,
                    false,
                    false,
                    false,
                    parallelism,
                );
            }
        };
        #[cfg(feature = "openblas")]
        if k > 0 && m * n * k >= BLAS_MIN_FLOPS {
            let mut all = true;
            for i in 0..batch {
                let (av, bv, cv) = (a_view.entry(i), b_view.entry(i), c_view.entry(i));
                // SAFETY: check_gemm proved the views lie inside their buffers.
                all &= unsafe {
                    blas::try_gemm(
                        m, n, k, alpha, a_ptr.0, &av, b_ptr.0, &bv, beta, c_ptr.0, &cv,
                    )
                };
                if !all {
                    // Entries share strides, so the first refusal refuses them all.
                    debug_assert_eq!(i, 0);
                    break;
                }
            }
            if all {
                return Ok(());
            }
        }
        if batch > 1 && m * n * k < SMALL_GEMM_FLOPS {
            (0..batch)
                .into_par_iter()
                .for_each(|i| run_entry(i, gemm::Parallelism::None));
        } else {
            for i in 0..batch {
                run_entry(i, gemm::Parallelism::Rayon(0));
            }
        }
        Ok(())
    }

    fn axpby(
        &self,
        alpha: E,
        x: &CpuTensor<E>,
        x_view: MatView,
        beta: E,
        y: &mut CpuTensor<E>,
        y_view: MatView,
    ) -> Result<()> {
        check_same_dims("axpby", &[(&x_view, x.len()), (&y_view, y.len())])?;
        let xs = read_view(x.data(), &x_view);
        let mut ys = write_view(y.data_mut(), &y_view, "axpby")?;
        if beta == E::ZERO {
            for_each2(&mut ys, &xs, |y, x| *y = alpha * x);
        } else {
            for_each2(&mut ys, &xs, |y, x| *y = alpha * x + beta * *y);
        }
        Ok(())
    }

    fn binary(
        &self,
        op: BinaryOp,
        x: &CpuTensor<E>,
        x_view: MatView,
        z: &CpuTensor<E>,
        z_view: MatView,
        beta: E,
        y: &mut CpuTensor<E>,
        y_view: MatView,
    ) -> Result<()> {
        check_same_dims(
            "binary",
            &[(&x_view, x.len()), (&z_view, z.len()), (&y_view, y.len())],
        )?;
        let xs = read_view(x.data(), &x_view);
        let zs = read_view(z.data(), &z_view);
        let mut ys = write_view(y.data_mut(), &y_view, "binary")?;
        // One monomorphised loop per op and β case (no per-element dispatch).
        fn run<E: Element>(
            ys: &mut ArrayViewMut2<'_, E>,
            xs: &ArrayView2<'_, E>,
            zs: &ArrayView2<'_, E>,
            beta: E,
            f: impl Fn(E, E) -> E + Sync + Send,
        ) {
            if beta == E::ZERO {
                for_each3(ys, xs, zs, |y, a, b| *y = f(a, b));
            } else {
                for_each3(ys, xs, zs, |y, a, b| *y = f(a, b) + beta * *y);
            }
        }
        match op {
            BinaryOp::Add => run(&mut ys, &xs, &zs, beta, |a, b| a + b),
            BinaryOp::Sub => run(&mut ys, &xs, &zs, beta, |a, b| a - b),
            BinaryOp::Mul => run(&mut ys, &xs, &zs, beta, |a, b| a * b),
            BinaryOp::Div => run(&mut ys, &xs, &zs, beta, |a, b| a / b),
        }
        Ok(())
    }

    fn scale_columns(
        &self,
        x: &CpuTensor<E>,
        x_view: MatView,
        v: &CpuTensor<E>,
        v_offset: usize,
        beta: E,
        y: &mut CpuTensor<E>,
        y_view: MatView,
    ) -> Result<()> {
        check_same_dims("scale_columns", &[(&x_view, x.len()), (&y_view, y.len())])?;
        let vec_view = MatView::row_vector(x_view.cols);
        let vec_view = MatView {
            offset: v_offset,
            ..vec_view
        };
        vec_view.check_fits("scale_columns", v.len())?;
        let scale = &v.data()[v_offset..v_offset + x_view.cols];
        let xs = read_view(x.data(), &x_view);
        let mut ys = write_view(y.data_mut(), &y_view, "scale_columns")?;
        // The scale vector broadcast down the rows.
        let scale_row = ndarray::ArrayView1::from(scale);
        let scales = scale_row
            .broadcast((x_view.rows, x_view.cols))
            .expect("a row vector broadcasts to its rows");
        if beta == E::ZERO {
            for_each3(&mut ys, &xs, &scales, |y, a, s| *y = a * s);
        } else {
            for_each3(&mut ys, &xs, &scales, |y, a, s| *y = a * s + beta * *y);
        }
        Ok(())
    }

    fn column_dot(
        &self,
        x: &CpuTensor<E>,
        x_view: MatView,
        z: &CpuTensor<E>,
        z_view: MatView,
        beta: E,
        out: &mut CpuTensor<E>,
        out_offset: usize,
    ) -> Result<()> {
        check_same_dims("column_dot", &[(&x_view, x.len()), (&z_view, z.len())])?;
        MatView {
            offset: out_offset,
            ..MatView::row_vector(x_view.cols)
        }
        .check_fits("column_dot", out.len())?;
        let xs = read_view(x.data(), &x_view);
        let zs = read_view(z.data(), &z_view);
        let mut sums = vec![E::ZERO; x_view.cols];
        for (x_row, z_row) in xs.rows().into_iter().zip(zs.rows()) {
            Zip::from(&mut sums[..])
                .and(&x_row)
                .and(&z_row)
                .for_each(|s, &a, &b| *s += a * b);
        }
        let dst = &mut out.data_mut()[out_offset..out_offset + x_view.cols];
        for (d, s) in dst.iter_mut().zip(sums) {
            *d = if beta == E::ZERO { s } else { s + beta * *d };
        }
        Ok(())
    }

    fn unary(
        &self,
        op: UnaryOp,
        x: &CpuTensor<E>,
        x_view: MatView,
        y: &mut CpuTensor<E>,
        y_view: MatView,
    ) -> Result<()> {
        check_same_dims("unary", &[(&x_view, x.len()), (&y_view, y.len())])?;
        let xs = read_view(x.data(), &x_view);
        let mut ys = write_view(y.data_mut(), &y_view, "unary")?;
        let one = E::ONE;
        // One monomorphised loop per op (no per-element dispatch).
        match op {
            UnaryOp::Silu => map_elements(&mut ys, &xs, move |a| a / (one + (-a).exp())),
            UnaryOp::SiluGrad => map_elements(&mut ys, &xs, move |a| {
                let s = one / (one + (-a).exp());
                s * (one + a * (one - s))
            }),
            UnaryOp::Sqrt => map_elements(&mut ys, &xs, |a| a.sqrt()),
            UnaryOp::Square => map_elements(&mut ys, &xs, |a| a * a),
            UnaryOp::Exp => map_elements(&mut ys, &xs, |a| a.exp()),
            UnaryOp::Neg => map_elements(&mut ys, &xs, |a| -a),
        }
        Ok(())
    }

    fn fill(&self, y: &mut CpuTensor<E>, y_view: MatView, value: E) -> Result<()> {
        y_view.check_fits("fill", y.len())?;
        write_view(y.data_mut(), &y_view, "fill")?.fill(value);
        Ok(())
    }

    fn gather_rows(&self, x: &CpuTensor<E>, index: &[usize]) -> Result<CpuTensor<E>> {
        let (rows, cols) = x.dims2("gather_rows")?;
        check_indices("gather_rows", index, rows)?;
        let data = x.data();
        let mut out = Vec::with_capacity(index.len() * cols);
        for &r in index {
            out.extend_from_slice(&data[r * cols..(r + 1) * cols]);
        }
        CpuTensor::from_vec(out, &[index.len(), cols])
    }

    fn gather_columns(&self, x: &CpuTensor<E>, index: &[usize]) -> Result<CpuTensor<E>> {
        let (rows, cols) = x.dims2("gather_columns")?;
        check_indices("gather_columns", index, cols)?;
        let data = x.data();
        let mut out = Vec::with_capacity(rows * index.len());
        for r in 0..rows {
            let row = &data[r * cols..(r + 1) * cols];
            out.extend(index.iter().map(|&c| row[c]));
        }
        CpuTensor::from_vec(out, &[rows, index.len()])
    }
}
