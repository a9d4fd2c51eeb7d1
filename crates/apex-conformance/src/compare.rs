//! The tolerance policy of spec §0.1 (as in llm.c): an element passes when
//! |got − want| ≤ atol + rtol·|want|, with atol = rtol·max|want|.

use crate::case::HostTensor;

/// The comparison of one tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorReport {
    pub name: String,
    pub max_abs_error: f64,
    pub max_rel_error: f64,
    /// Elements outside the tolerance.
    pub failures: usize,
    /// Set when shapes differ (then the errors are not meaningful).
    pub shape_mismatch: Option<(Vec<usize>, Vec<usize>)>,
    /// Set when the output was not produced at all.
    pub missing: bool,
}

impl TensorReport {
    pub fn passed(&self) -> bool {
        self.failures == 0 && self.shape_mismatch.is_none() && !self.missing
    }

    /// A report for an expected tensor the backend did not produce.
    pub fn missing(name: &str) -> Self {
        TensorReport {
            name: name.to_string(),
            max_abs_error: f64::NAN,
            max_rel_error: f64::NAN,
            failures: 0,
            shape_mismatch: None,
            missing: true,
        }
    }
}

/// Compares `got` with `want` at relative tolerance `rtol` (1e−4 for f32).
pub fn compare(name: &str, got: &HostTensor, want: &HostTensor, rtol: f64) -> TensorReport {
    if got.shape != want.shape {
        return TensorReport {
            name: name.to_string(),
            max_abs_error: f64::NAN,
            max_rel_error: f64::NAN,
            failures: want.data.len(),
            shape_mismatch: Some((want.shape.clone(), got.shape.clone())),
            missing: false,
        };
    }
    let scale = want.data.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let atol = rtol * scale;
    let mut report = TensorReport {
        name: name.to_string(),
        max_abs_error: 0.0,
        max_rel_error: 0.0,
        failures: 0,
        shape_mismatch: None,
        missing: false,
    };
    for (&g, &w) in got.data.iter().zip(&want.data) {
        let err = (g - w).abs();
        let within = err <= atol + rtol * w.abs(); // false for NaN
        if !within {
            report.failures += 1;
        }
        report.max_abs_error =
            report
                .max_abs_error
                .max(if err.is_nan() { f64::INFINITY } else { err });
        if w != 0.0 {
            report.max_rel_error = report.max_rel_error.max(err / w.abs());
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerance_scales_with_the_largest_expected_value() {
        let want = HostTensor::new(vec![1000.0, 0.0], &[2]);
        // 0.05 off on the zero entry is within atol = 1e-4 · 1000 = 0.1.
        let close = HostTensor::new(vec![1000.0, 0.05], &[2]);
        assert!(compare("t", &close, &want, 1e-4).passed());
        let far = HostTensor::new(vec![1000.0, 0.2], &[2]);
        assert_eq!(compare("t", &far, &want, 1e-4).failures, 1);
    }

    #[test]
    fn nan_and_shape_mismatch_fail() {
        let want = HostTensor::new(vec![1.0, 2.0], &[2]);
        let nan = HostTensor::new(vec![1.0, f64::NAN], &[2]);
        assert!(!compare("t", &nan, &want, 1e-4).passed());
        let other = HostTensor::new(vec![1.0, 2.0], &[1, 2]);
        assert!(compare("t", &other, &want, 1e-4).shape_mismatch.is_some());
    }
}
