#![no_main]
//! Fuzz target `registry`: the property check `fuzz_checks::check_registry`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_checks::check_registry(data));
