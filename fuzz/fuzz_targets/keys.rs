#![no_main]
//! Fuzz target `keys`: the property check `fuzz_checks::check_keys`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_checks::check_keys(data));
