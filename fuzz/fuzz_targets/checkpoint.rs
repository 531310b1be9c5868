#![no_main]
//! Fuzz target `checkpoint`: the property check `fuzz_checks::check_checkpoint`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_checks::check_checkpoint(data));
