//! Small statistics shared by `eval`, `bench` and `models bench`: exact quantiles of a sorted
//! sample, the mean, and a least-squares slope.

/// The `q` quantile (0 to 1) of `sorted` (ascending), by nearest rank; `None` if empty.
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    Some(sorted[(last as f64 * q.clamp(0.0, 1.0)).round() as usize])
}

/// The arithmetic mean; `None` if empty.
pub fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// The slope of the least-squares line through `points` (x, y): y's change per unit of x.
/// `None` with fewer than two distinct x.
pub fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for &(x, y) in points {
        sxy += (x - mean_x) * (y - mean_y);
        sxx += (x - mean_x) * (x - mean_x);
    }
    (sxx > 0.0).then(|| sxy / sxx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let sorted: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&sorted, 0.0), Some(1.0));
        assert_eq!(quantile(&sorted, 0.5), Some(51.0));
        assert_eq!(quantile(&sorted, 0.99), Some(99.0));
        assert_eq!(quantile(&sorted, 1.0), Some(100.0));
        assert_eq!(quantile(&[7.0], 0.99), Some(7.0));
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(mean(&[1.0, 2.0, 6.0]), Some(3.0));
        assert_eq!(mean(&[]), None);
    }

    #[test]
    fn slope_recovers_a_line_and_is_least_squares_under_noise() {
        // y = 3x + 2, exactly and with ±1 alternating noise.
        let exact: Vec<(f64, f64)> = (0..10).map(|x| (x as f64, 3.0 * x as f64 + 2.0)).collect();
        assert!((slope(&exact).unwrap() - 3.0).abs() < 1e-12);
        let noisy: Vec<(f64, f64)> = (0..10)
            .map(|x| {
                let noise = if x % 2 == 0 { 1.0 } else { -1.0 };
                (x as f64, 3.0 * x as f64 + 2.0 + noise)
            })
            .collect();
        let s = slope(&noisy).unwrap();
        // The noise tilts the fit by Σ(x − x̄)·noise / Σ(x − x̄)² = −5 / 82.5, no more.
        assert!((s - (3.0 - 5.0 / 82.5)).abs() < 1e-12, "{s}");
        let flat: Vec<(f64, f64)> = (0..5).map(|x| (x as f64, 40.0)).collect();
        assert_eq!(slope(&flat), Some(0.0));
        assert_eq!(slope(&[(1.0, 5.0)]), None);
        assert_eq!(slope(&[(1.0, 5.0), (1.0, 9.0)]), None);
    }
}
