//! Percentiles for benchmarks and tests: one definition for the whole
//! project, so every p50/p95 printed anywhere means the same thing.

use serde::Serialize;

/// Percentile `p` (0..=100) by linear interpolation between the closest
/// ranks (the definition of NumPy's default and Excel's PERCENTILE.INC);
/// `None` for no samples. The values need not be sorted.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (p.clamp(0.0, 100.0) / 100.0) * (sorted.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    Some(sorted[lo] + (rank - lo as f64) * (sorted[hi] - sorted[lo]))
}

/// p50/p95 and count of one measure.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Stat {
    /// The median; `None` for no values.
    pub p50: Option<f64>,
    /// The 95th percentile; `None` for no values.
    pub p95: Option<f64>,
    /// How many values.
    pub n: usize,
}

impl Stat {
    /// The stat of some values.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Stat {
        let v: Vec<f64> = values.into_iter().collect();
        Stat {
            p50: percentile(&v, 50.0),
            p95: percentile(&v, 95.0),
            n: v.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_linearly() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(10.5));
        assert!((percentile(&v, 95.0).unwrap() - 19.05).abs() < 1e-9);
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&v, 100.0), Some(20.0));
        assert_eq!(percentile(&[3.0, 1.0, 2.0], 50.0), Some(2.0));
        assert_eq!(percentile(&[7.0], 95.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
        let s = Stat::of([4.0, 2.0]);
        assert_eq!((s.p50, s.n), (Some(3.0), 2));
    }
}
