//! Human units in configuration and on the command line: durations such as
//! `90s`, `15m`, `12h`, `30d` and sizes such as `512KiB`, `25MiB`, `1GiB`.

use std::time::Duration;

/// Parses `N[s|m|h|d|w]` (a bare number is seconds).
///
/// ```
/// use imgate::proto::units::parse_duration;
/// assert_eq!(parse_duration("15m").unwrap().as_secs(), 900);
/// assert!(parse_duration("5y").is_err());
/// ```
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a duration (expected e.g. 30s, 15m, 12h, 30d)"))?;
    let mult = match unit.trim() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        other => return Err(format!("unknown duration unit {other:?} (use s, m, h, d or w)")),
    };
    n.checked_mul(mult).map(Duration::from_secs).ok_or_else(|| format!("{s:?} is too long"))
}

/// Parses `N[B|KiB|MiB|GiB|KB|MB|GB]` (a bare number is bytes).
///
/// ```
/// use imgate::proto::units::parse_size;
/// assert_eq!(parse_size("25MiB"), Ok(25 << 20));
/// ```
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a size (expected e.g. 512KiB, 25MiB, 1GiB)"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        "TiB" | "T" => 1 << 40,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => return Err(format!("unknown size unit {other:?} (use B, KiB, MiB, GiB)")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("{s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let cases: &[(&str, Option<u64>)] = &[
            ("30", Some(30)),
            ("30s", Some(30)),
            ("15m", Some(900)),
            ("2h", Some(7200)),
            ("30d", Some(2_592_000)),
            ("1w", Some(604_800)),
            ("", None),
            ("h", None),
            ("5y", None),
            ("-5s", None),
            ("99999999999999999999d", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_duration(input).ok().map(|d| d.as_secs()), *want, "{input}");
        }
    }

    #[test]
    fn sizes() {
        let cases: &[(&str, Option<u64>)] = &[
            ("100", Some(100)),
            ("4KiB", Some(4096)),
            ("25MiB", Some(25 << 20)),
            ("1GiB", Some(1 << 30)),
            ("1MB", Some(1_000_000)),
            ("1 MiB", Some(1 << 20)),
            ("1.5MiB", None),
            ("lots", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_size(input).ok(), *want, "{input}");
        }
    }
}
