#![no_main]
//! Fuzz target `jsonl_fold`: the property check `fuzz_checks::check_jsonl_fold`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_checks::check_jsonl_fold(data));
