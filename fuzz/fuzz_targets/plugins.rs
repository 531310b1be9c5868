#![no_main]
//! Fuzz target `plugins`: the property check `fuzz_checks::check_plugins`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_checks::check_plugins(data));
