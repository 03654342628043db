//! Latency percentiles (exact: every sample is kept and sorted).

use serde_json::{Value, json};
use std::time::Duration;

/// Nearest-rank percentiles of a set of durations, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Percentiles {
    pub count: usize,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// Rounds to microsecond precision for display and JSON.
pub fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

impl Percentiles {
    /// From samples in nanoseconds (sorted in place).
    pub fn from_ns(samples: &mut [u64]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_unstable();
        let n = samples.len();
        let at = |q: f64| {
            let rank = (q * n as f64).ceil() as usize;
            ms(samples[rank.clamp(1, n) - 1])
        };
        let sum: u128 = samples.iter().map(|&s| u128::from(s)).sum();
        Self {
            count: n,
            mean: sum as f64 / n as f64 / 1e6,
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            p999: at(0.999),
            max: ms(samples[n - 1]),
        }
    }

    /// From durations.
    pub fn from_durations(samples: &[Duration]) -> Self {
        let mut ns: Vec<u64> = samples
            .iter()
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .collect();
        Self::from_ns(&mut ns)
    }

    /// `{"count", "mean", "p50", ...}` in milliseconds.
    pub fn to_json(self) -> Value {
        json!({
            "count": self.count,
            "mean_ms": round3(self.mean),
            "p50_ms": round3(self.p50),
            "p90_ms": round3(self.p90),
            "p99_ms": round3(self.p99),
            "p999_ms": round3(self.p999),
            "max_ms": round3(self.max),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let mut v: Vec<u64> = (1..=1000).map(|i| i * 1_000_000).collect();
        let p = Percentiles::from_ns(&mut v);
        assert_eq!(p.count, 1000);
        assert_eq!(p.p50, 500.0);
        assert_eq!(p.p90, 900.0);
        assert_eq!(p.p99, 990.0);
        assert_eq!(p.p999, 999.0);
        assert_eq!(p.max, 1000.0);
        assert_eq!(Percentiles::from_ns(&mut []).count, 0);
        let one = Percentiles::from_durations(&[Duration::from_micros(1500)]);
        assert_eq!((one.p50, one.p999), (1.5, 1.5));
    }
}
