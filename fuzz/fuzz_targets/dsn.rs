//! Late bounces arriving at a return path: any bytes are read as a DSN
//! (RFC 3464) or not at all.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = imgate::smtp_out::dsn::failure_reason(data);
});
