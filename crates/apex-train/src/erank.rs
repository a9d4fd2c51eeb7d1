//! Effective rank (spec §7, Roy & Vetterli 2007): `exp(H(p))` with
//! `p_i = σ_i / Σσ`, the singular values from a one-sided Jacobi SVD in f64.
//! Host-side and exact enough for diagnostics of the small matrices a layer
//! holds; never used for training decisions.

/// Singular values of the row-major `rows × cols` matrix `a`, descending.
pub fn singular_values(a: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    assert_eq!(a.len(), rows * cols, "matrix data does not match its shape");
    // Orthogonalise the columns of the taller orientation (n ≤ m columns of length m).
    let (m, n) = if rows >= cols {
        (rows, cols)
    } else {
        (cols, rows)
    };
    let mut u: Vec<Vec<f64>> = (0..n)
        .map(|j| {
            (0..m)
                .map(|i| {
                    if rows >= cols {
                        a[i * cols + j]
                    } else {
                        a[j * cols + i]
                    }
                })
                .collect()
        })
        .collect();
    for _sweep in 0..60 {
        let mut rotated = false;
        for p in 0..n {
            for q in p + 1..n {
                let (alpha, beta, gamma) = u[p]
                    .iter()
                    .zip(&u[q])
                    .fold((0.0, 0.0, 0.0), |(a, b, g), (&x, &y)| {
                        (a + x * x, b + y * y, g + x * y)
                    });
                if gamma.abs() <= 1e-15 * (alpha * beta).sqrt() || gamma == 0.0 {
                    continue;
                }
                rotated = true;
                let zeta = (beta - alpha) / (2.0 * gamma);
                let t = zeta.signum() / (zeta.abs() + (1.0 + zeta * zeta).sqrt());
                let c = 1.0 / (1.0 + t * t).sqrt();
                let s = c * t;
                let (left, right) = u.split_at_mut(q);
                for (x, y) in left[p].iter_mut().zip(right[0].iter_mut()) {
                    let (xp, yq) = (*x, *y);
                    *x = c * xp - s * yq;
                    *y = s * xp + c * yq;
                }
            }
        }
        if !rotated {
            break;
        }
    }
    let mut sv: Vec<f64> = u
        .iter()
        .map(|col| col.iter().map(|x| x * x).sum::<f64>().sqrt())
        .collect();
    sv.sort_by(|a, b| b.total_cmp(a));
    sv
}

/// `erank(A) = exp(−Σ p_i ln p_i)`, `p_i = σ_i/Σσ`, ignoring σ below
/// `1e−12·σ_max`. 0 for a zero matrix.
pub fn effective_rank(a: &[f64], rows: usize, cols: usize) -> f64 {
    let sv = singular_values(a, rows, cols);
    let max = sv.first().copied().unwrap_or(0.0);
    if max <= 0.0 {
        return 0.0;
    }
    let kept: Vec<f64> = sv.into_iter().filter(|&s| s > 1e-12 * max).collect();
    let total: f64 = kept.iter().sum();
    let entropy: f64 = kept
        .iter()
        .map(|&s| {
            let p = s / total;
            -p * p.ln()
        })
        .sum();
    entropy.exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn singular_values_of_a_known_matrix() {
        // [[3, 0], [4, 5]] has singular values √45 and √5.
        let sv = singular_values(&[3.0, 0.0, 4.0, 5.0], 2, 2);
        assert!((sv[0] - 45f64.sqrt()).abs() < 1e-12);
        assert!((sv[1] - 5f64.sqrt()).abs() < 1e-12);
        // A wide matrix gives the same values as its transpose.
        let wide = singular_values(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3);
        let tall = singular_values(&[1.0, 4.0, 2.0, 5.0, 3.0, 6.0], 3, 2);
        for (w, t) in wide.iter().zip(&tall) {
            assert!((w - t).abs() < 1e-12);
        }
    }

    #[test]
    fn effective_rank_is_the_rank_for_equal_singular_values_and_one_for_rank_one() {
        let identity3 = [1.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 3.0];
        let p = [1.0 / 6.0, 2.0 / 6.0, 3.0 / 6.0];
        let want = (-p.iter().map(|x: &f64| x * x.ln()).sum::<f64>()).exp();
        assert!((effective_rank(&identity3, 3, 3) - want).abs() < 1e-12);
        let orthogonal = [0.0, 2.0, 2.0, 0.0];
        assert!((effective_rank(&orthogonal, 2, 2) - 2.0).abs() < 1e-12);
        let rank_one = [1.0, 2.0, 2.0, 4.0, 3.0, 6.0];
        assert!((effective_rank(&rank_one, 3, 2) - 1.0).abs() < 1e-9);
        assert_eq!(effective_rank(&[0.0; 4], 2, 2), 0.0);
    }
}
