//! Learning-rate schedules (spec §6.3): HF's linear-warmup cosine, and the
//! APEX stage restart (a fresh cosine from the current rate over the remaining
//! steps, with its own short warmup).

/// HF `get_cosine_schedule_with_warmup`: for optimizer step `u` (0-based),
/// `lr = peak·u/W` while `u < W`, then `peak·½(1 + cos(π·(u−W)/(total−W)))`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CosineSchedule {
    pub peak: f64,
    pub warmup: usize,
    pub total: usize,
}

impl CosineSchedule {
    /// A schedule over `total` steps with `⌊warmup_ratio·total⌋` warmup steps.
    pub fn new(peak: f64, total: usize, warmup_ratio: f64) -> Self {
        CosineSchedule {
            peak,
            warmup: (warmup_ratio * total as f64).floor() as usize,
            total,
        }
    }

    /// The rate of 0-based step `step`.
    pub fn lr(&self, step: usize) -> f64 {
        if step < self.warmup {
            return self.peak * step as f64 / self.warmup.max(1) as f64;
        }
        let span = self.total.saturating_sub(self.warmup).max(1) as f64;
        let progress = (step - self.warmup) as f64 / span;
        (self.peak * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0)
    }

    /// The stage-boundary restart (§6.3): a new cosine from the rate the old
    /// schedule would use at `step` over the `total − step` remaining steps,
    /// with `⌊restart_warmup_ratio·remaining⌋` warmup steps (0.005 in the reference).
    pub fn restart_at(&self, step: usize, restart_warmup_ratio: f64) -> Self {
        let remaining = self.total.saturating_sub(step);
        CosineSchedule::new(self.lr(step), remaining, restart_warmup_ratio)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_is_linear_from_zero_and_cosine_ends_at_zero() {
        let s = CosineSchedule::new(1.0, 100, 0.1);
        assert_eq!(s.warmup, 10);
        assert_eq!(s.lr(0), 0.0);
        assert_eq!(s.lr(5), 0.5);
        assert_eq!(s.lr(10), 1.0);
        assert!((s.lr(55) - 0.5).abs() < 1e-12);
        assert!(s.lr(100).abs() < 1e-12);
    }

    #[test]
    fn restart_starts_from_the_current_rate_over_the_remaining_steps() {
        let s = CosineSchedule::new(2.0, 100, 0.0);
        let r = s.restart_at(50, 0.0);
        assert_eq!(r.total, 50);
        assert!((r.lr(0) - 1.0).abs() < 1e-12);
        let with_warmup = s.restart_at(0, 0.05);
        assert_eq!(with_warmup.warmup, 5);
        assert_eq!(with_warmup.lr(0), 0.0);
    }
}
