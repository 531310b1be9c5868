#![no_main]
//! Fuzz target `params`: the property check `fuzz_checks::check_params`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_checks::check_params(data));
