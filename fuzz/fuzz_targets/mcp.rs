#![no_main]
//! Fuzz target `mcp`: the property check `fuzz_checks::check_mcp`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_checks::check_mcp(data));
