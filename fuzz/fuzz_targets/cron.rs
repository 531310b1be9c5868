#![no_main]
//! Fuzz target `cron`: the property check `fuzz_checks::check_cron`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_checks::check_cron(data));
