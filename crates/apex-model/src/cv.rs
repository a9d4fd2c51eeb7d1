//! The CV regulariser (spec §6.6, gradient §5.6): the mean over the chosen
//! layers of the coefficient of variation of the FFN channel norms
//! `a_j = ‖SiLU(x·W_gᵀ)[:, j]‖₂`, added to the loss as `λ·R`. Minimising it
//! equalises channel magnitudes. The reference hard-codes layers 5..=25 of 32;
//! here the range is a fraction of depth ([`CvRegulariser::reference_range`]).

/// ε of the reference's `std / (mean + ε)`.
const EPS: f64 = 1e-7;

/// `λ` and the decoder layers `[first, end)` the regulariser covers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CvRegulariser {
    pub weight: f64,
    pub first: usize,
    pub end: usize,
}

impl CvRegulariser {
    /// The reference's layers 5..=25 of 32, scaled to `layers`.
    pub fn reference_range(weight: f64, layers: usize) -> Self {
        let scale = |i: f64| ((i * layers as f64) / 32.0).round() as usize;
        CvRegulariser {
            weight,
            first: scale(5.0).min(layers),
            end: scale(26.0).min(layers),
        }
    }

    /// Whether layer `index` is regularised.
    pub fn covers(&self, index: usize) -> bool {
        (self.first..self.end).contains(&index)
    }

    /// `R = Σ_layers CV(a_ℓ) / (count + ε)` over the covered layers, given every
    /// layer's channel norms.
    pub fn penalty<'a>(&self, norms: impl IntoIterator<Item = &'a [f64]>) -> f64 {
        let (sum, count) = norms
            .into_iter()
            .enumerate()
            .filter(|(i, _)| self.covers(*i))
            .fold((0.0, 0usize), |(s, c), (_, a)| {
                (s + coefficient_of_variation(a), c + 1)
            });
        sum / (count as f64 + EPS)
    }

    /// `λ / (count + ε)`: the factor each covered layer's ∂CV is scaled by.
    pub fn layer_weight(&self, layers: usize) -> f64 {
        let count = self.end.min(layers).saturating_sub(self.first);
        self.weight / (count as f64 + EPS)
    }
}

/// `σ/(μ + ε)` with the unbiased σ (n − 1).
pub fn coefficient_of_variation(a: &[f64]) -> f64 {
    let n = a.len() as f64;
    if a.len() < 2 {
        return 0.0;
    }
    let mean = a.iter().sum::<f64>() / n;
    let var = a.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    var.sqrt() / (mean + EPS)
}

/// `∂CV/∂a_i = (a_i − μ)/((n−1)·σ·(μ+ε)) − σ/(n·(μ+ε)²)` (spec §5.6); zero
/// when all entries are equal (σ = 0).
pub fn coefficient_of_variation_grad(a: &[f64]) -> Vec<f64> {
    let n = a.len() as f64;
    if a.len() < 2 {
        return vec![0.0; a.len()];
    }
    let mean = a.iter().sum::<f64>() / n;
    let sigma = (a.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    if sigma == 0.0 {
        return vec![0.0; a.len()];
    }
    let m = mean + EPS;
    a.iter()
        .map(|x| (x - mean) / ((n - 1.0) * sigma * m) - sigma / (n * m * m))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cv_gradient_matches_finite_differences() {
        let a = [0.5, 2.0, 1.25, 3.0, 0.75];
        let g = coefficient_of_variation_grad(&a);
        for i in 0..a.len() {
            let h = 1e-6;
            let (mut p, mut m) = (a, a);
            p[i] += h;
            m[i] -= h;
            let fd = (coefficient_of_variation(&p) - coefficient_of_variation(&m)) / (2.0 * h);
            assert!((g[i] - fd).abs() < 1e-8, "{i}: {} vs {fd}", g[i]);
        }
    }

    #[test]
    fn reference_range_is_layers_5_to_25_of_32() {
        let r = CvRegulariser::reference_range(1.0, 32);
        assert_eq!((r.first, r.end), (5, 26));
        assert!(r.covers(25) && !r.covers(26) && !r.covers(4));
        let small = CvRegulariser::reference_range(1.0, 4);
        assert_eq!((small.first, small.end), (1, 3));
    }
}
