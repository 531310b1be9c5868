#![no_main]
//! Fuzz target `digest`: the property check `fuzz_checks::check_digest`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_checks::check_digest(data));
