#![no_main]
//! Fuzz target `policy`: the property check `fuzz_checks::check_policy`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_checks::check_policy(data));
