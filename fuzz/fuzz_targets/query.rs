#![no_main]
//! Fuzz target `query`: the property check `fuzz_checks::check_query`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_checks::check_query(data));
