//! The reply decoder must never panic and never claim more bytes than it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((_, used))) = shoal_proto::reply::decode(data) {
        assert!(used <= data.len());
    }
});
