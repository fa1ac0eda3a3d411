//! The configuration parser: any text gives a configuration or a list of
//! problems, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(e) = imgate::config::Config::parse(text, "fuzz.toml") {
        assert!(!e.problems.is_empty());
    }
});
