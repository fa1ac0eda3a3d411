//! Retry schedule: exponential from `min`, capped at `max`, with ±20% jitter
//! so that many jobs failing together do not retry together.

use std::time::Duration;

use rand::Rng;

/// Delay before attempt number `attempts + 1`, after `attempts` failures.
pub fn retry_delay(attempts: u32, min: Duration, max: Duration, rng: &mut impl Rng) -> Duration {
    let exp = attempts.saturating_sub(1).min(32);
    let base = min.saturating_mul(1u32 << exp.min(31)).min(max);
    let jitter = rng.random_range(0.8..=1.2);
    base.mul_f64(jitter).min(max.mul_f64(1.2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn grows_then_caps_with_bounded_jitter() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let (min, max) = (Duration::from_secs(30), Duration::from_secs(3600));
        let cases: &[(u32, u64)] = &[(1, 30), (2, 60), (3, 120), (4, 240), (8, 3600), (40, 3600), (u32::MAX, 3600)];
        for (attempts, want) in cases {
            for _ in 0..50 {
                let d = retry_delay(*attempts, min, max, &mut rng).as_secs_f64();
                let want = *want as f64;
                assert!(d >= want * 0.8 - 0.001 && d <= want * 1.2 + 0.001, "attempt {attempts}: {d}");
            }
        }
    }
}
