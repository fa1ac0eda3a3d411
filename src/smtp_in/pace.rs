//! The slowest a client may send message data: at least `rate` octets a
//! second, judged over windows of [`WINDOW`] (Postfix's
//! `smtpd_min_data_rate` idea). A slow-loris client that trickles a byte
//! just inside the idle timeout is closed within one window instead of
//! holding a session for the whole session timeout. Sans-IO: the caller
//! passes the time.

use std::time::Duration;

use tokio::time::Instant;

/// Length of one measuring window.
pub const WINDOW: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct Pace {
    /// Octets per second; 0 turns the check off.
    rate: u64,
    window_start: Option<Instant>,
    bytes: u64,
}

/// What the caller should do after a read or a wake-up.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Fine,
    /// Close the session: data arrives too slowly.
    TooSlow,
}

impl Pace {
    pub fn new(rate: u64) -> Pace {
        Pace { rate, window_start: None, bytes: 0 }
    }

    /// Counts `n` octets of message data read at `now`.
    pub fn record(&mut self, n: usize, now: Instant) -> Verdict {
        let verdict = self.check(now);
        self.bytes += n as u64;
        verdict
    }

    /// Judges the window that ended by `now`, if one did, and starts the next.
    pub fn check(&mut self, now: Instant) -> Verdict {
        if self.rate == 0 {
            return Verdict::Fine;
        }
        let start = *self.window_start.get_or_insert(now);
        if now.duration_since(start) < WINDOW {
            return Verdict::Fine;
        }
        let needed = self.rate * WINDOW.as_secs();
        let verdict = if self.bytes < needed { Verdict::TooSlow } else { Verdict::Fine };
        self.window_start = Some(now);
        self.bytes = 0;
        verdict
    }

    /// When the current window ends (the latest a read may wait), if measuring.
    pub fn deadline(&self) -> Option<Instant> {
        (self.rate > 0).then_some(self.window_start? + WINDOW)
    }

    /// Message data ended: the next message starts afresh.
    pub fn reset(&mut self) {
        self.window_start = None;
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judged_per_window() {
        let t0 = Instant::now();
        let s = |secs: f64| t0 + Duration::from_secs_f64(secs);
        // (octets, at second, verdict) with a floor of 100 octets/s = 500 per window.
        let cases: &[(&[(usize, f64)], Verdict)] = &[
            (&[(600, 0.0), (1, 5.1)], Verdict::Fine),
            (&[(100, 0.0), (100, 2.0), (1, 5.1)], Verdict::TooSlow),
            (&[(499, 0.0), (1, 4.9), (1, 5.0)], Verdict::Fine),
            (&[(10, 0.0), (10, 1.0)], Verdict::Fine),
        ];
        for (reads, want) in cases {
            let mut p = Pace::new(100);
            let mut last = Verdict::Fine;
            for (n, at) in reads.iter() {
                last = p.record(*n, s(*at));
                if last == Verdict::TooSlow {
                    break;
                }
            }
            assert_eq!(&last, want, "{reads:?}");
        }
        let mut off = Pace::new(0);
        assert_eq!(off.record(1, s(100.0)), Verdict::Fine);
        assert_eq!(off.deadline(), None);
    }
}
