//! The lab's scenario parser: any text gives a scenario or an error naming
//! the file, never a panic; and what it accepts stays within the lab's
//! limits.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match imgate::lab::Scenario::parse(text, "fuzz.toml", "fuzz") {
        Ok(s) => {
            assert!(!s.traffic.is_empty());
            for t in &s.traffic {
                assert!(t.domains >= 1 && (0.0..=1.0).contains(&t.read));
                assert!(u64::from(t.recipients + t.unknown) * u64::from(t.messages) <= 100_000);
            }
            let _ = (s.domains(), s.last_event());
        }
        Err(e) => assert_eq!(e.file, "fuzz.toml"),
    }
});
