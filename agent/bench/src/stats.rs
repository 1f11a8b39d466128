//! The statistics the report uses: medians and spreads of repeated measurements.

use serde::Serialize;

/// Repeated measurements of one figure and their median.
#[derive(Clone, Debug, Serialize)]
pub struct Measured {
    /// Median of `runs`.
    pub median: f64,
    /// Smallest run.
    pub min: f64,
    /// Largest run.
    pub max: f64,
    /// Every run, in order.
    pub runs: Vec<f64>,
}

impl Measured {
    /// The median and range of `runs` (all zero when there are none).
    pub fn of(runs: Vec<f64>) -> Self {
        Self { median: median(&runs), min: min(&runs), max: max(&runs), runs }
    }
}

/// Median (mean of the two middle values for an even count); 0 for no values.
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 { v[mid] } else { (v[mid - 1] + v[mid]) / 2.0 }
}

/// Smallest value (0 for none).
pub fn min(values: &[f64]) -> f64 {
    values.iter().copied().reduce(f64::min).unwrap_or(0.0)
}

/// Largest value (0 for none).
pub fn max(values: &[f64]) -> f64 {
    values.iter().copied().reduce(f64::max).unwrap_or(0.0)
}

/// `a / b`, or 0 when `b` is 0.
pub fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 { 0.0 } else { a / b }
}

/// A ratio of two figures measured together: the ratio of the medians, and the
/// range of the per-run ratios (its spread).
#[derive(Clone, Debug, Serialize)]
pub struct Ratio {
    /// `median(a) / median(b)`.
    pub value: f64,
    /// Smallest per-run ratio.
    pub min: f64,
    /// Largest per-run ratio.
    pub max: f64,
}

impl Ratio {
    /// The ratio of `a` to `b`, run by run.
    pub fn of(a: &Measured, b: &Measured) -> Self {
        let per_run: Vec<f64> = a.runs.iter().zip(&b.runs).map(|(x, y)| ratio(*x, *y)).collect();
        Self { value: ratio(a.median, b.median), min: min(&per_run), max: max(&per_run) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }

    #[test]
    fn ratio_spread_comes_from_the_runs() {
        let a = Measured::of(vec![10.0, 12.0, 11.0]);
        let b = Measured::of(vec![5.0, 5.0, 5.0]);
        let r = Ratio::of(&a, &b);
        assert_eq!(r.value, 2.2);
        assert_eq!(r.min, 2.0);
        assert_eq!(r.max, 2.4);
        assert_eq!(ratio(1.0, 0.0), 0.0);
    }
}
