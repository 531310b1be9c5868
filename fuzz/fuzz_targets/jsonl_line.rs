#![no_main]
//! Fuzz target `jsonl_line`: the property check `fuzz_checks::check_jsonl_line`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_checks::check_jsonl_line(data));
